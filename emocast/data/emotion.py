"""Emotion labels for unlabelled training videos: the pluggable video-emotion classifier interface.

The label vocabulary (MEAD's eight emotions, intensity levels 1..3) is :mod:`emocast.labels.emotions`'s.

For videos without labels a :class:`FrameEmotionClassifier` gives per-frame class probabilities;
:func:`aggregate` turns them into one label, an intensity level and a confidence for the video.
The paper uses Emotion-FAN fine-tuned on MEAD (weights are the user's, see ``docs/data.md``);
:func:`load_classifier` accepts ``"emotion_fan"`` (the scoring package's model, registry component
``emotion_fan``) or ``"package.module:ClassName"`` for any user class with the same interface.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ConfigError
from ..labels.emotions import EMOTIONS, NEUTRAL, normalize_emotion


@dataclass(frozen=True)
class EmotionLabel:
    emotion: str
    intensity: int
    confidence: float  # mean probability of ``emotion`` over the frames
    probs: dict[str, float]  # mean probability per class


@runtime_checkable
class FrameEmotionClassifier(Protocol):
    """What a video-emotion classifier provides to data preparation.

    ``classes``: the class names of the output columns (any spelling :func:`normalize_emotion` knows).
    ``predict_frames(frames)``: RGB uint8 face crops ``(K, H, W, 3)`` -> probabilities ``(K, len(classes))``.
    """

    classes: Sequence[str]

    def predict_frames(self, frames: np.ndarray) -> np.ndarray: ...


def aggregate(probs: np.ndarray, classes: Sequence[str], thresholds: Sequence[float] = (0.55, 0.75)) -> EmotionLabel:
    """Per-frame probabilities ``(K, C)`` -> one video label.

    The label is the class with the highest mean probability. Its intensity comes from that mean probability
    ``s``: 1 if ``s < thresholds[0]``, 2 if ``s < thresholds[1]``, else 3 (neutral: always 1). Rows that are
    not normalised are normalised; classes outside the MEAD eight are ignored.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(classes) or p.shape[0] == 0:
        raise ValueError(f"expected probabilities (K>0, {len(classes)}), got {p.shape}")
    if not (len(thresholds) == 2 and 0 <= thresholds[0] <= thresholds[1] <= 1):
        raise ConfigError(f"intensity thresholds must be two increasing values in [0, 1], got {list(thresholds)}")
    names = [normalize_emotion(c) for c in classes]
    p = np.clip(p, 0, None)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    mean = p.mean(axis=0)
    scores = {e: 0.0 for e in EMOTIONS}
    for n, v in zip(names, mean):
        scores[n] += float(v)
    label = max(EMOTIONS, key=lambda e: scores[e])
    s = scores[label]
    level = 1 if label == NEUTRAL or s < thresholds[0] else (2 if s < thresholds[1] else 3)
    return EmotionLabel(label, level, s, scores)


def sample_frames(num_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices (the classifier does not need every frame)."""
    if num_frames <= 0:
        return []
    count = max(1, min(count, num_frames))
    return [int(round(x)) for x in np.linspace(0, num_frames - 1, count)]


def classify_video(classifier: FrameEmotionClassifier, frames: np.ndarray,
                   thresholds: Sequence[float] = (0.55, 0.75)) -> EmotionLabel:
    """Run ``classifier`` on face-crop frames ``(K, H, W, 3)`` and aggregate (see :func:`aggregate`)."""
    probs = np.asarray(classifier.predict_frames(frames))
    return aggregate(probs, classifier.classes, thresholds)


def load_classifier(spec: str, models_root=None, device: str = "cpu") -> FrameEmotionClassifier:
    """Build a classifier from a spec.

    - ``"emotion_fan"``: the scoring package's Emotion-FAN (``emocast.scoring.emotion_fan``), with the
      user's MEAD-finetuned weights from the registry component ``emotion_fan``.
    - ``"package.module:Name"``: ``Name(models_root=..., device=...)`` (or ``Name()``) from an importable module;
      it must have ``classes`` and ``predict_frames`` (:class:`FrameEmotionClassifier`).
    """
    if spec == "emotion_fan":
        try:
            from ..scoring.emotion_fan import EmotionFAN
        except ImportError as err:
            raise ConfigError(f"emotion classifier 'emotion_fan' needs emocast.scoring.emotion_fan ({err})") from None
        return EmotionFAN(models_root=models_root, device=device)  # registry check inside (component emotion_fan)
    if ":" not in spec:
        raise ConfigError(f"emotion classifier {spec!r}: use 'emotion_fan' or 'package.module:ClassName'")
    mod_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"emotion classifier {spec!r} cannot be imported ({err}); check the module path") from None
    try:
        clf = factory(models_root=models_root, device=device)
    except TypeError:
        clf = factory()
    if not isinstance(clf, FrameEmotionClassifier):
        raise ConfigError(f"emotion classifier {spec!r} must have `classes` and `predict_frames(frames)`")
    return clf
