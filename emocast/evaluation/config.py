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


@dataclass
class AccEmoSection:
    max_frames: int = option(0, "0: every frame of the video (EAT's protocol); N > 0: N evenly spaced frames", ge=0)


@dataclass
class LSESection:
    vshift: int = option(15, "offset search range in frames (+-), as Wav2Lip / syncnet_python", ge=1)
    batch_size: int = option(20, "SyncNet windows per forward pass", ge=1)


@dataclass
class FIDSection:
    sampling: Literal["per_video", "every_k", "all"] = option(
        "per_video", "per_video: frames_per_video evenly spaced frames (EAT); every_k; all")
    frames_per_video: int = option(5, "frames per video with sampling=per_video", ge=1)
    every_k: int = option(25, "frame step with sampling=every_k", ge=1)
    resize: int = option(0, "0: frames as they are (Inception resizes to 299 bilinear); N: centre square resized "
                            "to N first", ge=0)
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
    crop: CropSection = section(CropSection, "face crops of the metric networks")
    acc_emo: AccEmoSection = section(AccEmoSection, "Acc_emo (Emotion-FAN)")
    lse: LSESection = section(LSESection, "LSE-D / LSE-C (SyncNet)")
    fid: FIDSection = section(FIDSection, "FID (Inception-v3)")

    def check(self) -> None:
        self.metrics = parse_metrics(self.metrics)
