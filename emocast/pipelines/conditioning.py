"""The inputs of one denoising step, assembled exactly as the released pipeline does (spec §8.3, parity README).

Three calls, from slowest-changing to fastest::

    video = prepare_video(net, text_emb=..., uncond_text_emb=..., face_emb=..., face_region=...,
                          full_masks=..., face_masks=..., lip_masks=..., guidance=True)    # once per video
    clip = prepare_clip(net, video, ref_latents=..., audio_windows=...)                   # once per clip
    v = model_output(net, video, clip, latents, t, motion_scale=(1.0, 1.0, 1.0))           # every step
    v = guide(v, 3.5)                                                                       # CFG mix

With guidance the batch is [uncond, cond] (uncond first); without it, cond only. What the unconditional row
gets: text of "" (``uncond_text_emb``), face tokens ``imageproj(0)``, zero FaceLocator feature, zero audio
tokens (after the projection), no reference tokens in self-attention, but the motion-frame tokens, the masks and
the conditional text as emotive-audio query all kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..models.net import EmoCASTNet
from ..models.reference_net import ReferenceFeatures


@dataclass
class VideoConditioning:
    """Per-video conditioning, in the batch layout of the step ([uncond, cond] with guidance, else [cond])."""

    encoder_hidden_states: torch.Tensor  # (B, 77 + K, D): text first, face last
    emo_text: torch.Tensor  # (B, 77, D): conditional text in every row
    face_locator_feature: torch.Tensor  # (B, C0, 1, h, w): [zeros, feature] with guidance
    masks: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # level -> (full, face, lip), (B, HW)
    reference_rows: torch.Tensor  # (B,) bool: rows attending to the reference tokens
    face_tokens: torch.Tensor  # (1, K, D) conditional face tokens (for inspection)
    guidance: bool

    @property
    def batch(self) -> int:
        return self.encoder_hidden_states.shape[0]


@dataclass
class ClipConditioning:
    """Per-clip conditioning: projected audio (cond audio tokens kept for inspection) and the reference pass."""

    audio_tokens: torch.Tensor  # (B, F, A, Da): [zeros, tokens] with guidance
    reference: ReferenceFeatures

    @property
    def frames(self) -> int:
        return self.audio_tokens.shape[1]


def _as_rows(mask: torch.Tensor) -> torch.Tensor:
    """A level mask (HW,) or (1, HW) (or (1, h, w)) -> (1, HW)."""
    return mask.reshape(1, -1)


def prepare_video(net: EmoCASTNet, *, text_emb: torch.Tensor, face_emb: torch.Tensor, face_region: torch.Tensor,
                  full_masks: Sequence[torch.Tensor], face_masks: Sequence[torch.Tensor],
                  lip_masks: Sequence[torch.Tensor], uncond_text_emb: torch.Tensor | None = None,
                  guidance: bool = True) -> VideoConditioning:
    """Build the per-video part of the step.

    text_emb / uncond_text_emb: (1, 77, D) CLIP ``last_hidden_state`` of the prompt and of "" (the latter is
    required with guidance); face_emb: (1, 512) raw identity embedding; face_region: (1, 3, H, W) FaceLocator
    input in [0, 1] (encoded once, shared by all frames); *_masks: one mask per UNet level, each (h_l*w_l,) or
    (1, h_l*w_l), row-major, level 0 = latent resolution.
    """
    if guidance and uncond_text_emb is None:
        raise ValueError("classifier-free guidance needs uncond_text_emb (the CLIP embedding of \"\")")
    if not (len(full_masks) == len(face_masks) == len(lip_masks)):
        raise ValueError("full_masks, face_masks and lip_masks must have one entry per UNet level")
    dtype, device = net.dtype, net.device
    cast = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    text = cast(text_emb)
    face_tokens = net.imageproj(cast(face_emb).reshape(1, -1))
    cond = torch.cat([text, face_tokens], dim=1)
    feature = net.face_locator(cast(face_region)).unsqueeze(2)  # (1, C0, 1, h, w)
    masks = {level: tuple(_as_rows(cast(m)) for m in triple)
             for level, triple in enumerate(zip(full_masks, face_masks, lip_masks))}
    if guidance:
        uncond_face = net.imageproj(torch.zeros_like(cast(face_emb).reshape(1, -1)))
        uncond = torch.cat([cast(uncond_text_emb), uncond_face], dim=1)
        encoder_hidden_states = torch.cat([uncond, cond])
        feature = torch.cat([torch.zeros_like(feature), feature])
        masks = {level: tuple(torch.cat([m, m]) for m in triple) for level, triple in masks.items()}
        rows = torch.tensor([False, True], device=device)
    else:
        encoder_hidden_states = cond
        rows = torch.tensor([True], device=device)
    batch = encoder_hidden_states.shape[0]
    return VideoConditioning(encoder_hidden_states=encoder_hidden_states, emo_text=text.expand(batch, -1, -1),
                             face_locator_feature=feature, masks=masks, reference_rows=rows,
                             face_tokens=face_tokens, guidance=guidance)


def prepare_clip(net: EmoCASTNet, video: VideoConditioning, *, ref_latents: torch.Tensor,
                 audio_windows: torch.Tensor, pairing: str = "release",
                 bank_dtype: torch.dtype | None = None) -> ClipConditioning:
    """Build the per-clip part: project the audio and run the reference pass (timestep 0).

    ref_latents: (1+M, 4, h, w) VAE latents (x 0.18215) of the reference image then the M motion frames;
    audio_windows: (1, F, window, layers, channels) wav2vec2 windows of the clip's frames; pairing: see
    :meth:`EmoCASTNet.reference_features` (``"release"`` reproduces the checkpoint's behaviour).
    """
    tokens = net.audioproj(audio_windows.to(device=net.device, dtype=net.dtype))
    if video.guidance:
        tokens = torch.cat([torch.zeros_like(tokens), tokens])
    reference = net.reference_features(ref_latents.to(device=net.device), video.encoder_hidden_states,
                                       pairing=pairing, bank_dtype=bank_dtype)
    return ClipConditioning(audio_tokens=tokens, reference=reference)


def model_output(net: EmoCASTNet, video: VideoConditioning, clip: ClipConditioning, latents: torch.Tensor,
                 timestep, motion_scale: Sequence[float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """The denoising UNet's prediction (v) for latents (1, 4, F, h, w) at ``timestep``.

    Returns (B, 4, F, h, w): [uncond, cond] with guidance (mix with :func:`guide`), else (1, 4, F, h, w).
    """
    latents = latents.to(device=net.device, dtype=net.dtype)
    if latents.shape[2] != clip.frames:
        raise ValueError(f"latents have {latents.shape[2]} frames but the clip's audio has {clip.frames}")
    sample = latents.expand(video.batch, *latents.shape[1:]) if latents.shape[0] == 1 else latents
    return net.denoising_unet(sample, timestep, video.encoder_hidden_states, clip.audio_tokens, video.emo_text,
                              video.masks, face_locator_feature=video.face_locator_feature,
                              reference=clip.reference, reference_rows=video.reference_rows,
                              motion_scale=motion_scale)


def guide(output: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance ``uncond + scale * (cond - uncond)`` of a [uncond, cond] output; a single
    (unguided) row is returned unchanged."""
    if output.shape[0] == 1:
        return output
    uncond, cond = output.chunk(2)
    return uncond + scale * (cond - uncond)
