"""The emotion label vocabulary: MEAD's eight emotions and intensity levels, and their spellings.

Labels are MEAD's eight emotions. Intensity is MEAD's level 1 (weak) .. 3 (strong); neutral is always 1.
"""
from __future__ import annotations

from ..errors import InputError

#: MEAD's emotions, in MEAD's alphabetical folder order (the order of Emotion-FAN's MEAD head)
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
NEUTRAL = "neutral"
INTENSITIES = (1, 2, 3)

_ALIASES = {
    "anger": "angry", "angry": "angry", "ang": "angry",
    "contempt": "contempt", "contemptuous": "contempt", "con": "contempt",
    "disgust": "disgusted", "disgusted": "disgusted", "dis": "disgusted",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear", "fea": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "hap": "happy",
    "neutral": "neutral", "calm": "neutral", "neu": "neutral",
    "sad": "sad", "sadness": "sad",
    "surprised": "surprised", "surprise": "surprised", "sur": "surprised",
}


def normalize_emotion(name: str | None) -> str | None:
    """Map a label (``"Anger"``, ``"surprise"``, ``"happy"``...) to one of :data:`EMOTIONS`; None stays None."""
    if name is None:
        return None
    key = str(name).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise InputError(f"unknown emotion label {name!r}; use one of {', '.join(EMOTIONS)}")


def normalize_intensity(level, emotion: str | None = None) -> int | None:
    """An intensity 1..3 (``"level_2"``, ``2``, ``"2"``); neutral is always 1."""
    if emotion == NEUTRAL:
        return 1
    if level is None:
        return None
    s = str(level).strip().lower().replace("level_", "").replace("level", "")
    try:
        v = int(s)
    except ValueError:
        raise InputError(f"intensity {level!r} is not 1, 2 or 3") from None
    if v not in INTENSITIES:
        raise InputError(f"intensity {level!r} is not 1, 2 or 3")
    return v
