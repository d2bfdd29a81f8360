"""MEAD file naming: identity, camera view, emotion, intensity level and clip number from a path.

Two patterns are recognised:

- the released folder tree: ``M003/video/front/angry/level_1/001.mp4`` and ``M003/audio/angry/level_1/001.m4a``
  (identities ``M###``/``W###``; views ``front``, ``down``, ``top``, ``left_30``, ``left_60``, ``right_30``,
  ``right_60``);
- flattened names used by many preprocessed copies: ``M003_front_angry_level_1_001.mp4`` (the view is optional,
  ``M003_angry_level_1_001.mp4``; ``__`` separators from our own video ids work too).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .emotions import normalize_emotion, normalize_intensity

VIEWS = ("front", "down", "top", "left_30", "left_60", "right_30", "right_60")
#: the four MEAD test subjects of EAT (``code/preprocess.py`` keeps only these) and EDTalk: the paper's MEAD test set
TEST_IDENTITIES = ("M003", "M030", "W009", "W015")
_EMO = r"(?P<emo>angry|contempt|disgusted|fear|happy|neutral|sad|surprised)"
_VIEW = "|".join(VIEWS)
_TREE = re.compile(
    r"(?:^|/)(?P<id>[MW]\d{3})/(?:(?P<kind>video)/(?P<view>" + _VIEW + r")|(?P<akind>audio))/" + _EMO
    + r"/level_(?P<level>[1-3])/(?P<clip>\d{3})\.[A-Za-z0-9]+$", re.IGNORECASE)
_FLAT = re.compile(
    r"(?:^|[/_])(?P<id>[MW]\d{3})_+(?:(?P<view>" + _VIEW + r")_+)?" + _EMO
    + r"_+level_(?P<level>[1-3])_+(?P<clip>\d{3})(?:\.[A-Za-z0-9]+)?$", re.IGNORECASE)


@dataclass(frozen=True)
class MeadName:
    identity: str  # "M003"
    emotion: str  # one of emocast.labels.emotions.EMOTIONS
    intensity: int  # 1..3
    clip: str  # "001"
    view: str | None  # "front"...; None for audio files and flattened names without a view
    kind: str  # "video" | "audio" | "flat"


def parse_mead(path: str | os.PathLike) -> MeadName | None:
    """Parse a MEAD path or file name; None when it does not follow MEAD's naming."""
    s = Path(path).as_posix()
    m = _TREE.search(s)
    if m:
        kind = "video" if m.group("kind") else "audio"
    else:
        m = _FLAT.search(s)
        kind = "flat"
    if not m:
        return None
    emo = normalize_emotion(m.group("emo"))
    view = m.group("view")
    return MeadName(identity=m.group("id").upper(), emotion=emo,
                    intensity=normalize_intensity(m.group("level"), emo), clip=m.group("clip"),
                    view=view.lower() if view else None, kind=kind)


def mead_audio_for(video_path: str | os.PathLike) -> Path | None:
    """The separate audio file of a MEAD video in the released tree (``.../M003/audio/<emo>/level_<n>/<clip>.m4a``),
    if it exists; None otherwise."""
    p = Path(video_path)
    info = parse_mead(p)
    if info is None or info.kind != "video":
        return None
    # .../<id>/video/<view>/<emo>/level_<n>/<clip>.mp4 -> parents[4] is <id>
    ident_dir = p.parents[4]
    level_dir = p.parent.name
    for ext in (".m4a", ".wav", ".mp3", ".aac"):
        cand = ident_dir / "audio" / p.parent.parent.name / level_dir / f"{p.stem}{ext}"
        if cand.is_file():
            return cand
    return None
