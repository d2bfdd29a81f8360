"""The one owner of a denoising step: which conditions each batch row keeps, and the network call.

Every place that runs the denoising UNet — the sampler's conditional and unconditional CFG rows, training's rows
with per-sample dropped conditions, validation, the benchmark — builds its step here, from one conditioning and
per-row *keep masks* (:class:`Keep`). A row that drops a condition gets exactly what the release's unconditional
CFG row gets for it:

============  ============================================  ==================================================
condition     kept                                          dropped
============  ============================================  ==================================================
text          CLIP(prompt) in the cross-attention and as     CLIP("") (``uncond_text_emb``) in both places
              the queries of the emotive audio attention
face          ``imageproj(face_emb)``                        ``imageproj(0)``
face_region   the FaceLocator feature                        zeros
audio         ``audioproj(windows)``                         zero audio tokens
reference     self-attention also over the reference tokens  plain self-attention (motion-frame tokens kept)
============  ============================================  ==================================================

(The release queries its emotive audio attention with the prompt in both CFG rows; with zero audio tokens the
attention returns its output bias whatever the queries, so the two rules give identical unconditional rows.)

Three calls, from slowest-changing to fastest::

    video = prepare_video(net, text_emb=..., uncond_text_emb=..., face_emb=..., face_region=...,
                          full_masks=..., face_masks=..., lip_masks=..., keep=Keep.rows(False, True))
    clip = prepare_clip(net, video, ref_latents=..., audio_windows=...)         # audio projection, reference pass
    out = model_output(net, video, clip, latents, t, audio_weights=(1.0, 1.0, 1.0))   # (B, 4, F, h, w)
    v = guide(out, 3.5)                                                          # CFG mix of [uncond, cond]

Inputs may have one row (shared by every row of the step, e.g. the sampler's one video) or one per row (training's
batch). Without ``audio_windows`` the step is the image stage's (stage 1): the UNet's audio and motion modules
neither run nor need masks, and the reference pass is skipped when no row keeps the reference.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch

from ..models.net import EmoCASTNet
from ..models.reference_net import ReferenceFeatures

CONDITIONS = ("reference", "audio", "text", "face", "face_region")


@dataclass
class Keep:
    """Per-row keep masks, each ``(B,)`` bool: ``True`` = the row keeps that condition."""

    reference: torch.Tensor
    audio: torch.Tensor
    text: torch.Tensor
    face: torch.Tensor
    face_region: torch.Tensor

    @classmethod
    def rows(cls, *keep: bool, device=None) -> "Keep":
        """Rows that keep everything (``True``) or nothing (``False``): ``Keep.rows(False, True)`` = CFG's
        [unconditional, conditional]."""
        mask = torch.tensor([bool(k) for k in keep], dtype=torch.bool, device=device)
        return cls(**{c: mask for c in CONDITIONS})

    @classmethod
    def from_dict(cls, masks: dict, device=None) -> "Keep":
        return cls(**{c: torch.as_tensor(masks[c], dtype=torch.bool, device=device) for c in CONDITIONS})

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to(self, device) -> "Keep":
        return Keep(**{k: v.to(device) for k, v in self.as_dict().items()})

    @property
    def batch(self) -> int:
        return int(self.text.shape[0])


def guidance_keep(guidance: bool, device=None) -> Keep:
    """The sampler's rows: [unconditional, conditional] with classifier-free guidance, else [conditional]."""
    return Keep.rows(False, True, device=device) if guidance else Keep.rows(True, device=device)


@dataclass
class VideoConditioning:
    """Per-video (slow-changing) conditioning of a step, one row per batch row."""

    encoder_hidden_states: torch.Tensor  # (B, 77 + K, D): text first, face last
    emo_text: torch.Tensor  # (B, 77, D): queries of the emotive audio attention (the row's text)
    face_locator_feature: torch.Tensor  # (B, C0, 1, h, w)
    masks: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None  # level -> (full, face, lip), (B, HW)
    keep: Keep
    face_tokens: torch.Tensor  # (1|B, K, D): the face tokens of the given face embedding(s) (for inspection)

    @property
    def batch(self) -> int:
        return self.encoder_hidden_states.shape[0]

    @property
    def guidance(self) -> bool:
        """True for the sampler's [unconditional, conditional] rows."""
        k = self.keep
        return self.batch == 2 and all(v.tolist() == [False, True] for v in k.as_dict().values())


@dataclass
class ClipConditioning:
    """Per-clip conditioning: the projected audio tokens (None in the image stage) and the reference pass."""

    audio_tokens: torch.Tensor | None  # (B, F, A, Da)
    reference: ReferenceFeatures | None
    reference_rows: torch.Tensor | None  # (B,) bool, None = every row attends to the reference

    @property
    def frames(self) -> int | None:
        return None if self.audio_tokens is None else self.audio_tokens.shape[1]

    @property
    def temporal(self) -> bool:
        return self.audio_tokens is not None


def _rows(x: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    """``x`` with one row per batch row: a single row is expanded (no copy), ``batch`` rows pass."""
    if x.shape[0] == batch:
        return x
    if x.shape[0] == 1:
        return x.expand(batch, *x.shape[1:])
    raise ValueError(f"{what} has {x.shape[0]} rows; expected 1 or {batch} (the step's batch)")


def keep_rows(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x`` (B, ...) with the rows of ``keep == False`` set to exactly zero (differentiable, no in-place write)."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return x * keep.to(device=x.device, dtype=x.dtype).reshape(shape)


def _level_mask(mask: torch.Tensor, batch: int) -> torch.Tensor:
    """A level mask (HW,), (1, HW), (B, HW) or (B, F, HW) -> one row (or row of frames) per batch row."""
    if mask.dim() == 1:
        mask = mask[None]
    return _rows(mask, batch, "a mask")


def prepare_video(net: EmoCASTNet, *, text_emb: torch.Tensor, face_emb: torch.Tensor, face_region: torch.Tensor,
                  full_masks: Sequence[torch.Tensor] | None = None, face_masks: Sequence[torch.Tensor] | None = None,
                  lip_masks: Sequence[torch.Tensor] | None = None, uncond_text_emb: torch.Tensor | None = None,
                  guidance: bool = True, keep: Keep | None = None) -> VideoConditioning:
    """The per-video part of the step for the rows of ``keep`` (default: :func:`guidance_keep` of ``guidance``).

    text_emb / uncond_text_emb: (1|B, 77, D) CLIP ``last_hidden_state`` of the prompt(s) and of "" (needed when a
    row drops the text); face_emb: (1|B, 512) raw identity embedding(s); face_region: (1|B, 3, H, W) FaceLocator
    input in [0, 1]; *_masks: one mask per UNet level, each (HW,), (1|B, HW) or (B, F, HW), row-major, level 0 =
    latent resolution (None in the image stage).
    """
    dtype, device = net.dtype, net.device
    keep = (keep if keep is not None else guidance_keep(guidance)).to(device)
    b = keep.batch
    cast = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    text = _rows(cast(text_emb), b, "text_emb")
    if not bool(keep.text.all()):
        if uncond_text_emb is None:
            raise ValueError("a row that drops the text needs uncond_text_emb (the CLIP embedding of \"\")")
        text = torch.where(keep.text[:, None, None], text, _rows(cast(uncond_text_emb), b, "uncond_text_emb"))
    face_emb = cast(face_emb).reshape(face_emb.shape[0], -1)
    face_tokens = net.imageproj(face_emb)  # computed on the given rows only (one row for the sampler's video)
    row_face_tokens = _rows(face_tokens, b, "face_emb")
    if not bool(keep.face.all()):
        dropped = net.imageproj(torch.zeros_like(face_emb[:1]))
        row_face_tokens = torch.where(keep.face[:, None, None], row_face_tokens, dropped)
    feature = keep_rows(_rows(net.face_locator(cast(face_region)).unsqueeze(2), b, "face_region"), keep.face_region)
    masks = None
    if full_masks is not None:
        if not (len(full_masks) == len(face_masks) == len(lip_masks)):
            raise ValueError("full_masks, face_masks and lip_masks must have one entry per UNet level")
        masks = {level: tuple(_level_mask(cast(m), b) for m in triple)
                 for level, triple in enumerate(zip(full_masks, face_masks, lip_masks))}
    return VideoConditioning(encoder_hidden_states=torch.cat([text, row_face_tokens], dim=1), emo_text=text,
                             face_locator_feature=feature, masks=masks, keep=keep, face_tokens=face_tokens)


def prepare_clip(net: EmoCASTNet, video: VideoConditioning, *, ref_latents: torch.Tensor,
                 audio_windows: torch.Tensor | None = None, pairing: str = "release",
                 bank_dtype: torch.dtype | None = None) -> ClipConditioning:
    """The per-clip part: project the audio and run the reference pass (timestep 0).

    ref_latents: (1+M, 4, h, w) shared by every row, or (B, 1+M, 4, h, w): VAE latents of the reference image then
    the M motion frames; audio_windows: (1|B, F, window, layers, channels) wav2vec2 windows of the clip's frames,
    None for the image stage; pairing: see :meth:`EmoCASTNet.reference_features` (``"release"`` reproduces the
    checkpoint's behaviour).
    """
    keep = video.keep
    tokens = None
    if audio_windows is not None:
        projected = net.audioproj(audio_windows.to(device=net.device, dtype=net.dtype))
        tokens = keep_rows(_rows(projected, video.batch, "audio_windows"), keep.audio)
    reference = None
    if tokens is not None or bool(keep.reference.any()):  # the video stage always needs the motion-frame tokens
        ehs = video.encoder_hidden_states
        # no autograd graph through a frozen ReferenceNet unless its conditioning needs the gradient
        needs_grad = ehs.requires_grad or any(p.requires_grad for p in net.reference_unet.parameters())
        with torch.set_grad_enabled(needs_grad and torch.is_grad_enabled()):
            reference = net.reference_features(ref_latents.to(device=net.device), ehs, pairing=pairing,
                                               bank_dtype=bank_dtype)
    rows = None if reference is None or bool(keep.reference.all()) else keep.reference
    return ClipConditioning(audio_tokens=tokens, reference=reference, reference_rows=rows)


def model_output(net: EmoCASTNet, video: VideoConditioning, clip: ClipConditioning, latents: torch.Tensor,
                 timestep, audio_weights: Sequence[float] = (1.0, 1.0, 1.0), *, guidance_scale=None,
                 unet=None) -> torch.Tensor:
    """The denoising UNet's prediction for latents (1|B, 4, F, h, w) at ``timestep``: (B, 4, F, h, w), one row per
    row of the step. ``audio_weights``: (pose, face, lip) weights of the three audio branches; ``guidance_scale``
    (scalar or (B,)): the guidance a consistency student folds in (students only, :attr:`EmoCASTNet.is_student`);
    ``unet``: another denoising UNet of the same architecture on this conditioning (distillation's frozen teacher
    and EMA target), default ``net.denoising_unet``."""
    latents = latents.to(device=net.device, dtype=net.dtype)
    if clip.temporal and latents.shape[2] != clip.frames:
        raise ValueError(f"latents have {latents.shape[2]} frames but the clip's audio has {clip.frames}")
    sample = _rows(latents, video.batch, "latents")
    unet = net.denoising_unet if unet is None else unet
    return unet(sample, timestep, video.encoder_hidden_states, clip.audio_tokens,
                video.emo_text if clip.temporal else None, video.masks if clip.temporal else None,
                face_locator_feature=video.face_locator_feature, reference=clip.reference,
                reference_rows=clip.reference_rows, audio_weights=audio_weights, temporal=clip.temporal,
                guidance_scale=guidance_scale)


def guide(output: torch.Tensor, scale) -> torch.Tensor:
    """Classifier-free guidance ``uncond + scale * (cond - uncond)`` of a [uncond, cond] output (``scale`` a number,
    or one per pair of rows: (B,) for a [B uncond rows, B cond rows] output); a single (unguided) row is returned
    unchanged."""
    if output.shape[0] == 1:
        return output
    uncond, cond = output.chunk(2)
    if isinstance(scale, torch.Tensor):
        scale = scale.to(device=output.device, dtype=output.dtype).reshape(-1, *([1] * (output.dim() - 1)))
    return uncond + scale * (cond - uncond)
