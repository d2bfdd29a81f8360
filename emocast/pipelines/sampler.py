"""Clip-by-clip generation (spec §8.2-8.3): one video is rendered as consecutive clips of ``clip_length``
frames, each denoised from seeded noise with DDIM + classifier-free guidance and chained to the previous clip
through ``motion_frames`` frames.

What runs how often:

- once per video: text/face tokens, masks, FaceLocator feature (:func:`conditioning.prepare_video`), the VAE
  latents of the reference image;
- once per clip: the audio projection and the ReferenceNet pass on [reference, motion frames]
  (:func:`conditioning.prepare_clip`), the initial noise (drawn from the video's CPU generator, whose stream
  continues from clip to clip), the VAE decoding (in batches of ``vae_decode_batch`` frames);
- every step: the denoising UNet (:func:`conditioning.model_output`), the guidance mix and the DDIM update.

Motion frames: the first clip uses copies of the reference image; every later clip the last ``motion_frames``
decoded frames of the previous clip, in float (no uint8 rounding), as the release does. The audio features are
expected padded to a multiple of ``clip_length`` (spec §6.6, ``Wav2VecFeatures.extract(clip_length=...)``);
shorter features are padded by repeating the last frame. The frames beyond the audio length are dropped from
the last clip, so the video has exactly ``num_frames`` frames.

With ``cfg_scale <= 1`` the unconditional branch is not built at all (half the work; the release crashes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from tqdm.auto import tqdm

from . import conditioning
from .scheduler import initial_noise, make_scheduler

VAE_SCALE = 0.18215  # SD-1.x latent scaling factor (hard-coded in the release)


@dataclass
class SamplerSettings:
    steps: int = 40
    cfg_scale: float = 3.5
    clip_length: int = 16
    motion_frames: int = 2
    motion_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)  # pose (full/background), face, lip
    vae_decode_batch: int = 8
    reference_pairing: str = "release"  # spec §5.3; "matched" fixes the motion-frame/CFG pairing
    bank_dtype: torch.dtype | None = None  # cast of the reference records (release: fp16); None = model dtype
    audio_margin: int = 2  # audio window: frames i-2..i+2

    @property
    def guidance(self) -> bool:
        return self.cfg_scale > 1.0

    def __post_init__(self):
        from ..errors import ConfigError

        if int(self.steps) < 1:
            raise ConfigError(f"inference_steps must be at least 1, got {self.steps}")
        if int(self.clip_length) < 1 or int(self.motion_frames) < 0:
            raise ConfigError("data.n_sample_frames must be >= 1 and data.n_motion_frames >= 0")
        if int(self.vae_decode_batch) < 1:
            raise ConfigError(f"vae_decode_batch must be at least 1, got {self.vae_decode_batch}")
        self.motion_scale = tuple(float(w) for w in self.motion_scale)


def clip_windows(features: torch.Tensor, start: int, stop: int, margin: int = 2) -> torch.Tensor:
    """Audio windows of frames ``start..stop-1``: ``(stop-start, 2*margin+1, ...)``, indices clamped to the
    whole sequence (so clip boundaries see their real neighbours, like windows built over the whole video)."""
    n = features.shape[0]
    idx = torch.arange(start, stop)[:, None] + torch.arange(-margin, margin + 1)[None, :]
    return features[idx.clamp_(0, n - 1)]


class ClipSampler:
    """Renders videos with an :class:`~emocast.models.EmoCASTNet` and a diffusers ``AutoencoderKL``."""

    def __init__(self, net, vae, settings: SamplerSettings | None = None, scheduler=None):
        self.net = net
        self.vae = vae
        self.settings = settings or SamplerSettings()
        self.scheduler = scheduler if scheduler is not None else make_scheduler()

    @property
    def device(self) -> torch.device:
        return self.net.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.dtype

    # ------------------------------------------------------------------------------------------------ VAE
    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels ``(n, 3, H, W)`` in [-1, 1] -> latents ``(n, 4, H/8, W/8)`` = ``latent_dist.mean * 0.18215``."""
        x = pixels.to(device=self.vae.device, dtype=self.vae.dtype)
        return self.vae.encode(x).latent_dist.mean * VAE_SCALE

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(1, 4, F, h, w)`` -> frames ``(F, 3, H, W)`` float32 in [0, 1] on the CPU, in batches."""
        lat = latents[0].transpose(0, 1)  # (F, 4, h, w)
        out = []
        for i in range(0, lat.shape[0], self.settings.vae_decode_batch):
            z = lat[i:i + self.settings.vae_decode_batch].to(device=self.vae.device, dtype=self.vae.dtype)
            img = self.vae.decode(z / VAE_SCALE).sample
            out.append((img / 2 + 0.5).clamp(0, 1).to("cpu", torch.float32))
        return torch.cat(out)

    # ------------------------------------------------------------------------------------------------ video
    @torch.inference_mode()
    def prepare_video(self, *, text_emb, uncond_text_emb, face_emb, face_region, full_masks: Sequence,
                      face_masks: Sequence, lip_masks: Sequence) -> conditioning.VideoConditioning:
        """Per-video conditioning in the sampler's batch layout (with or without the CFG branch)."""
        return conditioning.prepare_video(
            self.net, text_emb=text_emb, uncond_text_emb=uncond_text_emb if self.settings.guidance else None,
            face_emb=face_emb, face_region=face_region, full_masks=full_masks, face_masks=face_masks,
            lip_masks=lip_masks, guidance=self.settings.guidance)

    @torch.inference_mode()
    def sample_clip(self, video: conditioning.VideoConditioning, ref_latents: torch.Tensor,
                    audio_windows: torch.Tensor, generator: torch.Generator, progress: bool = True) -> torch.Tensor:
        """Denoise one clip. ``ref_latents`` ``(1+M, 4, h, w)`` (reference then motion frames), ``audio_windows``
        ``(1, F, window, layers, dim)``. Returns the clip's latents ``(1, 4, F, h, w)``."""
        s = self.settings
        clip = conditioning.prepare_clip(self.net, video, ref_latents=ref_latents, audio_windows=audio_windows,
                                         pairing=s.reference_pairing, bank_dtype=s.bank_dtype)
        frames = audio_windows.shape[1]
        h, w = ref_latents.shape[-2:]
        self.scheduler.set_timesteps(s.steps, device=self.device)
        latents = initial_noise(generator, (1, ref_latents.shape[1], frames, h, w), self.dtype, self.device)
        latents = latents * self.scheduler.init_noise_sigma
        for t in tqdm(self.scheduler.timesteps, desc="steps", unit="step", leave=False, disable=not progress):
            v = conditioning.model_output(self.net, video, clip, latents, t, motion_scale=s.motion_scale)
            if video.guidance:
                v = conditioning.guide(v, s.cfg_scale)
            latents = self.scheduler.step(v, t, latents).prev_sample
        return latents

    def num_clips(self, num_frames: int) -> int:
        return math.ceil(num_frames / self.settings.clip_length)

    @torch.inference_mode()
    def frames(self, video: conditioning.VideoConditioning, ref_pixels: torch.Tensor, features: torch.Tensor,
               num_frames: int, generator: torch.Generator, progress: bool = True) -> Iterator[torch.Tensor]:
        """Yield the video clip by clip as ``(n, 3, H, W)`` float32 CPU frames in [0, 1]; ``num_frames`` in all.

        ref_pixels: ``(1, 3, H, W)`` in [-1, 1]; features: ``(N', layers, dim)`` wav2vec2 features at 25 fps,
        ``N' >= num_frames`` (padded to a clip multiple); generator: the video's CPU generator.
        """
        s = self.settings
        if num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        clips = self.num_clips(num_frames)
        needed = clips * s.clip_length
        if features.shape[0] < needed:
            pad = features[-1:].expand(needed - features.shape[0], *features.shape[1:])
            features = torch.cat([features, pad])
        ref_latent = self.encode(ref_pixels)  # (1, 4, h, w), once per video
        motion_latents = ref_latent.expand(s.motion_frames, *ref_latent.shape[1:])  # clip 0: reference copies
        for c in tqdm(range(clips), desc="clips", unit="clip", disable=not progress):
            start = c * s.clip_length
            windows = clip_windows(features, start, start + s.clip_length, s.audio_margin)[None]
            ref_latents = torch.cat([ref_latent, motion_latents]) if s.motion_frames else ref_latent
            latents = self.sample_clip(video, ref_latents, windows, generator, progress)
            decoded = self.decode(latents)
            if s.motion_frames and c + 1 < clips:
                motion_pixels = decoded[-s.motion_frames:] * 2 - 1  # float, no uint8 rounding
                motion_latents = self.encode(motion_pixels)
            yield decoded[: min(s.clip_length, num_frames - start)]
