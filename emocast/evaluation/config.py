"""The evaluation config (``scripts/evaluate.py``): one typed schema whose defaults are the paper's protocol.

Load with :func:`emocast.config.load` (``-c`` YAML, flags, ``key=value`` overrides): unknown keys, wrong types and
impossible values fail with one message naming the key. ``python scripts/evaluate.py --print_config`` shows every
key with its value; ``docs/config-reference.md`` lists them with their meaning.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import option, section
from ..errors import ConfigError

METRICS = ("acc_emo", "lse", "fid")
CROP_MODES = Literal["detect", "full"]
#: the protocols of each metric (the first is the default: EAT's, which the paper's Table 2 follows)
PROTOCOLS = {"acc_emo": ("eat", "blazeface"), "lse": ("eat", "syncnet_python"), "fid": ("eat", "pytorch_fid")}


def protocol_values(names: str) -> dict[str, str]:
    """``--protocol`` (comma-separated) -> config values: ``eat`` sets every metric's protocol to EAT's;
    ``syncnet_python`` / ``blazeface`` / ``pytorch_fid`` set the one metric they belong to."""
    out: dict[str, str] = {}
    for name in (n.strip().lower() for n in names.split(",") if n.strip()):
        if name == "eat":
            out.update({f"{m}.protocol": "eat" for m in PROTOCOLS})
            continue
        owner = [m for m, ps in PROTOCOLS.items() if name in ps[1:]]
        if not owner:
            choices = ["eat"] + [p for ps in PROTOCOLS.values() for p in ps[1:]]
            raise ConfigError(f"--protocol {name!r} is not one of {', '.join(choices)}")
        out[f"{owner[0]}.protocol"] = name
    return out


def parse_metrics(value) -> list[str]:
    """``"acc_emo,lse"`` or a list -> the metric names in :data:`METRICS` (``lse_d``/``lse_c``/``sync`` = ``lse``)."""
    items = str(value).split(",") if isinstance(value, str) else list(value)
    items = [str(m).strip().lower().replace("-", "_") for m in items if str(m).strip()]
    items = ["lse" if m in ("lse_d", "lse_c", "sync") else m for m in items]
    bad = [m for m in items if m not in METRICS]
    if bad or not items:
        raise ConfigError(f"metrics: unknown metric(s) {', '.join(bad) or '(none)'}; choose from "
                          f"{', '.join(METRICS)}")
    return list(dict.fromkeys(items))


@dataclass
class CropSection:
    syncnet: CROP_MODES = option("detect", "detect: face box per frame (mediapipe's bundled BlazeFace) + "
                                           "syncnet_python's crop; full: the frame squeezed to 224x224 (face-crop "
                                           "videos)")
    emotion: CROP_MODES = option("detect", "detect: a square of 1.5x the face box, 224x224 (approximates dlib's "
                                           "chip); full: the centred square")
    min_face_share: float = option(0.9, "least share of a video's frames with a detected face for it to be scored "
                                        "(below: failed in the CSV and counted, never scored)", ge=0, le=1)


@dataclass
class AccEmoSection:
    protocol: Literal["eat", "blazeface"] = option(
        "eat", "eat: every frame as JPEG, Emotion-FAN's dlib chip (HOG -> CNN -> equalised CNN cascade), frames "
               "without a face dropped; blazeface: the crop.emotion box on decoded frames")
    max_frames: int = option(0, "blazeface protocol: 0 = every frame; N > 0: N evenly spaced frames", ge=0)


@dataclass
class LSESection:
    protocol: Literal["eat", "syncnet_python"] = option(
        "eat", "eat: ffmpeg -r 25, PC-AVS crop from 68 landmarks, ground-truth audio muxed in, MJPEG frames via "
               "ffmpeg; syncnet_python: the crop.syncnet crop on decoded frames")
    vshift: int = option(15, "offset search range in frames (+-), as Wav2Lip / syncnet_python", ge=1)
    batch_size: int = option(20, "SyncNet windows per forward pass", ge=1)


@dataclass
class FIDSection:
    protocol: Literal["eat", "pytorch_fid"] = option(
        "eat", "eat: torchvision's ImageNet Inception-v3 on 128x128 dlib crops (BGR), each video paired with its "
               "ground truth by name; pytorch_fid: pytorch-fid's Inception on the frames, folders pooled")
    sampling: Literal["per_video", "every_k", "all"] = option(
        "per_video", "pytorch_fid protocol: per_video: frames_per_video evenly spaced frames; every_k; all")
    frames_per_video: int = option(5, "frames per video (eat: per generated/ground-truth pair, EAT's 5)", ge=1)
    every_k: int = option(25, "frame step with sampling=every_k", ge=1)
    resize: int = option(0, "pytorch_fid protocol: 0 = frames as they are (Inception resizes to 299 bilinear); "
                            "N: centre square resized to N first", ge=0)
    batch_size: int = option(16, "frames per Inception forward pass", ge=1)
    method: Literal["auto", "sqrtm", "gram"] = option(
        "auto", "sqrtm (pytorch-fid's computation) | gram (exact, fast when frames < 2048) | auto")


@dataclass
class EvalConfig:
    """``scripts/evaluate.py``: the paper's metrics over a folder of generated videos."""

    method: str = option("EmoCAST", "the row name in table.md / metrics.json")
    models_root: str | None = option(None, "the pretrained_models folder holding eval/ (null: $EMOCAST_MODELS, "
                                           "else ./pretrained_models)")
    device: str = option("auto", "auto (cuda when available, else cpu) | cpu | cuda | cuda:N")
    metrics: list[str] = option(factory=lambda: list(METRICS), help="any of acc_emo, lse, fid")
    crop: CropSection = section(CropSection, "face crops of the syncnet_python / blazeface protocols")
    acc_emo: AccEmoSection = section(AccEmoSection, "Acc_emo (Emotion-FAN)")
    lse: LSESection = section(LSESection, "LSE-D / LSE-C (SyncNet)")
    fid: FIDSection = section(FIDSection, "FID (Inception-v3)")

    def check(self) -> None:
        self.metrics = parse_metrics(self.metrics)
