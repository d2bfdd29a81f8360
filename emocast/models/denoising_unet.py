"""The denoising UNet (spec §2): SD-1.5 spatial layers per frame, audio modules and AnimateDiff motion modules.

The released inference semantics hold in train and eval mode alike (spec §2.4): motion-frame features are
prepended in every motion module that runs, ``audio_weights`` weights every audio module, and the motion modules
of the lowest-resolution plain blocks (``down_blocks.3``, ``up_blocks.0``) exist but do not run.

At inference the work that is the same at every step of a clip is done once (:meth:`DenoisingUNet.step_cache`,
see :mod:`emocast.models.step_cache`) and passed to :meth:`DenoisingUNet.forward` as ``cache``.

A consistency-distilled student (``NetConfig.guidance_embed_dim > 0``, :mod:`emocast.training.distill`) also
takes the classifier-free-guidance scale ``w`` it folds in: sinusoidal features of ``1000·(w − 1)`` (as LCM's
guidance-scale embedding) through ``guidance_embedding`` (a diffusers ``TimestepEmbedding``, its output layer
zero-initialised, so a fresh student predicts exactly what its teacher predicts) are added to the timestep
embedding. Without it (the release, every teacher) the state dict has no such keys.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from diffusers.models.embeddings import TimestepEmbedding, Timesteps

from .configs import NetConfig
from .reference_net import ReferenceFeatures
from .spatial_transformer import Segment, reference_segments
from .step_cache import LayerCache, StepCache
from .unet_blocks import BlockInputs, DeepFeatures, UNetBase


def _mask_rows(mask: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """(B, HW) -> repeated per frame (B*F, HW); (B, F, HW) -> flattened (B*F, HW)."""
    if mask.ndim == 3:
        return mask.reshape(batch * frames, mask.shape[-1])
    if mask.ndim != 2 or mask.shape[0] != batch:
        raise ValueError(f"masks must be (B, HW) or (B, F, HW) with B = {batch}; got {tuple(mask.shape)}")
    return mask.repeat_interleave(frames, dim=0)


def _motion_features(tokens: torch.Tensor, dtype) -> torch.Tensor:
    """Recorded motion-frame tokens (B, M, HW, C) -> features (B, M, C, HW) for the motion module."""
    return tokens.to(dtype).transpose(2, 3)


class DenoisingUNet(UNetBase):
    def __init__(self, config: NetConfig):
        super().__init__(config, temporal=True)
        ch = config.block_out_channels[0]
        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, ch, eps=config.norm_eps)
        self.conv_out = nn.Conv2d(ch, config.out_channels, 3, padding=1)
        self.guidance_proj = self.guidance_embedding = None
        if config.guidance_embed_dim:
            self.guidance_proj = Timesteps(config.guidance_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
            self.guidance_embedding = TimestepEmbedding(config.guidance_embed_dim, config.time_embed_dim)
            nn.init.zeros_(self.guidance_embedding.linear_2.weight)  # a fresh student equals its teacher
            nn.init.zeros_(self.guidance_embedding.linear_2.bias)

    def embed_guidance(self, guidance_scale, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
        """The student's guidance-scale embedding ``(batch, time_embed_dim)`` of ``w`` (scalar or ``(batch,)``)."""
        w = torch.as_tensor(guidance_scale, device=device, dtype=torch.float32).reshape(-1)
        w = w.expand(batch) if w.numel() == 1 else w
        if w.shape != (batch,):
            raise ValueError(f"guidance_scale must be a scalar or have shape ({batch},); got {tuple(w.shape)}")
        return self.guidance_embedding(self.guidance_proj(1000.0 * (w - 1.0)).to(dtype))

    def step_cache(self, encoder_hidden_states: torch.Tensor, reference: ReferenceFeatures | None,
                   audio_tokens: torch.Tensor | None, emo_text: torch.Tensor | None,
                   temporal: bool = True, reuse: StepCache | None = None) -> StepCache:
        """The work of :meth:`forward` that does not depend on the latents or the timestep, for a clip of
        ``audio_tokens.shape[1]`` frames (1 without ``temporal``): pass it as ``cache`` at every step.

        encoder_hidden_states (B, T+K, D); reference: the reference pass (None: no reference attention, zero
        motion frames); audio_tokens (B, F, A, Da) and emo_text (B, 77, Dt) for the temporal pass.
        reuse: the cache of an earlier clip with the same conditioning and reference image, whose per-video part
        (cross-attention and reference keys/values) is taken over instead of recomputed."""
        dtype = self.dtype
        ehs = encoder_hidden_states.to(dtype)
        b = ehs.shape[0]
        frames = audio_tokens.shape[1] if temporal else 1
        audio = audio_tokens.to(dtype).reshape(b * frames, *audio_tokens.shape[2:]) if temporal else None
        text = emo_text.to(dtype) if temporal else None
        layers = {}
        for attn, audio_module, motion in self.layers():
            block = attn.block
            video = None if reuse is None else reuse.layers[attn.path]
            if video is not None:
                cross, ref_kv = video.cross, video.reference
            else:
                cross = block.cross_kv(ehs)
                ref_kv = None if reference is None else block.reference_kv(reference.reference[attn.path].to(dtype))
            audio_kv = motion_prefix = None
            if temporal and audio_module is not None:
                audio_kv = audio_module.block.context_kv(text, audio)
            if temporal and motion is not None and reference is not None:
                motion_prefix = motion.prefix(_motion_features(reference.motion[attn.path], dtype))
            layers[attn.path] = LayerCache(cross=cross, reference=ref_kv, audio=audio_kv, motion=motion_prefix)
        return StepCache(b, frames, layers)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor | None,
                audio_tokens: torch.Tensor | None, emo_text: torch.Tensor | None,
                masks: Mapping[int, Sequence[torch.Tensor]] | None,
                face_locator_feature: torch.Tensor | None = None,
                reference: ReferenceFeatures | None = None,
                reference_rows: torch.Tensor | Sequence[bool] | None = None,
                audio_weights: Sequence[float] = (1.0, 1.0, 1.0),
                zero_motion_frames: int = 4, temporal: bool = True, *, cache: StepCache | None = None,
                segments: tuple[Segment, ...] | None = None, deep: DeepFeatures | None = None, guidance_scale=None) -> torch.Tensor:
        """One denoising prediction.

        sample (B, 4, F, h, w); timestep scalar or (B,); encoder_hidden_states (B, T+K, D) (text first, face
        last); audio_tokens (B, F, A, Da); emo_text (B, 77, D) (queries of the emotive audio attention);
        masks {level: (full, face, lip)} each (B, h_l*w_l) (or (B, F, h_l*w_l)), level 0 = full latent
        resolution; face_locator_feature (B, C0, 1|F, h, w) added to the ``conv_in`` output, or None;
        reference: the reference pass (None: no reference attention and ``zero_motion_frames`` zero motion
        frames, as Hallo training with the reference dropped); reference_rows (B,) bool: rows that attend to
        the reference tokens (the unconditional CFG row does not; None = all); audio_weights (pose, face, lip): the
        weights of the full (background), face and lip audio branches (the release calls them motion_scale).
        temporal=False skips the audio and motion modules (the image stage; audio_tokens, emo_text and masks
        may then be None). guidance_scale: scalar or (B,), the guidance a consistency student folds in (required
        by a student, refused by any other net). Returns (B, out_channels, F, h, w).

        cache: :meth:`step_cache` of the same conditioning (then encoder_hidden_states, audio_tokens, emo_text
        and reference are not read, except ``reference.pairing`` when ``segments`` is not given); segments: the
        self-attention layout (:func:`~emocast.models.spatial_transformer.reference_segments`; default: from
        ``reference_rows`` and the pairing); deep: DeepCache features (:class:`~emocast.models.unet_blocks.DeepFeatures`).
        """
        b, c, f, h, w = sample.shape
        if temporal:
            missing = [lvl for lvl in range(self.config.num_levels) if lvl not in (masks or {})]
            if (cache is None and (audio_tokens is None or emo_text is None)) or missing:
                raise ValueError(f"the temporal pass needs audio_tokens, emo_text and masks for levels "
                                 f"0..{self.config.num_levels - 1} (missing levels: {missing})")
            if cache is None and audio_tokens.shape[:2] != (b, f):
                raise ValueError(f"audio_tokens must be ({b}, {f}, tokens, dim); got {tuple(audio_tokens.shape)}")
        if cache is not None and (cache.batch, cache.frames) != (b, f if temporal else cache.frames):
            raise ValueError(f"the step cache holds {cache.batch} rows of {cache.frames} frames; the sample has "
                             f"{b} rows of {f}")
        x = sample.transpose(1, 2).reshape(b * f, c, h, w)
        temb = self.embed_time(timestep, b, x.dtype, x.device)
        if (guidance_scale is None) != (self.guidance_embedding is None):
            raise ValueError("a consistency student needs guidance_scale (the guidance it folds in)" if guidance_scale
                             is None else "guidance_scale is for a consistency student; this net has no guidance "
                             "embedding (use classifier-free guidance rows)")
        if guidance_scale is not None:
            temb = temb + self.embed_guidance(guidance_scale, b, temb.dtype, x.device)
        temb = temb.repeat_interleave(f, dim=0)
        x = self.conv_in(x)
        if face_locator_feature is not None:
            feat = face_locator_feature.to(x.dtype).transpose(1, 2)  # (B, 1|F, C0, h, w)
            x = (x.reshape(b, f, *x.shape[1:]) + feat).reshape(x.shape)
        level_masks = {int(level): tuple(_mask_rows(m, b, f).to(x.dtype) for m in triple)
                       for level, triple in (masks or {}).items()} if temporal else None
        if segments is None and reference is not None:
            attends = [True] * b if reference_rows is None else [bool(r) for r in torch.as_tensor(reference_rows).tolist()]
            segments = reference_segments(attends, range(b), b, f, reference.pairing == "release", x.device)
        elif segments is None and cache is not None and any(c.reference is not None for c in cache.layers.values()):
            raise ValueError("a step cache with reference keys/values needs the segments (or the reference)")
        use_cache = cache is not None
        inputs = BlockInputs(
            temb=temb,
            context=None if use_cache else encoder_hidden_states.to(x.dtype),
            frames=f,
            reference=None if reference is None or use_cache else reference.reference,
            segments=segments,
            motion=None if reference is None or use_cache else reference.motion,
            zero_motion_frames=zero_motion_frames,
            temporal=temporal,
            audio=audio_tokens.to(x.dtype).reshape(b * f, *audio_tokens.shape[2:]) if temporal and not use_cache else None,
            text=emo_text.to(x.dtype) if temporal and not use_cache else None,
            masks=level_masks,
            audio_weights=tuple(float(s) for s in audio_weights),
            cache=cache,
            use_checkpoint=self.gradient_checkpointing,
        )
        x = self.run_blocks(x, inputs, deep)
        x = self.conv_out(F.silu(self.conv_norm_out(x)))
        return x.reshape(b, f, *x.shape[1:]).transpose(1, 2)
