"""The data configs: one typed schema per data script, whose field defaults are the only defaults.

* :class:`DataPrepConfig` — ``scripts/data_preprocess.py`` (sections ``prep``, ``emotion``, ``prompts``, ``sync``);
* :class:`MetaConfig` — ``scripts/extract_meta_info.py`` (one :class:`~emocast.data.meta.MetaFilter` per stage).

Load with :func:`emocast.config.load` (``-c`` YAML, flags, ``key=value`` overrides): unknown keys, wrong types and
impossible values fail with one message naming the key. ``--print_config`` shows every key with its value;
``docs/config-reference.md`` lists them with their meaning.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import option, section
from ..errors import ConfigError, InputError
from ..labels.emotions import normalize_emotion, normalize_intensity
from ..labels.mead import TEST_IDENTITIES
from .meta import MetaFilter, Stage2MetaFilter

MODELS_ROOT_HELP = "the pretrained_models folder (null: $EMOCAST_MODELS, else ./pretrained_models)"


@dataclass
class PrepSection:
    size: int = option(512, "frames.mp4 is size x size (face crop) at 25 fps; a multiple of 8", ge=32)
    crop_scale: float = option(1.7, "square crop side = crop_scale x the longer side of the union of all per-frame "
                                    "face boxes (1 = the union box itself)", ge=1)
    min_frames: int = option(25, "shorter clips (after 25 fps resampling and audio/video trimming) are rejected",
                             ge=1)
    max_av_mismatch: int = option(3, "frames; |video frames - audio frames| above this rejects the clip (Hallo's "
                                     "rule)", ge=0)
    max_no_face_ratio: float = option(0.1, "fraction of frames allowed without a detected face", ge=0, le=1)
    max_multi_face_ratio: float = option(0.1, "fraction of frames allowed with several faces", ge=0, le=1)
    second_face_ratio: float = option(0.25, "a second face counts only if its box is at least this fraction of the "
                                            "main face's area", ge=0, le=1)
    vocals: bool = option(False, "separate the vocals (audio_separator), write vocals.wav and run wav2vec2 on them")
    identity_from: Literal["auto", "parent", "video"] = option(
        "auto", "MEAD names give the identity; else auto/parent: the video's folder, video: the file")
    wav2vec_chunk_frames: int = option(1500, "longer audio is encoded in chunks of this many frames (bounded "
                                             "memory)", ge=1)
    device: str = option("auto", "auto | cpu | cuda | cuda:N")

    def check(self) -> None:
        if self.size % 8:
            raise ConfigError(f"prep.size must be a multiple of 8, got {self.size}")


@dataclass
class EmotionSection:
    classifier: str | None = option(None, "null | emotion_fan | package.module:ClassName (labels unlabelled videos)")
    frames: int = option(16, "frames per video given to the classifier (evenly spaced)", ge=1)
    thresholds: list[float] = option(factory=lambda: [0.55, 0.75],
                                     help="mean label probability -> intensity 1 (< first), 2 (< second), 3")
    default: str | None = option(None, "label for videos with no dataset label and no classifier (e.g. neutral "
                                       "for HDTF)")
    default_intensity: int | None = option(None, "intensity of `default` (null: 1 for neutral, else unknown)",
                                           ge=1, le=3)

    def check(self) -> None:
        if len(self.thresholds) != 2 or not 0 <= self.thresholds[0] <= self.thresholds[1] <= 1:
            raise ConfigError(f"emotion.thresholds must be two increasing numbers in [0, 1], got {self.thresholds}")
        try:
            self.default = normalize_emotion(self.default)
        except InputError as err:
            raise ConfigError(f"emotion.default: {err}") from None
        self.default_intensity = normalize_intensity(self.default_intensity, self.default)


@dataclass
class PromptsSection:
    per_video: int = option(3, "emotive descriptions stored per video (info.json 'prompts')", ge=1)
    seed: int = option(0, "template sampling seed (combined with the video id: reproducible per video)")
    llm_command: str | None = option(None, "e.g. \"my_llm --emotion {emotion} --intensity {intensity} --n {n}\" "
                                           "(prints one description per line; run without a shell)")
    llm_endpoint: str | None = option(None, "OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    llm_model: str = option("gpt-4o-mini", "model name sent to llm_endpoint")
    llm_api_key_env: str | None = option("OPENAI_API_KEY", "environment variable holding the endpoint's API key")
    llm_fallback: bool = option(True, "on an LLM failure use the template bank instead of failing the video")


@dataclass
class SyncSection:
    enabled: bool = option(False, "SyncNet offset / confidence / distance per video (needs the 'syncnet' weights)")
    max_frames: int = option(750, "frames scored per video (750 = 30 s)", ge=6)
    batch_size: int = option(20, "SyncNet windows per forward pass", ge=1)


@dataclass
class DataPrepConfig:
    """``scripts/data_preprocess.py``: a folder of talking videos -> a prepared training set."""

    models_root: str | None = option(None, MODELS_ROOT_HELP)
    prep: PrepSection = section(PrepSection, "framing, rejection rules, audio")
    emotion: EmotionSection = section(EmotionSection, "emotion labels of videos without a dataset label")
    prompts: PromptsSection = section(PromptsSection, "emotive text descriptions")
    sync: SyncSection = section(SyncSection, "SyncNet scores per video")


@dataclass
class MetaConfig:
    """``scripts/extract_meta_info.py``: the stage-1 / stage-2 meta files of a prepared dataset."""

    holdout: list[str] = option(factory=lambda: list(TEST_IDENTITIES),
                                help="identities never written to a meta file: the test subjects (default: the four "
                                     "MEAD test subjects of the paper's Table 2); [] keeps everyone")
    stage1: MetaFilter = section(MetaFilter, "filters of the stage-1 (image) meta file")
    stage2: Stage2MetaFilter = section(Stage2MetaFilter, "filters of the stage-2 (video) meta file")
