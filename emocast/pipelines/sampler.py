"""Clip-by-clip generation (spec §8.2-8.3): one video is rendered as consecutive clips of ``clip_length``
frames, each denoised from seeded noise (:func:`~emocast.pipelines.denoise.denoise`, DDIM + classifier-free
guidance) and chained to the previous clip through ``motion_frames`` frames.

What runs how often:

- once per video: text/face tokens, masks, FaceLocator feature (:func:`conditioning.prepare_video`), the VAE
  latents of the reference image, its ReferenceNet records and the UNet's keys/values of them and of the
  text/face tokens (at the first clip);
- once per clip: the audio projection, the ReferenceNet pass on the motion frames and the UNet's step-invariant
  work (:func:`conditioning.prepare_clip`, :mod:`emocast.models.step_cache`), the initial noise (drawn from the
  video's CPU generator, whose stream continues from clip to clip), the VAE decoding
  (:class:`~emocast.models.vae.VaeCodec`, in batches);
- every step: the denoising UNet (:func:`conditioning.model_output`) on the rows the step's plan names
  (:mod:`emocast.pipelines.plan`: guidance interval, DeepCache), the guidance mix and the solver update
  (``solver``: DDIM as the release, or a multistep solver at fewer steps).

Motion frames: the first clip uses copies of the reference image; every later clip the last ``motion_frames``
decoded frames of the previous clip, in float (no uint8 rounding), as the release does. The audio features are
expected padded to a multiple of ``clip_length`` (spec §6.6, ``Wav2VecFeatures.extract(clip_length=...)``);
shorter features are padded by repeating the last frame. The frames beyond the audio length are dropped from
the last clip, so the video has exactly ``num_frames`` frames.

With ``cfg_scale <= 1`` the unconditional branch is not built at all (half the work; the release crashes).
A consistency-distilled student (:attr:`~emocast.models.EmoCASTNet.is_student`, ``--preset turbo``) runs one row
with the guidance scale as its input, in a few DDIM steps: its prediction is the clean end of the teacher's
trajectory, so each DDIM step is the deterministic multistep consistency update.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..models.vae import VaeCodec
from ..preprocess.audio import audio_windows
from . import conditioning
from .denoise import GuidedPrediction, StepState, denoise
from .card import RELEASE_CARD
from .plan import PlanStep, build_plan, check_interval
from .scheduler import DEFAULT_CFG_SCALE, DEFAULT_STEPS, SOLVERS, Schedule, initial_noise, make_scheduler


@dataclass
class SamplerSettings:
    """How a video is sampled; the defaults are the release's (the checkpoint card's and the config's)."""

    steps: int = DEFAULT_STEPS
    cfg_scale: float = DEFAULT_CFG_SCALE
    clip_length: int = RELEASE_CARD.clip_length
    motion_frames: int = RELEASE_CARD.motion_frames
    audio_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # pose (full/background), face, lip branches
    reference_pairing: str = RELEASE_CARD.reference_pairing  # spec §5.3; "matched" fixes the motion-frame/CFG pairing
    bank_dtype: torch.dtype | None = None  # cast of the reference records (release: fp16); None = model dtype
    audio_margin: int = RELEASE_CARD.audio_margin  # audio window: frames i-margin..i+margin
    schedule: Schedule = dataclasses.field(default_factory=lambda: RELEASE_CARD.schedule)
    solver: str = "ddim"  # ddim (the release) | dpmsolver++ | unipc (scheduler.SOLVERS)
    guidance_interval: tuple[float, float] = (0.0, 1.0)  # guide the steps start <= i/steps < end; the others: cond row
    deep_cache_interval: int = 1  # DeepCache: the deep UNet part every k-th step (1 = every step, off)
    deep_cache_depth: int = 1  # DeepCache: UNet levels recomputed at the steps in between
    audio_guidance: float | None = None  # separate guidance: the audio scale (None = cfg_scale)
    emotion_guidance: float | None = None  # separate guidance: the emotive-text scale (None = cfg_scale)

    @property
    def guidance_scales(self) -> tuple[float, float]:
        """(audio, emotion) guidance scales; either defaults to ``cfg_scale``."""
        a = self.cfg_scale if self.audio_guidance is None else self.audio_guidance
        e = self.cfg_scale if self.emotion_guidance is None else self.emotion_guidance
        return float(a), float(e)

    @property
    def separate_guidance(self) -> bool:
        """Different audio and emotion scales: the emotive text gets its own guidance row. Equal scales are the
        single-scale guidance (the middle row cancels out of the chain), sampled exactly as ``cfg_scale``."""
        a, e = self.guidance_scales
        return a != e

    @property
    def guidance(self) -> bool:
        """True when a step runs more than the conditional row."""
        return self.separate_guidance or self.guidance_scales[0] > 1.0

    def chain(self) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """The conditioning rows of a video (:data:`conditioning.ROWS`, in chain order, everything last) and the
        guidance scales that mix them.

        Equal scales s: [nothing, everything] mixed with s (s > 1), else [everything] — the release's rows.
        Separate scales (a, e): [nothing, no_text, everything] mixed along the chain
        ``o_0 + a (o_1 - o_0) + e (o_2 - o_1)``; with a = 1 that is ``o_1 + e (o_2 - o_1)``, so the nothing row is
        not run."""
        a, e = self.guidance_scales
        if not self.separate_guidance:
            return (("nothing", "everything"), (a,)) if self.guidance else (("everything",), ())
        if a == 1.0:
            return ("no_text", "everything"), (e,)
        return ("nothing", "no_text", "everything"), (a, e)

    def row_names(self) -> tuple[str, ...]:
        return self.chain()[0]

    def chain_scales(self) -> tuple[float, ...]:
        return self.chain()[1]

    def keep(self, device=None) -> conditioning.Keep:
        """The keep masks of :meth:`row_names` (the release's CFG rows unless the scales differ)."""
        return conditioning.named_keep(self.row_names(), device)

    def plan(self, cfg_rows: bool | None = None) -> tuple[PlanStep, ...]:
        """The per-step plan over the sampler's rows (:meth:`row_names`, mixed with :meth:`chain_scales`;
        ``cfg_rows=False``: the one conditional row even with guidance, as a consistency student that folds it in)."""
        if cfg_rows is False:
            return build_plan(self.steps, (0,), (), guidance_interval=self.guidance_interval,
                              deep_cache_interval=self.deep_cache_interval)
        names, scales = self.chain()
        return build_plan(self.steps, tuple(range(len(names))), scales,
                          guidance_interval=self.guidance_interval, deep_cache_interval=self.deep_cache_interval)

    def __post_init__(self):
        if int(self.steps) < 1:
            raise ConfigError(f"inference_steps must be at least 1, got {self.steps}")
        if int(self.clip_length) < 1 or int(self.motion_frames) < 0:
            raise ConfigError("data.n_sample_frames must be >= 1 and data.n_motion_frames >= 0")
        if not math.isfinite(float(self.cfg_scale)):
            raise ConfigError(f"cfg_scale must be a finite number, got {self.cfg_scale}")
        for key in ("audio_guidance", "emotion_guidance"):
            value = getattr(self, key)
            if value is not None and not math.isfinite(float(value)):
                raise ConfigError(f"{key} must be a finite number (or null = cfg_scale), got {value}")
        self.audio_weights = tuple(float(w) for w in self.audio_weights)
        if len(self.audio_weights) != 3 or not all(math.isfinite(w) for w in self.audio_weights):
            raise ConfigError(f"the (pose, face, lip) audio weights must be 3 finite numbers, got {self.audio_weights}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVERS)}")
        self.guidance_interval = check_interval(self.guidance_interval)
        if int(self.deep_cache_interval) < 1:
            raise ConfigError(f"deep_cache_interval must be at least 1 (1 = off), got {self.deep_cache_interval}")
        if int(self.deep_cache_depth) < 1:
            raise ConfigError(f"deep_cache_depth must be at least 1, got {self.deep_cache_depth}")


class ClipSampler:
    """Renders videos with an :class:`~emocast.models.EmoCASTNet` and a :class:`~emocast.models.vae.VaeCodec`
    (a plain diffusers ``AutoencoderKL`` is wrapped with its config's scaling factor)."""

    def __init__(self, net, codec, settings: SamplerSettings | None = None):
        self.net = net
        self.codec = codec if codec is None or isinstance(codec, VaeCodec) else VaeCodec(codec)
        self.settings = settings or SamplerSettings()
        self.offload = None  # a ModelOffload holding the networks as "net" (EmoCASTPipeline.enable_model_offload)
        self._scheduler = None
        depth = self.settings.deep_cache_depth
        if self.settings.deep_cache_interval > 1 and depth >= net.config.num_levels:
            raise ConfigError(f"deep_cache_depth must be below the UNet's {net.config.num_levels} levels, got {depth}")

    def with_settings(self, settings: SamplerSettings) -> "ClipSampler":
        """A sampler of the same networks (and offload) with other settings (e.g. one render's guidance)."""
        if settings is self.settings:
            return self
        other = ClipSampler(self.net, self.codec, settings)
        other.offload = self.offload
        return other

    def check_guidance(self) -> None:
        """Separate audio/emotion guidance needs the guidance rows; a consistency student (``--preset turbo``) folds
        one guidance scale into its single row, so it is refused there with one message."""
        if self.settings.separate_guidance and self.net.is_student:
            a, e = self.settings.guidance_scales
            raise ConfigError(f"separate guidance (audio_guidance {a:g}, emotion_guidance {e:g}) needs the teacher's "
                              "guidance rows, but this checkpoint is a distilled student that folds one guidance scale "
                              "into its single row. Fix: give one scale (--cfg_scale, or equal audio and emotion "
                              "scales), or render with a DDIM checkpoint (--preset release)")

    @property
    def scheduler(self):
        """The solver of the current settings (rebuilt when ``settings`` is replaced with another schedule/solver)."""
        key = (self.settings.schedule, self.settings.solver)
        if self._scheduler is None or self._scheduler[0] != key:
            self._scheduler = (key, make_scheduler(*key))
        return self._scheduler[1]

    @property
    def plan(self):
        """The per-step plan of the current settings (:meth:`SamplerSettings.plan`)."""
        return self.settings.plan(self.cfg_rows)

    @property
    def device(self) -> torch.device:
        return self.offload.device if self.offload is not None else self.net.device

    def _use_net(self) -> None:
        if self.offload is not None:
            self.offload.use("net")

    @property
    def dtype(self) -> torch.dtype:
        return self.net.dtype

    @property
    def cfg_rows(self) -> bool:
        """True when a step runs [unconditional, conditional] rows: guidance asked for, and not folded into the
        network (a consistency student takes ``cfg_scale`` as input and runs one row)."""
        return self.settings.guidance and not self.net.is_student

    # ------------------------------------------------------------------------------------------------ video
    @torch.inference_mode()
    def prepare_video(self, *, text_emb, uncond_text_emb, face_emb, face_region, full_masks: Sequence,
                      face_masks: Sequence, lip_masks: Sequence) -> conditioning.VideoConditioning:
        """Per-video conditioning in the sampler's rows (with or without the CFG branch)."""
        self.check_guidance()
        self._use_net()
        return conditioning.prepare_video(
            self.net, text_emb=text_emb, uncond_text_emb=uncond_text_emb if self.cfg_rows else None,
            face_emb=face_emb, face_region=face_region, full_masks=full_masks, face_masks=face_masks,
            lip_masks=lip_masks, keep=self.settings.keep() if self.cfg_rows else conditioning.guidance_keep(False))

    @torch.inference_mode()
    def prepare_clip(self, video: conditioning.VideoConditioning, ref_latents: torch.Tensor,
                     audio_windows: torch.Tensor | None,
                     reference: conditioning.VideoReference | None = None) -> conditioning.ClipConditioning:
        """The clip's conditioning: ``ref_latents`` ``(1+M, 4, h, w)`` (reference then motion frames),
        ``audio_windows`` ``(1, F, window, layers, dim)`` or None (the image stage); ``reference``: the video's
        :meth:`~emocast.pipelines.conditioning.ClipConditioning.video_reference` from its first clip."""
        s = self.settings
        self._use_net()
        return conditioning.prepare_clip(self.net, video, ref_latents=ref_latents, audio_windows=audio_windows,
                                         pairing=s.reference_pairing, bank_dtype=s.bank_dtype, reference=reference)

    @torch.inference_mode()
    def denoise_clip(self, video: conditioning.VideoConditioning, clip: conditioning.ClipConditioning,
                     latents: torch.Tensor, progress: bool = True,
                     callback: Callable[[StepState], None] | None = None) -> torch.Tensor:
        """Denoise the clip from ``latents`` (its initial noise) with the sampler's plan and solver."""
        s = self.settings
        self._use_net()
        # the plan carries the guidance rows' scales; a student takes the one (equal audio/emotion) scale as input
        predict = GuidedPrediction(self.net, video, clip, s.guidance_scales[0], s.audio_weights, plan=self.plan,
                                   deep_cache_depth=s.deep_cache_depth)
        if callback is not None:  # the callback also sees the step's conditioning
            callback = (lambda state, inner=callback: inner(dataclasses.replace(state, video=video)))
        return denoise(predict, self.scheduler, latents, s.steps, callback=callback, progress=progress)

    @torch.inference_mode()
    def sample_clip(self, video: conditioning.VideoConditioning, ref_latents: torch.Tensor,
                    audio_windows: torch.Tensor | None, generator: torch.Generator, progress: bool = True,
                    callback: Callable[[StepState], None] | None = None, frames: int | None = None,
                    reference: conditioning.VideoReference | None = None) -> torch.Tensor:
        """Denoise one clip. ``ref_latents`` ``(1+M, 4, h, w)`` (reference then motion frames), ``audio_windows``
        ``(1, F, window, layers, dim)`` (None: the image stage, ``frames`` frames); ``reference``: see
        :meth:`prepare_clip`. Returns ``(1, 4, F, h, w)``."""
        clip = self.prepare_clip(video, ref_latents, audio_windows, reference)
        return self.denoise_clip(video, clip, self.initial_latents(generator, ref_latents, audio_windows, frames),
                                 progress, callback)

    def initial_latents(self, generator: torch.Generator, ref_latents: torch.Tensor,
                        audio_windows: torch.Tensor | None, frames: int | None = None) -> torch.Tensor:
        """The clip's seeded noise ``(1, 4, F, h, w)`` in the model dtype (drawn on the CPU)."""
        n = audio_windows.shape[1] if audio_windows is not None else int(frames or 1)
        h, w = ref_latents.shape[-2:]
        return initial_noise(generator, (1, ref_latents.shape[1], n, h, w), self.dtype, self.device)

    def num_clips(self, num_frames: int) -> int:
        return math.ceil(num_frames / self.settings.clip_length)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clip latents ``(1, 4, F, h, w)`` -> frames ``(F, 3, H, W)`` float32 in [0, 1] on the CPU."""
        return self.codec.decode(latents[0].transpose(0, 1)).cpu()

    @torch.inference_mode()
    def frames(self, video: conditioning.VideoConditioning | Callable[[int], conditioning.VideoConditioning],
               ref_pixels: torch.Tensor, features: torch.Tensor, num_frames: int, generator: torch.Generator,
               progress: bool = True, callback: Callable[[int, StepState], None] | None = None
               ) -> Iterator[torch.Tensor]:
        """Yield the video clip by clip as ``(n, 3, H, W)`` float32 CPU frames in [0, 1]; ``num_frames`` in all.

        video: the video's conditioning, or a function clip index -> the clip's (an emotion timeline: the text
        changes from clip to clip; a clip whose conditioning is another object than the previous clip's runs the
        reference image through the ReferenceNet again, since its records depend on the text);
        ref_pixels: ``(1, 3, H, W)`` in [-1, 1]; features: ``(N', layers, dim)`` wav2vec2 features at 25 fps,
        ``N' >= num_frames`` (padded to a clip multiple); generator: the video's CPU generator; callback: called
        after every denoising step with the clip index and the step's :class:`StepState`.
        """
        s = self.settings
        if num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        clips = self.num_clips(num_frames)
        needed = clips * s.clip_length
        if features.shape[0] < needed:
            pad = features[-1:].expand(needed - features.shape[0], *features.shape[1:])
            features = torch.cat([features, pad])
        ref_latent = self.codec.encode(ref_pixels)  # (1, 4, h, w), once per video
        reference = None  # the reference image's share of the reference pass, from the first clip on
        motion_latents = ref_latent.expand(s.motion_frames, *ref_latent.shape[1:])  # clip 0: reference copies
        video_of = (lambda c: video) if isinstance(video, conditioning.VideoConditioning) else video
        clip_video = None
        for c in tqdm(range(clips), desc="clips", unit="clip", disable=not progress):
            previous, clip_video = clip_video, video_of(c)
            if clip_video is not previous:
                reference = None  # another text: the reference records change too
            start = c * s.clip_length
            windows = audio_windows(features, start, start + s.clip_length, s.audio_margin)[None]
            ref_latents = torch.cat([ref_latent, motion_latents]) if s.motion_frames else ref_latent
            step_callback = None if callback is None else (lambda state, c=c: callback(c, state))
            clip = self.prepare_clip(clip_video, ref_latents, windows, reference)
            reference = reference or clip.video_reference()
            latents = self.denoise_clip(clip_video, clip, self.initial_latents(generator, ref_latents, windows),
                                        progress, step_callback)
            decoded = self.decode(latents)
            if s.motion_frames and c + 1 < clips:
                motion_pixels = decoded[-s.motion_frames:] * 2 - 1  # float, no uint8 rounding
                motion_latents = self.codec.encode(motion_pixels)
            yield decoded[: min(s.clip_length, num_frames - start)]
