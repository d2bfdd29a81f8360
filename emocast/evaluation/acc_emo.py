"""Acc_emo: target emotion labels for generated videos and the accuracy of the classifier's video predictions.

Labels come from, in this order:

1. a labels CSV (``--labels``) with columns ``video,emotion`` (``video`` = file name or stem; extra columns such
   as ``image,audio,prompt`` are ignored; ``scripts/make_testset_manifest.py`` writes one);
2. the file name: MEAD names (``M003_angry_level_3_001.mp4``, the MEAD tree, see :mod:`emocast.labels.mead`), or a
   name with exactly one emotion token among its ``_``/``-``/``.``/space separated parts (``M003_ang_3_001``,
   ``portrait1_clip7_happy``; the short forms of EAT's naming are accepted).

A video is predicted as the class with the highest video-level probability; Acc_emo is the fraction of labelled
videos predicted correctly (videos without a label are reported but not counted).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..labels.emotions import EMOTIONS, normalize_emotion
from ..labels.mead import parse_mead

_SPLIT = re.compile(r"[_\-.\s]+")


def _emotion_token(token: str) -> str | None:
    try:
        return normalize_emotion(token)
    except InputError:
        return None


def label_from_name(path) -> str | None:
    """The emotion encoded in a video's name, or None when there is none or it is ambiguous."""
    info = parse_mead(path)
    if info is not None:
        return info.emotion
    found = {e for e in (_emotion_token(t) for t in _SPLIT.split(Path(path).stem.lower())) if e}
    return found.pop() if len(found) == 1 else None


def read_labels_csv(path) -> dict[str, str]:
    """``{video stem: emotion}`` from a CSV with a header containing ``video`` and ``emotion``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file not found: {path}; pass a CSV with the columns video,emotion")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "video" not in fields or "emotion" not in fields:
            raise InputError(f"{path}: the header must name the columns video and emotion (got {', '.join(fields)})")
        out = {}
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            if not row.get("video"):
                continue
            try:
                out[Path(row["video"]).stem] = normalize_emotion(row["emotion"])
            except InputError as err:
                raise InputError(f"{path}, line {line}: {err}") from None
    return out


def target_label(video, labels: Mapping[str, str] | None = None) -> str | None:
    stem = Path(video).stem
    if labels and stem in labels:
        return labels[stem]
    return label_from_name(video)


def predicted_label(probs: np.ndarray, classes: Sequence[str]) -> str:
    """The class with the highest probability, in our label names."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if p.shape[0] != len(classes):
        raise ValueError(f"{p.shape[0]} probabilities for {len(classes)} classes")
    return normalize_emotion(classes[int(np.argmax(p))])


def accuracy(predicted: Sequence[str | None], target: Sequence[str | None]) -> dict:
    """``{"acc_emo", "num_labelled", "per_class": {emotion: acc or None}}`` over the videos that have both."""
    pairs = [(p, t) for p, t in zip(predicted, target) if p is not None and t is not None]
    per_class = {}
    for e in EMOTIONS:
        sel = [p == t for p, t in pairs if t == e]
        per_class[e] = (sum(sel) / len(sel)) if sel else None
    acc = (sum(p == t for p, t in pairs) / len(pairs)) if pairs else None
    return {"acc_emo": acc, "num_labelled": len(pairs), "per_class": per_class}
