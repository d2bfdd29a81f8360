"""``EmoCASTPipeline``: every component loaded from ``pretrained_models`` (through the registry), one call per
video: portrait + speech + emotive prompt -> MP4.

::

    pipe = EmoCASTPipeline.from_pretrained("pretrained_models")           # CUDA+fp16 if present, else CPU+fp32
    video = pipe("me.png", "hello.wav", "A person is talking with happy emotion.")   # frames in memory
    video.save("outputs/me_hello.mp4")
    pipe.render("me.png", "hello.wav", "A person is talking with happy emotion.", "outputs/me_hello.mp4")  # streamed

Loading checks **every** needed component first (one download report for all that are missing), reads the
checkpoint card (``net.json`` beside ``net.pth``: resolution, clip length, noise schedule, ...; the released
``net.pth`` has none and gets the release's settings), then loads: the EmoCAST networks, the VAE, the CLIP text
encoder, wav2vec2, the insightface pack, the mediapipe landmarker and (unless disabled) the vocal separator. A
render then preprocesses the image (spec §7, :func:`emocast.preprocess.reference.prepare_reference`) and the audio
(spec §6), samples clip by clip (:class:`~emocast.pipelines.sampler.ClipSampler`) and streams the frames into the
H.264/AAC writer with the original audio.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import config as config_mod
from .. import registry
from ..errors import CheckpointError, ConfigError, EmoCASTError, InputError
from ..media.video_writer import VideoWriter
from ..models.vae import VaeCodec, load_vae
from ..preprocess.audio import FPS  # features, audio windows and the output video all run at 25 fps (spec §6)
from ..runtime import dtype_name, select_device, select_dtype, tune_cpu_allocator
from .batch import Job, RowProblem, failed_rows_error, output_paths
from .card import CheckpointCard, read_card, resolve
from .config import TURBO_MAX_STEPS, InferenceConfig
from .emotion import EmotionSettings, EmotionText, as_timeline, read_timeline
from .presets import PRESETS, get_preset
from .rendered import RenderedVideo, RenderProgress
from .sampler import ClipSampler, SamplerSettings
from .scheduler import DEFAULT_STEPS, check_samplable, make_generator

log = logging.getLogger("emocast.inference")

SEPARATOR = "audio_separator"
CHECKPOINT_FILE = "net.pth"


def needed_components(separate_vocals: bool = True, own_checkpoint: bool = False) -> list[str]:
    """The registry components a render needs (``own_checkpoint``: net.pth comes from --checkpoint)."""
    names = [n for n in registry.inference_components() if n != SEPARATOR]
    names = [n for n in names if not (own_checkpoint and n == "emocast")]
    return names + ([SEPARATOR] if separate_vocals else [])


def resolve_checkpoint(checkpoint, models_root=None) -> Path:
    """``checkpoint`` (a ``net.pth`` file or a folder holding one; None = the registry's) -> file path."""
    if checkpoint is None or str(checkpoint) == "":
        return registry.component_dir("emocast", models_root) / CHECKPOINT_FILE
    path = Path(checkpoint).expanduser()
    if not path.exists():  # an export folder a killed export renamed aside (non-Linux swap) is put back
        from ..atomic import recover_dir

        recover_dir(path if path.suffix != ".pth" else path.parent)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Fix: pass --checkpoint with the EmoCAST net.pth "
                              "(or the folder holding it), or leave it out to use "
                              f"{registry.COMPONENTS['emocast'].path(models_root) / CHECKPOINT_FILE}")
    return path


def read_unet_config(models_root=None) -> dict:
    """``stable-diffusion-v1-5/unet/config.json`` (the UNet layout; its ``sample_size`` sets the resolution of a
    checkpoint without card, as in the release)."""
    path = registry.component_dir("stable-diffusion-v1-5-config", models_root) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {path} ({err}). Fix: re-download it: "
                          f"{registry.fix_command('stable-diffusion-v1-5-config', models_root)}") from None


def load_networks(checkpoint: Path, device=None, dtype=None, net_config=None):
    """EmoCASTNet from ``checkpoint`` (strict; the architecture from ``net_config`` (a card's) or read from the
    checkpoint's shapes, so the released net.pth and smaller research/test nets load alike). Any failure is a
    :class:`CheckpointError`."""
    from ..models import loading

    try:
        net = loading.load_net(checkpoint, config=net_config, dtype=dtype, device=device)
    except EmoCASTError:
        raise
    except Exception as err:  # anything else from a file that is not ours
        raise CheckpointError(f"{checkpoint} is not an EmoCAST net.pth ({type(err).__name__}: {err}). Fix: "
                              f"use the released checkpoint ({registry.COMPONENTS['emocast'].source}) or one "
                              "exported by our training scripts") from None
    return net.eval()


def image_size_for(unet_sample_size: int, vae) -> int:
    """Working resolution: the UNet's latent size x the VAE's downsampling (64 x 8 = 512 for SD-1.5)."""
    return int(unet_sample_size) * 2 ** (len(vae.config.block_out_channels) - 1)


@dataclass
class PreprocessSettings:
    separate_vocals: bool = True
    square_crop: bool = True
    use_whole_image: bool = False  # no face found -> the whole image is the face (zero identity embedding)
    face_expand_ratio: float = 1.2
    min_face_size: float = 32.0
    min_face_fraction: float = 0.05


@dataclass
class PreparedAudio:
    features: torch.Tensor  # (N', layers, dim), N' padded to a clip multiple
    num_frames: int  # N = ceil(seconds * 25): frames of the output video


@dataclass
class Sampling:
    """What a render samples with: the sampler settings and the resolution (card + config, resolved)."""

    settings: SamplerSettings
    image_size: int | None  # None: from the SD UNet config (a checkpoint without card, as the release)


def resolve_steps(cfg: InferenceConfig, card: CheckpointCard, found: bool = True) -> int:
    """The denoising steps of ``cfg.preset`` for a checkpoint with ``card``: ``release`` runs 40 DDIM steps with
    classifier-free guidance (a consistency student too, with a warning), ``turbo`` needs a student (its card says
    ``sampler: consistency``) and takes its default steps, 1-8, from the card; an explicit ``inference_steps``
    wins. A student always runs one row with the guidance folded in (:class:`~.sampler.ClipSampler`)."""
    student = card.sampler == "consistency"
    options = card.sampler_options
    if get_preset(cfg.preset).sampler != "consistency":
        if student:
            log.warning("this checkpoint is a consistency-distilled student (its card says sampler: consistency): "
                        "the %s preset samples it with %s DDIM steps where --preset turbo needs %s", cfg.preset,
                        DEFAULT_STEPS if cfg.inference_steps == "auto" else cfg.inference_steps, options.get("steps"))
        return DEFAULT_STEPS if cfg.inference_steps == "auto" else cfg.inference_steps
    if not student:
        why = f"its card net.json says sampler: {card.sampler}" if found else "it has no card net.json: the release"
        raise CheckpointError(
            f"--preset turbo needs a consistency-distilled student checkpoint, and this one is sampled with DDIM "
            f"({why}). Fix: distil one with scripts/train_distill.py --teacher <this checkpoint> and pass its "
            "final/ folder with --checkpoint, or drop --preset turbo")
    if cfg.inference_steps == "auto" and not isinstance(options.get("steps"), int):
        raise CheckpointError("this student's card has no sampler_options.steps: pass --steps (1-8) or re-export it")
    steps = options["steps"] if cfg.inference_steps == "auto" else cfg.inference_steps
    if not 1 <= steps <= TURBO_MAX_STEPS:
        raise ConfigError(f"--steps {steps} with --preset turbo: a consistency student samples in 1-{TURBO_MAX_STEPS} "
                          f"steps (its card's default: {options.get('steps')}); use the release preset for more")
    lo, hi = options.get("guidance_range", (cfg.cfg_scale, cfg.cfg_scale))
    if not lo <= cfg.cfg_scale <= hi:
        log.warning("cfg_scale %s is outside the guidance range [%s, %s] the student was distilled for: it "
                    "extrapolates", cfg.cfg_scale, lo, hi)
    return steps


def resolve_sampling(cfg: InferenceConfig, card: CheckpointCard, found: bool) -> Sampling:
    """The effective sampling settings of ``cfg`` for a checkpoint with ``card`` (``found``: the card exists; an
    explicit config value that contradicts it wins with one warning line)."""
    samplers = {p.sampler for p in PRESETS.values()}
    if card.sampler not in samplers:
        raise CheckpointError(f"this checkpoint's card says sampler: {card.sampler}, which no preset samples (they "
                              f"sample {', '.join(sorted(samplers))} checkpoints). Fix: use a checkpoint trained for "
                              "this pipeline")
    steps = resolve_steps(cfg, card, found)
    requested = {"image_size": cfg.data.size, "clip_length": cfg.data.n_sample_frames,
                 "motion_frames": cfg.data.n_motion_frames, "reference_pairing": cfg.reference_pairing,
                 **{f"schedule.{k}": getattr(cfg.schedule, k) for k in ("prediction_type", "beta_schedule",
                                                                         "rescale_betas_zero_snr", "timestep_spacing")}}
    got = resolve(card, requested, found)
    schedule = card.schedule.replace(**{k.split(".", 1)[1]: v for k, v in got.items() if k.startswith("schedule.")})
    check_samplable(schedule, "set schedule.rescale_betas_zero_snr=false or schedule.prediction_type=v_prediction "
                              "(auto = the checkpoint card's)")
    settings = SamplerSettings(
        steps=steps, cfg_scale=cfg.cfg_scale, clip_length=got["clip_length"],
        motion_frames=got["motion_frames"], audio_weights=(cfg.pose_weight, cfg.face_weight, cfg.lip_weight),
        reference_pairing=got["reference_pairing"], audio_margin=card.audio_margin, schedule=schedule,
        solver=cfg.solver, guidance_interval=tuple(cfg.guidance_interval),
        deep_cache_interval=cfg.deep_cache_interval, deep_cache_depth=cfg.deep_cache_depth,
        audio_guidance=cfg.audio_guidance, emotion_guidance=cfg.emotion_guidance)
    size = got["image_size"] if (found or cfg.data.size != "auto") else None
    return Sampling(settings, size)


class EmoCASTPipeline:
    """All models of one EmoCAST render, loaded once; :meth:`render` is one video."""

    def __init__(self, net, vae, text_encoder, audio_encoder, face_analyzer, landmarker, separator=None, *,
                 settings: SamplerSettings | None = None, preprocess: PreprocessSettings | None = None,
                 image_size: int = 512, seed: int = 42, card: CheckpointCard | None = None,
                 emotion: EmotionSettings | None = None):
        self.net = net
        self.emotion = emotion or EmotionSettings()
        self.text_encoder, self.audio_encoder = text_encoder, audio_encoder
        self.face_analyzer, self.landmarker, self.separator = face_analyzer, landmarker, separator
        self.sampler = ClipSampler(net, vae, settings or SamplerSettings())
        self.preprocess = preprocess or PreprocessSettings(separate_vocals=separator is not None)
        if image_size % 64:
            raise ConfigError(f"data.size must be a multiple of 64, got {image_size}")
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.card = card
        self.offload = None

    @property
    def codec(self) -> VaeCodec:
        return self.sampler.codec

    @property
    def settings(self) -> SamplerSettings:
        return self.sampler.settings

    @property
    def device(self) -> torch.device:
        return self.sampler.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.dtype

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, models_root=None, checkpoint=None, *, config: InferenceConfig | None = None,
                        progress: bool = True, **settings) -> "EmoCASTPipeline":
        """Check every needed component (one report), read the checkpoint card, then load every model.

        ``config``: an :class:`InferenceConfig` (default: the defaults); ``settings``: config keys to change on top
        (e.g. ``device="cpu", inference_steps=20, cfg_scale=2.5``), checked like the command line's.
        """
        values = dict(settings)
        if models_root is not None:
            values["models_root"] = str(models_root)
        if checkpoint is not None:
            values["checkpoint"] = str(checkpoint)
        cfg = config_mod.load(InferenceConfig, [config_mod.to_dict(config)] if config is not None else (),
                              values=values)
        return cls.from_config(cfg, progress=progress)

    @classmethod
    def from_config(cls, cfg: InferenceConfig, progress: bool = True) -> "EmoCASTPipeline":
        """From a loaded inference config (``scripts/inference.py``: defaults, -c YAML, flags, overrides)."""
        from ..preprocess.audio import Wav2VecFeatures
        from ..preprocess.face import FaceAnalyzer
        from ..preprocess.landmarks import Landmarker
        from ..preprocess.text import TextEncoder

        root = cfg.models_root
        pre = preprocess_settings(cfg)
        device = select_device(cfg.device)
        dtype = select_dtype(cfg.dtype, device)
        if device.type == "cpu":
            tune_cpu_allocator()
        own = bool(cfg.checkpoint)
        registry.require(needed_components(pre.separate_vocals, own), root)
        ckpt = resolve_checkpoint(cfg.checkpoint, root)
        card, found = read_card(ckpt)
        sampling = resolve_sampling(cfg, card, found)
        steps = ["networks", "vae", "text encoder", "wav2vec2", "face models"] + \
            (["vocal separator"] if pre.separate_vocals else [])
        bar = tqdm(total=len(steps), desc="loading models", unit="model", disable=not progress, leave=False)

        def done(name):
            bar.set_postfix_str(name)
            bar.update()

        unet_config = read_unet_config(root) if sampling.image_size is None else None
        offload = cfg.offload == "model" and device.type != "cpu"
        home = torch.device("cpu") if offload else device  # offloaded models wait on the CPU
        try:
            net = load_networks(ckpt, home, dtype, card.net if found else None)
            done("networks")
            vae = load_vae(root, home, dtype)
            codec = VaeCodec(vae, scaling_factor=card.vae_scaling_factor if found else None,
                             decode_batch=cfg.vae_decode_batch)
            if found and abs(codec.scaling_factor - float(vae.config.scaling_factor)) > 1e-9:
                log.warning("the checkpoint was trained with VAE scaling factor %s but the VAE's config says %s: "
                            "using the checkpoint's", card.vae_scaling_factor, vae.config.scaling_factor)
            done("vae")
            text = TextEncoder(root, device, dtype)
            done("text encoder")
            audio = Wav2VecFeatures(root, device)  # fp32, like the release
            done("wav2vec2")
            faces = FaceAnalyzer(root, device)
            landmarker = Landmarker(root)
            done("face models")
            separator = None
            if pre.separate_vocals:
                from ..preprocess.separator import VocalSeparator

                separator = VocalSeparator(root, device)
                done("vocal separator")
        finally:
            bar.close()
        size = sampling.image_size or image_size_for(unet_config.get("sample_size", 64), vae)
        pipe = cls(net, codec, text, audio, faces, landmarker, separator, settings=sampling.settings,
                   preprocess=pre, image_size=size, seed=cfg.seed, card=card, emotion=emotion_settings(cfg))
        if offload:
            pipe.enable_model_offload(device)
        elif cfg.offload == "model":
            log.warning("--offload model has no effect on the CPU")
        if cfg.compile:
            pipe.compile(cfg.compile_mode)
        return pipe

    # ------------------------------------------------------------------------------------------------ speed
    def enable_model_offload(self, device) -> None:
        """``--offload model``: every model on the CPU, moved whole to ``device`` only while it runs
        (:class:`~emocast.pipelines.offload.ModelOffload`)."""
        from .offload import ModelOffload

        self.offload = ModelOffload({"net": self.net, "vae": self.codec.vae, "text_encoder": self.text_encoder.model,
                                     "audio_encoder": self.audio_encoder.model}, device)
        self.sampler.offload = self.offload

    def compile(self, mode: str = "default") -> int:
        """``--compile``: regional ``torch.compile`` of the denoising UNet's repeated blocks (the ones that run
        every step); the first clip pays the compile time. Returns the number of compiled blocks."""
        return self.net.denoising_unet.compile_blocks(mode)

    # ------------------------------------------------------------------------------------------------ inputs
    def prepare_image(self, source_image):
        """The portrait -> :class:`~emocast.preprocess.reference.ReferenceInputs` at the working size."""
        from ..preprocess.reference import prepare_reference

        p = self.preprocess
        return prepare_reference(source_image, self.face_analyzer, self.landmarker, size=self.image_size,
                                 face_expand_ratio=p.face_expand_ratio, square=p.square_crop,
                                 allow_no_face=p.use_whole_image, min_face_size=p.min_face_size,
                                 min_face_fraction=p.min_face_fraction)

    def prepare_audio(self, driving_audio, progress: bool = False) -> PreparedAudio:
        """Speech -> (vocals) -> 16 kHz mono -> wav2vec2 features padded to a clip multiple (spec §6)."""
        from ..preprocess.audio import load_speech

        speech, frames = load_speech(driving_audio, self.separator)
        if self.offload is not None:
            self.offload.use("audio_encoder")  # runs layer by layer, not through its forward
        feats = self.audio_encoder.extract(speech, clip_length=self.settings.clip_length, progress=progress)
        return PreparedAudio(features=feats.features, num_frames=int(feats.num_frames))

    def conditioning(self, reference, prompt: str):
        """Per-video conditioning (text/face tokens, masks, FaceLocator feature) for the sampler (a plain prompt:
        every clip's; a timeline: the first clip's, see :meth:`clip_conditioning`)."""
        return self.clip_conditioning(reference, prompt)(0)

    def clip_conditioning(self, reference, prompt, *, sampler: ClipSampler | None = None,
                          emotion: EmotionSettings | None = None) -> Callable[[int], object]:
        """Clip index -> the clip's conditioning for the sampler (:meth:`ClipSampler.frames`): the text of the
        prompt or timeline at the clip's time, moved by the emotion strength (:class:`~emocast.pipelines.emotion
        .EmotionText`), in the rows of ``sampler``'s guidance. Consecutive clips with the same text share one
        object (a plain prompt: every clip)."""
        from ..preprocess.masks import level_masks, level_sizes

        sampler = sampler or self.sampler
        sides = level_sizes(self.image_size, self.net.config.num_levels)
        masks = [[torch.from_numpy(m) for m in level_masks(mask, sides)]
                 for mask in (reference.masks.full, reference.masks.face, reference.masks.lip)]
        text = EmotionText(as_timeline(prompt), emotion or self.emotion, lambda p: self.text_encoder.encode([p]),
                           sampler.settings.clip_length, FPS)
        uncond = self.text_encoder.uncond() if sampler.cfg_rows else None
        last: dict = {}

        def clip_video(c: int):
            key = text.clip_key(c)
            if key not in last:
                last.clear()
                last[key] = sampler.prepare_video(
                    text_emb=text.embedding(key), uncond_text_emb=uncond,
                    face_emb=torch.from_numpy(reference.face_emb)[None],
                    face_region=torch.from_numpy(reference.face_region)[None], full_masks=masks[0],
                    face_masks=masks[1], lip_masks=masks[2])
            return last[key]

        return clip_video

    def for_render(self, *, audio_guidance=None, emotion_guidance=None, emotion_strength=None,
                   emotion_transition=None, neutral_prompt=None) -> tuple[ClipSampler, EmotionSettings]:
        """The sampler and emotion settings of one render: the pipeline's, with the given controls changed."""
        import dataclasses

        changes = {k: v for k, v in (("audio_guidance", audio_guidance), ("emotion_guidance", emotion_guidance))
                   if v is not None}
        sampler = self.sampler.with_settings(dataclasses.replace(self.settings, **changes)) if changes \
            else self.sampler
        emo = {k: v for k, v in (("strength", emotion_strength), ("transition", emotion_transition),
                                 ("neutral_prompt", neutral_prompt)) if v is not None}
        return sampler, (dataclasses.replace(self.emotion, **emo) if emo else self.emotion)

    # ------------------------------------------------------------------------------------------------ render
    def stream(self, source_image, driving_audio, prompt, *, seed: int | None = None, progress: bool = True,
               callback: Callable[[RenderProgress], None] | None = None, what: str = "the video",
               **emotion) -> Iterator:
        """Preprocess the portrait and the speech now (bad inputs fail here), then return an iterator of the video's
        frames clip by clip (``(n, 3, H, W)`` float32 CPU in [0, 1]); ``callback`` gets a :class:`RenderProgress`
        after every denoising step. :meth:`render` and :meth:`__call__` consume it.

        ``prompt``: an emotive sentence, a timeline (``"0: calm. | 3.2: furious."``, an
        :class:`~emocast.pipelines.emotion.EmotionTimeline` or ``[(seconds, prompt), ...]``); ``emotion``: this
        render's ``audio_guidance``, ``emotion_guidance``, ``emotion_strength``, ``emotion_transition``,
        ``neutral_prompt`` (default: the pipeline's, from its config)."""
        unknown = sorted(set(emotion) - set(EMOTION_KEYS))
        if unknown:
            raise TypeError(f"unknown keyword argument(s) {', '.join(unknown)}; emotion controls: "
                            f"{', '.join(EMOTION_KEYS)}")
        timeline = as_timeline(prompt)  # a malformed timeline fails before any preprocessing
        if not any(p.strip() for p in timeline.prompts):
            log.warning("empty emotive prompt: the video is conditioned on the empty text")
        sampler, emo = self.for_render(**emotion)
        reference = self.prepare_image(source_image)
        audio = self.prepare_audio(driving_audio, progress=progress)
        timeline.check_duration(audio.num_frames / FPS, f"the driving audio {Path(str(driving_audio)).name}")
        return self._sample(reference, audio, timeline, self.seed if seed is None else seed, progress, callback,
                            what, sampler, emo)

    @torch.inference_mode()
    def _sample(self, reference, audio: PreparedAudio, prompt, seed: int, progress: bool, callback, what: str,
                sampler: ClipSampler | None = None, emotion: EmotionSettings | None = None):
        from ..preprocess.image import to_model_pixels

        sampler = sampler or self.sampler
        video = self.clip_conditioning(reference, prompt, sampler=sampler, emotion=emotion)
        ref_pixels = to_model_pixels(reference.pixels)[None]
        generator = make_generator(seed)
        clips, steps = sampler.num_clips(audio.num_frames), sampler.settings.steps
        step_callback = None if callback is None else (
            lambda clip, state: callback(RenderProgress(clip * steps + state.index + 1, clips * steps, clip, clips,
                                                        state)))
        done = 0
        try:
            for frames in sampler.frames(video, ref_pixels, audio.features, audio.num_frames, generator,
                                         progress=progress, callback=step_callback):
                self.check_finite(frames, what, done)
                done += len(frames)
                yield frames
        except torch.cuda.OutOfMemoryError:
            raise ConfigError(
                f"out of GPU memory while rendering {what} ({self.image_size}x{self.image_size}, "
                f"{self.settings.clip_length} frames per clip, {dtype_name(self.dtype)}). Fix: close other GPU "
                "programs, decode fewer frames at a time (vae_decode_batch=1), "
                + ("use --dtype fp16, " if self.dtype == torch.float32 else "")
                + "or run on the CPU (--device cpu)") from None

    def render(self, source_image, driving_audio, prompt, output, *, seed: int | None = None,
               progress: bool = True, callback: Callable[[RenderProgress], None] | None = None, **emotion) -> Path:
        """Render one video to ``output``, streamed clip by clip (H.264 25 fps + the original audio as AAC): memory
        does not grow with the video's length. Returns the path. ``prompt`` and ``emotion``: see :meth:`stream`."""
        frames = self.stream(source_image, driving_audio, prompt, seed=seed, progress=progress, callback=callback,
                             what=str(output), **emotion)
        with VideoWriter(output, fps=FPS, audio_path=driving_audio) as writer:
            for clip in frames:
                writer.write(clip)
        return Path(output)

    def __call__(self, source_image, driving_audio, prompt, *, seed: int | None = None, progress: bool = True,
                 callback: Callable[[RenderProgress], None] | None = None, **emotion) -> RenderedVideo:
        """Render one video in memory: ``pipe("me.png", "speech.wav", "A person is talking with happy emotion.")``
        returns a :class:`RenderedVideo` (``.frames`` (N, H, W, 3) uint8, ``.fps``, ``.audio``); ``.save("out.mp4")``
        writes it. ``callback(progress)`` is called after every denoising step (``progress.fraction``). For long
        videos prefer :meth:`render`, which streams to a file. ``prompt`` may be an emotion timeline and
        ``emotion`` holds this render's emotion controls (``audio_guidance=``, ``emotion_guidance=``,
        ``emotion_strength=``, ``emotion_transition=``, ``neutral_prompt=``): see :meth:`stream`."""
        from ..media.video_writer import frames_to_uint8, read_audio_track

        frames = [frames_to_uint8(clip) for clip in
                  self.stream(source_image, driving_audio, prompt, seed=seed, progress=progress, callback=callback,
                              **emotion)]
        wave, rate = read_audio_track(driving_audio)
        return RenderedVideo(np.concatenate(frames), FPS, wave, rate)

    def check_finite(self, frames: torch.Tensor, output, first: int) -> None:
        """Stop with one message when decoded frames hold NaN/inf (they would be written as black frames)."""
        finite = torch.isfinite(frames).flatten(1).all(1)
        if bool(finite.all()):
            return
        bad = [first + int(i) for i in torch.nonzero(~finite).flatten()]
        raise EmoCASTError(
            f"the model produced NaN/inf pixels (frame {bad[0]}" + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
            + f") while rendering {output}, so nothing was written. Fix: "
            + ("run in full precision (--dtype fp32; fp16 can overflow), " if self.dtype != torch.float32 else "")
            + "check the checkpoint (NaN weights: re-download it or use another --checkpoint), or lower --cfg_scale "
              "and the audio weights")

    def close(self) -> None:
        for part in (self.landmarker, self.separator):
            if part is not None and hasattr(part, "close"):
                part.close()


# ---------------------------------------------------------------------------------------------------- config glue
def preprocess_settings(cfg: InferenceConfig) -> PreprocessSettings:
    pre = cfg.preprocess
    return PreprocessSettings(separate_vocals=pre.separate_vocals, square_crop=pre.square_crop,
                              use_whole_image=pre.use_whole_image, face_expand_ratio=cfg.face_expand_ratio,
                              min_face_size=pre.min_face_size, min_face_fraction=pre.min_face_fraction)


EMOTION_KEYS = ("audio_guidance", "emotion_guidance", "emotion_strength", "emotion_transition", "neutral_prompt")


def emotion_settings(cfg: InferenceConfig) -> EmotionSettings:
    return EmotionSettings(strength=cfg.emotion_strength, neutral_prompt=cfg.neutral_prompt,
                           transition=cfg.emotion_transition)


def single_job(cfg: InferenceConfig) -> Job:
    """The job of a single-video run from the config (source_image, driving_audio, prompt_emo, output)."""
    missing = [k for k in ("source_image", "driving_audio") if not getattr(cfg, k)]
    if missing:
        raise InputError(f"no {' or '.join(missing)} given. Fix: pass --source_image PORTRAIT --driving_audio "
                         "SPEECH --prompt_emo \"...\" (or --manifest for many videos)")
    image, audio = Path(cfg.source_image), Path(cfg.driving_audio)  # checked by precheck_inputs (decoded)
    prompt = read_timeline(cfg.emotion_timeline) if cfg.emotion_timeline else (cfg.prompt_emo or "")
    return Job(image=image, audio=audio, prompt=prompt, output=Path(cfg.output) if cfg.output else None)


def precheck_inputs(jobs: Sequence[Job], progress: bool = False, fail_fast: bool = True) -> list[RowProblem]:
    """Decode every image and audio file before any model is loaded, so a bad file fails in seconds.

    ``fail_fast``: the first bad file raises its :class:`InputError` (prefixed with its manifest line in a
    batch); otherwise every row is checked and the bad ones are returned (the caller renders the others)."""
    from ..preprocess.audio import load_audio
    from ..preprocess.image import load_image

    problems = []
    for job in tqdm(jobs, desc="checking inputs", unit="row", disable=not progress or len(jobs) < 2, leave=False):
        try:
            load_image(job.image)
            wave, rate = load_audio(job.audio)
            as_timeline(job.prompt).check_duration(wave.shape[-1] / rate, f"the driving audio {job.audio.name}")
        except InputError as err:
            if not fail_fast:
                problems.append(RowProblem(job.row, str(err)))
                continue
            if len(jobs) > 1:
                raise InputError(f"manifest line {job.row}: {err}") from None
            raise
    return problems


def render_jobs(pipe: EmoCASTPipeline, jobs: Iterable[Job], outputs_dir, progress: bool = True,
                on_written: Callable[[Path], None] | None = None, *, skipped: Sequence[RowProblem] = (),
                fail_fast: bool = False) -> list[Path]:
    """Render every job with one loaded pipeline; returns the written paths (``on_written`` is called with
    each as soon as it is complete). Output names come from :func:`~emocast.pipelines.batch.output_paths`
    (colliding default names get ``_row<line>``).

    A single job's error propagates. In a batch, a row that fails (a bad input such as no face, or an
    unexpected error, whose traceback is logged) is reported and skipped, the other rows are rendered, and an
    :class:`InputError` listing the failed rows (with the rows ``skipped`` before rendering, e.g. those whose
    files did not decode) and the written videos is raised at the end (non-zero exit). ``fail_fast``: the first
    failing row ends the batch.
    """
    jobs = list(jobs)
    outputs = output_paths(jobs, outputs_dir)
    written, failed = [], list(skipped)
    stopped = False
    for job, out in tqdm(list(zip(jobs, outputs)), desc="videos", unit="video",
                         disable=not progress or len(jobs) < 2):
        try:
            written.append(pipe.render(job.image, job.audio, job.prompt, out, progress=progress, **dict(job.emotion)))
        except Exception as err:
            if len(jobs) == 1 and not skipped:
                raise
            if isinstance(err, EmoCASTError):
                reason = str(err)
                log.error("manifest line %d skipped: %s", job.row, reason)
            else:  # a bug or a resource problem (e.g. out of memory): keep the traceback, go on with the rest
                reason = f"{type(err).__name__}: {err}"
                log.exception("manifest line %d failed", job.row)
            failed.append(RowProblem(job.row, reason, f"{job.image.name}, {job.audio.name}"))
            if fail_fast:
                stopped = True
                break
            continue
        log.info("wrote %s", out)
        if on_written is not None:
            on_written(out)
    if failed:
        raise failed_rows_error(failed, written, len(jobs) + len(skipped), stopped)
    return written
