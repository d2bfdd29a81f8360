"""``EmoCASTPipeline``: every component loaded from ``pretrained_models`` (through the registry), one call per
video: portrait + speech + emotive prompt -> MP4.

::

    pipe = EmoCASTPipeline.from_pretrained("pretrained_models")           # CUDA+fp16 if present, else CPU+fp32
    pipe.render("me.png", "hello.wav", "A person is talking with happy emotion.", "outputs/me_hello.mp4")

Loading checks **every** needed component first (one download report for all that are missing), then loads:
the EmoCAST networks (``net.pth``, architecture from ``stable-diffusion-v1-5/unet/config.json``), the VAE, the
CLIP text encoder, wav2vec2, the insightface pack, the mediapipe landmarker and (unless disabled) the vocal
separator. A render then preprocesses the image (spec §7, :func:`emocast.preprocess.reference.prepare_reference`)
and the audio (spec §6), samples clip by clip (:class:`~emocast.pipelines.sampler.ClipSampler`) and streams
the frames into the H.264/AAC writer with the original audio.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from .. import registry
from ..errors import CheckpointError, ConfigError, EmoCASTError, InputError
from ..media.video_writer import VideoWriter
from ..preprocess.audio import FPS  # features, audio windows and the output video all run at 25 fps (spec §6)
from ..runtime import dtype_name, select_device, select_dtype
from .batch import Job, output_paths
from .sampler import ClipSampler, SamplerSettings
from .scheduler import make_generator

log = logging.getLogger("emocast.inference")

SEPARATOR = "audio_separator"
CHECKPOINT_FILE = "net.pth"
PAIRINGS = ("release", "matched")


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
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Fix: pass --checkpoint with the EmoCAST net.pth "
                              "(or the folder holding it), or leave it out to use "
                              f"{registry.COMPONENTS['emocast'].path(models_root) / CHECKPOINT_FILE}")
    return path


def checkpoint_pairing(checkpoint: Path) -> str:
    """The reference pairing a checkpoint was trained with (spec §5.3).

    Our trainer writes ``net.json`` beside the exported ``net.pth`` (``"reference_pairing": "matched"``); the
    released ``net.pth`` has no such file and was trained with the release pairing.
    """
    sidecar = Path(checkpoint).with_suffix(".json")
    if not sidecar.is_file():
        return "release"
    try:
        pairing = json.loads(sidecar.read_text()).get("reference_pairing", "release")
    except (OSError, json.JSONDecodeError, AttributeError) as err:
        raise CheckpointError(f"cannot read {sidecar} ({err}). Fix: re-export the checkpoint "
                              "(scripts/export_checkpoint.py) or delete the file to use the release pairing") from None
    if pairing not in PAIRINGS:
        raise CheckpointError(f"{sidecar}: reference_pairing must be one of {', '.join(PAIRINGS)}, got {pairing!r}")
    return pairing


def read_unet_config(models_root=None) -> dict:
    """``stable-diffusion-v1-5/unet/config.json`` (the UNet layout; its ``sample_size`` sets the resolution)."""
    path = registry.component_dir("stable-diffusion-v1-5-config", models_root) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {path} ({err}). Fix: re-download it: "
                          f"{registry.fix_command('stable-diffusion-v1-5-config', models_root)}") from None


def load_networks(checkpoint: Path, device=None, dtype=None):
    """EmoCASTNet from ``checkpoint`` (strict; the architecture is read from the checkpoint's shapes, so the
    released net.pth and smaller research/test nets load alike). Any failure is a :class:`CheckpointError`."""
    from ..models import loading

    try:
        net = loading.load_net(checkpoint, dtype=dtype, device=device)
    except EmoCASTError:
        raise
    except Exception as err:  # anything else from a file that is not ours
        raise CheckpointError(f"{checkpoint} is not an EmoCAST net.pth ({type(err).__name__}: {err}). Fix: "
                              f"use the released checkpoint ({registry.COMPONENTS['emocast'].source}) or one "
                              "exported by our training scripts") from None
    return net.eval()


def load_vae(models_root=None, device=None, dtype=None):
    from diffusers import AutoencoderKL

    folder = registry.component_dir("sd-vae-ft-mse", models_root)
    vae = AutoencoderKL.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
    return vae.to(device).eval()


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


class EmoCASTPipeline:
    """All models of one EmoCAST render, loaded once; :meth:`render` is one video."""

    def __init__(self, net, vae, text_encoder, audio_encoder, face_analyzer, landmarker, separator=None, *,
                 settings: SamplerSettings | None = None, preprocess: PreprocessSettings | None = None,
                 image_size: int = 512, seed: int = 42):
        self.net, self.vae = net, vae
        self.text_encoder, self.audio_encoder = text_encoder, audio_encoder
        self.face_analyzer, self.landmarker, self.separator = face_analyzer, landmarker, separator
        self.sampler = ClipSampler(net, vae, settings or SamplerSettings())
        self.preprocess = preprocess or PreprocessSettings(separate_vocals=separator is not None)
        if image_size % 64:
            raise ConfigError(f"data.size must be a multiple of 64, got {image_size}")
        self.image_size = int(image_size)
        self.seed = int(seed)

    @property
    def settings(self) -> SamplerSettings:
        return self.sampler.settings

    @property
    def device(self) -> torch.device:
        return self.net.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.dtype

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, models_root=None, checkpoint=None, *, device=None, dtype=None,
                        settings: SamplerSettings | None = None, preprocess: PreprocessSettings | None = None,
                        image_size: int | None = None, seed: int = 42, progress: bool = True) -> "EmoCASTPipeline":
        """Check every needed component (one report), then load them all on ``device`` in ``dtype``."""
        from ..preprocess.audio import Wav2VecFeatures
        from ..preprocess.face import FaceAnalyzer
        from ..preprocess.landmarks import Landmarker
        from ..preprocess.text import TextEncoder

        preprocess = preprocess or PreprocessSettings()
        device = select_device(device)
        dtype = select_dtype(dtype, device)
        own = checkpoint is not None and str(checkpoint) != ""
        registry.require(needed_components(preprocess.separate_vocals, own), models_root)
        ckpt = resolve_checkpoint(checkpoint, models_root)
        settings = settings or SamplerSettings()
        if settings.reference_pairing == "auto":
            settings = replace(settings, reference_pairing=checkpoint_pairing(ckpt))
        steps = ["networks", "vae", "text encoder", "wav2vec2", "face models"] + \
            (["vocal separator"] if preprocess.separate_vocals else [])
        bar = tqdm(total=len(steps), desc="loading models", unit="model", disable=not progress, leave=False)

        def done(name):
            bar.set_postfix_str(name)
            bar.update()

        unet_config = read_unet_config(models_root)
        try:
            net = load_networks(ckpt, device, dtype)
            done("networks")
            vae = load_vae(models_root, device, dtype)
            done("vae")
            text = TextEncoder(models_root, device, dtype)
            done("text encoder")
            audio = Wav2VecFeatures(models_root, device)  # fp32, like the release
            done("wav2vec2")
            faces = FaceAnalyzer(models_root, device)
            landmarker = Landmarker(models_root)
            done("face models")
            separator = None
            if preprocess.separate_vocals:
                from ..preprocess.separator import VocalSeparator

                separator = VocalSeparator(models_root, device)
                done("vocal separator")
        finally:
            bar.close()
        if image_size is None:
            image_size = image_size_for(unet_config.get("sample_size", 64), vae)
        return cls(net, vae, text, audio, faces, landmarker, separator, settings=settings, preprocess=preprocess,
                   image_size=image_size, seed=seed)

    @classmethod
    def from_config(cls, cfg, progress: bool = True) -> "EmoCASTPipeline":
        """From an inference config (``configs/inference/default.yaml`` merged with the CLI)."""
        size = cfg.data.get("size", "auto")
        return cls.from_pretrained(
            cfg.get("models_root"), cfg.get("checkpoint"), device=cfg.get("device"), dtype=cfg.get("dtype"),
            settings=sampler_settings(cfg), preprocess=preprocess_settings(cfg),
            image_size=None if size in (None, "auto") else int(size), seed=int(cfg.get("seed", 42)),
            progress=progress)

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
        feats = self.audio_encoder.extract(speech, clip_length=self.settings.clip_length, progress=progress)
        return PreparedAudio(features=feats.features, num_frames=int(feats.num_frames))

    def conditioning(self, reference, prompt: str):
        """Per-video conditioning (text/face tokens, masks, FaceLocator feature) for the sampler."""
        from ..preprocess.masks import level_masks, level_sizes

        sides = level_sizes(self.image_size, self.net.config.num_levels)
        masks = [[torch.from_numpy(m) for m in level_masks(mask, sides)]
                 for mask in (reference.masks.full, reference.masks.face, reference.masks.lip)]
        text = self.text_encoder.encode([prompt])
        uncond = self.text_encoder.uncond() if self.settings.guidance else None
        return self.sampler.prepare_video(
            text_emb=text, uncond_text_emb=uncond, face_emb=torch.from_numpy(reference.face_emb)[None],
            face_region=torch.from_numpy(reference.face_region)[None], full_masks=masks[0], face_masks=masks[1],
            lip_masks=masks[2])

    # ------------------------------------------------------------------------------------------------ render
    def render(self, source_image, driving_audio, prompt: str, output, *, seed: int | None = None,
               progress: bool = True) -> Path:
        """Render one video to ``output`` (H.264 25 fps + the original audio as AAC); returns the path."""
        from ..preprocess.image import to_model_pixels

        if not str(prompt or "").strip():
            log.warning("empty emotive prompt: the video is conditioned on the empty text")
        reference = self.prepare_image(source_image)
        audio = self.prepare_audio(driving_audio, progress=progress)
        with torch.inference_mode():
            video = self.conditioning(reference, prompt or "")
            ref_pixels = to_model_pixels(reference.pixels)[None]
            generator = make_generator(self.seed if seed is None else seed)
            try:
                with VideoWriter(output, fps=FPS, audio_path=driving_audio) as writer:
                    for frames in self.sampler.frames(video, ref_pixels, audio.features, audio.num_frames,
                                                      generator, progress=progress):
                        writer.write(frames)
            except torch.cuda.OutOfMemoryError:
                raise ConfigError(
                    f"out of GPU memory while rendering {output} ({self.image_size}x{self.image_size}, "
                    f"{self.settings.clip_length} frames per clip, {dtype_name(self.dtype)}). Fix: close other GPU "
                    "programs, decode fewer frames at a time (vae_decode_batch=1), "
                    + ("use --dtype fp16, " if self.dtype == torch.float32 else "")
                    + "or run on the CPU (--device cpu)") from None
        return Path(output)

    __call__ = render

    def close(self) -> None:
        for part in (self.landmarker, self.separator):
            if part is not None and hasattr(part, "close"):
                part.close()


# ---------------------------------------------------------------------------------------------------- config glue
def sampler_settings(cfg) -> SamplerSettings:
    pairing = str(cfg.get("reference_pairing", "auto"))
    if pairing not in ("auto", *PAIRINGS):
        raise ConfigError(f"reference_pairing must be auto, release or matched, got {pairing!r}")
    return SamplerSettings(
        steps=int(cfg.get("inference_steps", 40)), cfg_scale=float(cfg.get("cfg_scale", 3.5)),
        clip_length=int(cfg.data.get("n_sample_frames", 16)), motion_frames=int(cfg.data.get("n_motion_frames", 2)),
        motion_scale=(float(cfg.get("pose_weight", 1.0)), float(cfg.get("face_weight", 1.0)),
                      float(cfg.get("lip_weight", 1.0))),
        vae_decode_batch=int(cfg.get("vae_decode_batch", 8)), reference_pairing=pairing)


def preprocess_settings(cfg) -> PreprocessSettings:
    pre = cfg.get("preprocess") or {}
    return PreprocessSettings(
        separate_vocals=bool(pre.get("separate_vocals", True)), square_crop=bool(pre.get("square_crop", True)),
        use_whole_image=bool(pre.get("use_whole_image", False)),
        face_expand_ratio=float(cfg.get("face_expand_ratio", 1.2)),
        min_face_size=float(pre.get("min_face_size", 32.0)), min_face_fraction=float(pre.get("min_face_fraction", 0.05)))


def single_job(cfg) -> Job:
    """The job of a single-video run from the config (source_image, driving_audio, prompt_emo, output)."""
    missing = [k for k in ("source_image", "driving_audio") if not cfg.get(k)]
    if missing:
        raise InputError(f"no {' or '.join(missing)} given. Fix: pass --source_image PORTRAIT --driving_audio "
                         "SPEECH --prompt_emo \"...\" (or --manifest for many videos)")
    image, audio = Path(cfg.source_image), Path(cfg.driving_audio)
    if not image.is_file():
        raise InputError(f"source image not found: {image}. Fix: check the path (--source_image).")
    if not audio.is_file():
        raise InputError(f"driving audio not found: {audio}. Fix: check the path (--driving_audio).")
    out = cfg.get("output")
    return Job(image=image, audio=audio, prompt=str(cfg.get("prompt_emo") or ""), output=Path(out) if out else None)


def precheck_inputs(jobs: Sequence[Job], progress: bool = False) -> None:
    """Decode every image and audio file before any model is loaded, so a bad file fails in seconds."""
    from ..preprocess.audio import load_audio
    from ..preprocess.image import load_image

    for job in tqdm(jobs, desc="checking inputs", unit="row", disable=not progress or len(jobs) < 2, leave=False):
        try:
            load_image(job.image)
            load_audio(job.audio)
        except InputError as err:
            if len(jobs) > 1:
                raise InputError(f"manifest line {job.row}: {err}") from None
            raise


def render_jobs(pipe: EmoCASTPipeline, jobs: Iterable[Job], outputs_dir, progress: bool = True,
                on_written: Callable[[Path], None] | None = None) -> list[Path]:
    """Render every job with one loaded pipeline; returns the written paths (``on_written`` is called with
    each as soon as it is complete). Output names come from :func:`~emocast.pipelines.batch.output_paths`
    (colliding default names get ``_row<line>``).

    A single job's error propagates. In a batch, a row that fails (a bad input such as no face, or an
    unexpected error, whose traceback is logged) is reported and skipped, the other rows are rendered, and an
    :class:`InputError` listing the failed rows and the written videos is raised at the end (non-zero exit).
    """
    jobs = list(jobs)
    outputs = output_paths(jobs, outputs_dir)
    written, failed = [], []
    for job, out in tqdm(list(zip(jobs, outputs)), desc="videos", unit="video",
                         disable=not progress or len(jobs) < 2):
        try:
            written.append(pipe.render(job.image, job.audio, job.prompt, out, progress=progress))
        except Exception as err:
            if len(jobs) == 1:
                raise
            if isinstance(err, EmoCASTError):
                reason = str(err)
                log.error("manifest line %d skipped: %s", job.row, reason)
            else:  # a bug or a resource problem (e.g. out of memory): keep the traceback, go on with the rest
                reason = f"{type(err).__name__}: {err}"
                log.exception("manifest line %d failed", job.row)
            failed.append(f"line {job.row} ({job.image.name}, {job.audio.name}): {reason}")
            continue
        log.info("wrote %s", out)
        if on_written is not None:
            on_written(out)
    if failed:
        raise InputError(f"{len(failed)} of {len(jobs)} manifest rows failed ({len(written)} videos written"
                         + (": " + ", ".join(map(str, written)) if written else "") + "):\n  "
                         + "\n  ".join(failed))
    return written
