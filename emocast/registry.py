"""The one list of every pretrained component EmoCAST uses, where it comes from and how to check it.

``pretrained_models/`` follows the official EmoCAST layout, plus ``clip-vit-large-patch14/`` (the official code
downloads it at run time; we keep it local like everything else) and ``eval/`` (metric models).

Every loader in the package calls :func:`require` before touching a file, so a missing model always ends
in the same report: which component, which files, where it comes from and the command that fetches it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .errors import MissingModelError

DEFAULT_ROOT = Path("pretrained_models")
ENV_ROOT = "EMOCAST_MODELS"  # overrides the default root


@dataclass(frozen=True)
class Component:
    """One pretrained component: a folder below the models root and the files it must contain."""

    name: str
    folder: str  # relative to the models root
    files: tuple[str, ...]  # relative to ``folder``; each must exist and be non-empty
    source: str  # human-readable origin (hub repo or URL)
    size: str  # approximate download size
    purpose: str
    hub_repo: str | None = None  # Hugging Face repo id to download from
    hub_files: dict[str, str] = field(default_factory=dict)  # our relative path -> path inside the hub repo
    urls: dict[str, str] = field(default_factory=dict)  # our relative path -> direct URL
    optional: bool = False  # used when present (e.g. a better landmarker); never required
    group: str = "inference"  # "inference" | "train" | "eval"
    manual: str | None = None  # set when no automatic download exists: how to obtain it

    def path(self, root: str | os.PathLike | None = None) -> Path:
        return models_root(root) / self.folder

    def file_paths(self, root=None) -> list[Path]:
        base = self.path(root)
        return [base / f for f in self.files]


HALLO = "fudan-generative-ai/hallo"  # mirrors the official layout for everything Hallo and EmoCAST share

_W2V = ("config.json", "feature_extractor_config.json", "model.safetensors", "preprocessor_config.json",
        "special_tokens_map.json", "tokenizer_config.json", "vocab.json")
_FACE = ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx", "glintr100.onnx", "scrfd_10g_bnkps.onnx")

COMPONENTS: dict[str, Component] = {c.name: c for c in [
    Component(
        "emocast", "emocast", ("net.pth",),
        source="https://huggingface.co/Jmaomao/EmoCAST", size="5.0 GB",
        purpose="EmoCAST networks (reference UNet, denoising UNet, face locator, image/audio projections)",
        hub_repo="Jmaomao/EmoCAST", hub_files={"net.pth": "net.pth"}),
    Component(
        "stable-diffusion-v1-5-config", "stable-diffusion-v1-5/unet", ("config.json",),
        source="https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5 (unet/config.json)", size="1 KB",
        purpose="SD-1.5 UNet config (image size / architecture); inference needs no SD weights, net.pth holds them",
        hub_repo="stable-diffusion-v1-5/stable-diffusion-v1-5", hub_files={"config.json": "unet/config.json"}),
    Component(
        "stable-diffusion-v1-5", "stable-diffusion-v1-5/unet", ("config.json", "diffusion_pytorch_model.safetensors"),
        source="https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5 (unet/)", size="3.4 GB",
        purpose="SD-1.5 UNet weights (training initialisation only)",
        hub_repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
        hub_files={"config.json": "unet/config.json",
                   "diffusion_pytorch_model.safetensors": "unet/diffusion_pytorch_model.safetensors"},
        group="train"),
    Component(
        "sd-vae-ft-mse", "sd-vae-ft-mse", ("config.json", "diffusion_pytorch_model.safetensors"),
        source="https://huggingface.co/stabilityai/sd-vae-ft-mse", size="335 MB",
        purpose="VAE: encodes the reference/motion frames, decodes the video",
        hub_repo="stabilityai/sd-vae-ft-mse",
        hub_files={f: f for f in ("config.json", "diffusion_pytorch_model.safetensors")}),
    Component(
        "clip-vit-large-patch14", "clip-vit-large-patch14",
        ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json",
         "special_tokens_map.json"),
        source="https://huggingface.co/openai/clip-vit-large-patch14", size="1.7 GB",
        purpose="CLIP ViT-L/14 text encoder + tokenizer for the emotive prompt",
        hub_repo="openai/clip-vit-large-patch14",
        hub_files={f: f for f in ("config.json", "model.safetensors", "vocab.json", "merges.txt",
                                  "tokenizer_config.json", "special_tokens_map.json")}),
    Component(
        "wav2vec", "wav2vec/wav2vec2-base-960h", _W2V,
        source="https://huggingface.co/facebook/wav2vec2-base-960h", size="380 MB",
        purpose="wav2vec2 speech features (12 layers, 25 fps)",
        hub_repo=HALLO, hub_files={f: f"wav2vec/wav2vec2-base-960h/{f}" for f in _W2V}),
    Component(
        "motion_module", "motion_module", ("mm_sd_v15_v2.ckpt",),
        source="https://huggingface.co/guoyww/animatediff (mm_sd_v15_v2.ckpt)", size="1.8 GB",
        purpose="AnimateDiff-v2 motion modules (training initialisation only; net.pth contains them)",
        hub_repo="guoyww/animatediff", hub_files={"mm_sd_v15_v2.ckpt": "mm_sd_v15_v2.ckpt"}, group="train"),
    Component(
        "face_analysis", "face_analysis/models", _FACE,
        source="insightface antelopev2 pack (https://huggingface.co/fudan-generative-ai/hallo, face_analysis/models/)",
        size="360 MB", purpose="insightface face detection (SCRFD) and identity embedding (ArcFace glintr100)",
        hub_repo=HALLO, hub_files={f: f"face_analysis/models/{f}" for f in _FACE}),
    Component(
        "face_landmarker", "face_analysis/models", ("face_landmarker_v2_with_blendshapes.task",),
        source="https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task",
        size="3.6 MB",
        purpose="mediapipe FaceLandmarker (478 landmarks); without it the face mesh bundled with mediapipe is used",
        hub_repo=HALLO,
        hub_files={"face_landmarker_v2_with_blendshapes.task": "face_analysis/models/face_landmarker_v2_with_blendshapes.task"},
        optional=True),
    Component(
        "audio_separator", "audio_separator",
        ("Kim_Vocal_2.onnx", "download_checks.json", "mdx_model_data.json", "vr_model_data.json"),
        source="https://huggingface.co/huangjackson/Kim_Vocal_2 (+ audio-separator metadata JSON)", size="67 MB",
        purpose="vocal separation (MDX-Net Kim_Vocal_2) before wav2vec2",
        hub_repo=HALLO, hub_files={f: f"audio_separator/{f}" for f in
                                   ("Kim_Vocal_2.onnx", "download_checks.json", "mdx_model_data.json",
                                    "vr_model_data.json")}),
    # ---- evaluation models (scripts/evaluate.py) -------------------------------------------------------------
    Component(
        "syncnet", "eval", ("syncnet_v2.model",),
        source="https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model (syncnet_python)",
        size="54 MB", purpose="SyncNet for LSE-D / LSE-C",
        urls={"syncnet_v2.model": "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"},
        group="eval"),
    Component(
        "inception_fid", "eval", ("pt_inception-2015-12-05-6726825d.pth",),
        source="https://github.com/mseitzer/pytorch-fid/releases (FID Inception weights)", size="92 MB",
        purpose="Inception-v3 features for FID (pytorch-fid weights)",
        urls={"pt_inception-2015-12-05-6726825d.pth":
              "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"},
        group="eval"),
    Component(
        "emotion_fan", "eval", ("emotion_fan_mead.pth",),
        source="Emotion-FAN fine-tuned on MEAD, as distributed with EAT's evaluation (https://github.com/yuangan/evaluation_eat)",
        size="45 MB", purpose="video emotion classifier for Acc_emo (8 MEAD classes)", group="eval",
        manual="download code.zip from the Google Drive link in the README of https://github.com/yuangan/evaluation_eat, "
               "take code/model_training_name/self_relation-attention_61_84.3655 from it and save it as "
               "pretrained_models/eval/emotion_fan_mead.pth"),
    # ---- EAT's evaluation protocol (scripts/evaluate.py --protocol eat, docs/evaluation.md) ----------------------
    Component(
        "inception_imagenet", "eval", ("inception_v3_google-0cc3c7bd.pth",),
        source="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth (torchvision's ImageNet "
               "Inception-v3)", size="104 MB", purpose="EAT's FID features (torchvision Inception-v3, transform_input)",
        urls={"inception_v3_google-0cc3c7bd.pth": "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"},
        group="eval"),
    Component(
        "face_alignment_fan", "eval/face_alignment", ("2DFAN4-11f355bf06.pth.tar",),
        source="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar (face-alignment 1.5's "
               "file; 1.4.1, which EAT's evaluation used, loaded the TorchScript export 2DFAN4-cd938726ad.zip)",
        size="96 MB", purpose="68 face landmarks for EAT's PC-AVS crop (LSE)",
        urls={"2DFAN4-11f355bf06.pth.tar": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"},
        group="eval"),
    Component(
        "face_alignment_s3fd", "eval/face_alignment", ("s3fd-619a316812.pth",),
        source="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth (face-alignment 1.4.1 and 1.5)",
        size="90 MB", purpose="S3FD face detector of face-alignment (PC-AVS crop)",
        urls={"s3fd-619a316812.pth": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"},
        group="eval"),
    Component(
        "dlib_shape_predictor_5", "eval/dlib", ("shape_predictor_5_face_landmarks.dat",),
        source="http://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2", size="9 MB",
        purpose="dlib 5-point landmarks for Emotion-FAN's face chips (Acc_emo, EAT protocol)", group="eval",
        manual="download http://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2, decompress it (bunzip2) "
               "and save it as pretrained_models/eval/dlib/shape_predictor_5_face_landmarks.dat"),
    Component(
        "dlib_cnn_face_detector", "eval/dlib", ("mmod_human_face_detector.dat",),
        source="http://dlib.net/files/mmod_human_face_detector.dat.bz2", size="1 MB",
        purpose="dlib CNN face detector: the fallbacks of Emotion-FAN's detector cascade (without it the cascade "
                "stops after the HOG detector and the report says so)", group="eval", optional=True,
        manual="download http://dlib.net/files/mmod_human_face_detector.dat.bz2, decompress it (bunzip2) and save "
               "it as pretrained_models/eval/dlib/mmod_human_face_detector.dat"),
    Component(
        "dlib_shape_predictor_68", "eval/dlib", ("shape_predictor_68_face_landmarks.dat",),
        source="http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2", size="100 MB",
        purpose="dlib 68-point landmarks for EAT's 128x128 FID crops", group="eval",
        manual="download http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2, decompress it (bunzip2) "
               "and save it as pretrained_models/eval/dlib/shape_predictor_68_face_landmarks.dat"),
    Component(
        "eat_face_templates", "eval/eat", ("base_68.npy", "base_68_close.npy"),
        source="EAT's evaluation repository (https://github.com/yuangan/evaluation_eat, code/base_68.npy and "
               "code/base_68_close.npy; the two files are identical there)", size="2 KB",
        purpose="landmark templates of EAT's 128x128 FID crops", group="eval",
        urls={f: f"https://raw.githubusercontent.com/yuangan/evaluation_eat/main/code/{f}"
              for f in ("base_68.npy", "base_68_close.npy")}),
]}


def models_root(root: str | os.PathLike | None = None) -> Path:
    """The models root: ``root`` if given, else ``$EMOCAST_MODELS``, else ``./pretrained_models``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(ENV_ROOT, DEFAULT_ROOT))


def status(name: str, root=None) -> tuple[str, list[str]]:
    """``("present" | "missing" | "incomplete", [missing or empty files])`` for one component."""
    comp = COMPONENTS[name]
    bad = [str(p) for p in comp.file_paths(root) if not p.is_file() or p.stat().st_size == 0]
    if not bad:
        return "present", []
    return ("missing" if len(bad) == len(comp.files) else "incomplete"), bad


def fix_command(name: str, root=None) -> str:
    comp = COMPONENTS[name]
    if comp.manual and not (comp.hub_repo or comp.urls):
        return comp.manual
    r = models_root(root)
    extra = "" if r == DEFAULT_ROOT else f" --root {r}"
    return f"python scripts/download_models.py --only {name}{extra}"


def report_line(name: str, root=None) -> str:
    """One line: state, name, folder, and for anything not present what is missing and the exact fix.

    The same line serves ``scripts/download_models.py --check`` and every loader's :class:`MissingModelError`.
    """
    comp = COMPONENTS[name]
    state, bad = status(name, root)
    label = f"{state}(optional)" if comp.optional and state != "present" else state
    line = f"{label:<20} {name:<30} {comp.path(root)}"
    if state == "present":
        return line
    what = ("needs " if state == "missing" else "missing ") + ", ".join(Path(b).name for b in bad)
    note = " - not needed; used when present" if comp.optional else ""
    return f"{line}  [{what}; {comp.size} from {comp.source}]{note}  fix: {fix_command(name, root)}"


def missing_report(names: Iterable[str], root=None) -> str:
    names = list(names)
    lines = [report_line(n, root) for n in names]
    return "missing pretrained models:\n" + "\n".join("  " + l for l in lines)


def require(names: str | Sequence[str], root=None) -> Path:
    """Raise :class:`MissingModelError` with the download report unless every named component is present.

    Returns the models root. Optional components are never required by this call unless named.
    """
    if isinstance(names, str):
        names = [names]
    missing = [n for n in names if status(n, root)[0] != "present"]
    if missing:
        raise MissingModelError(missing_report(missing, root), missing)
    return models_root(root)


def component_dir(name: str, root=None, check: bool = True) -> Path:
    """The folder of a component, checked with :func:`require` unless ``check=False``."""
    if check:
        require(name, root)
    return COMPONENTS[name].path(root)


def inference_components() -> list[str]:
    return [n for n, c in COMPONENTS.items() if c.group == "inference" and not c.optional]
