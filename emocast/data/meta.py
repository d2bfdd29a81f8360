"""Building stage-1 / stage-2 meta files from a prepared dataset root, with filters.

A video enters a meta file only if its sample folder has every artifact the stage reads
(:data:`STAGE_FILES`), a valid ``info.json``, enough frames, audio features whose length matches the frames
(stage 2), and passes the optional emotion and lip-sync filters (:class:`MetaFilter`). Every rejection is
returned with its reason, so the script can report them. Nothing is loaded beyond file headers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from ..config import option
from ..errors import ConfigError, InputError
from ..labels.emotions import normalize_emotion
from . import layout

#: artifacts each training stage reads (info.json included)
STAGE_FILES = {
    "stage1": (layout.FRAMES, layout.FACE_REGION, layout.FACE_EMB, layout.INFO),
    "stage2": layout.REQUIRED_FILES,
}


@dataclass
class MetaFilter:
    """Filters of one stage (a section of :class:`emocast.data.config.MetaConfig`); null disables a threshold."""

    min_frames: int = option(1, "videos with fewer frames are left out", ge=1)
    max_av_mismatch: int = option(3, "stage 2: |audio_emb rows - num_frames| allowed", ge=0)
    emotions: list[str] | None = option(None, "keep only these labels, e.g. [neutral, happy] (null: all)")
    require_emotion: bool = option(False, "leave out videos without an emotion label")
    require_prompts: bool = option(False, "leave out videos without prompts")
    min_sync_confidence: float | None = option(None, "SyncNet confidence (LSE-C) must be at least this, e.g. 3.0")
    max_sync_dist: float | None = option(None, "SyncNet min distance (LSE-D) must be at most this, e.g. 9.0")
    max_sync_offset: int | None = option(None, "|SyncNet offset| must be at most this many frames, e.g. 3", ge=0)
    missing_sync: Literal["keep", "drop"] = option(
        "keep", "videos without SyncNet scores when a sync threshold is set (data_preprocess.py sync.enabled=true "
                "scores them)")

    def check(self) -> None:
        if self.emotions is not None:
            try:
                self.emotions = [normalize_emotion(e) for e in self.emotions]
            except InputError as err:
                raise ConfigError(f"emotions: {err}") from None

    @property
    def uses_sync(self) -> bool:
        return any(v is not None for v in (self.min_sync_confidence, self.max_sync_dist, self.max_sync_offset))


@dataclass
class Stage2MetaFilter(MetaFilter):
    min_frames: int = option(25, "videos with fewer frames are left out (a stage-2 clip needs its frames, motion "
                                 "frames and audio margins)", ge=1)


def _audio_rows(folder: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(folder / layout.AUDIO_EMB), framework="pt") as f:
        return int(f.get_slice("features").get_shape()[0])


def check_sample(root, video_id: str, stage: str, filt: MetaFilter) -> tuple[dict | None, str | None]:
    """``(meta entry, None)`` when the video passes, else ``(None, reason)``."""
    folder = layout.sample_dir(root, video_id)
    missing = layout.missing_files(folder, STAGE_FILES[stage])
    if missing:
        return None, f"missing artifacts: {', '.join(missing)}"
    try:
        rec = layout.read_info(folder)
    except InputError as err:
        return None, f"bad info.json: {err}"
    if rec.num_frames < filt.min_frames:
        return None, f"too short: {rec.num_frames} frames < min_frames {filt.min_frames}"
    if stage == "stage2":
        try:
            rows = _audio_rows(folder)
        except Exception as err:  # noqa: BLE001 - any unreadable header is a broken artifact
            return None, f"unreadable {layout.AUDIO_EMB}: {err}"
        if abs(rows - rec.num_frames) > filt.max_av_mismatch:
            return None, f"audio/video length mismatch: {rows} audio frames vs {rec.num_frames} video frames"
    if filt.require_emotion and rec.emotion is None:
        return None, "no emotion label"
    if filt.emotions is not None and rec.emotion not in filt.emotions:
        return None, f"emotion {rec.emotion} not selected"
    if filt.require_prompts and not rec.prompts:
        return None, "no prompts"
    if filt.uses_sync:
        s = rec.sync
        if not s:
            if filt.missing_sync == "drop":
                return None, "no SyncNet scores (run data_preprocess.py with sync.enabled=true)"
        else:
            if filt.min_sync_confidence is not None and s["confidence"] < filt.min_sync_confidence:
                return None, f"sync confidence {s['confidence']:.2f} < {filt.min_sync_confidence}"
            if filt.max_sync_dist is not None and s["min_dist"] > filt.max_sync_dist:
                return None, f"sync distance {s['min_dist']:.2f} > {filt.max_sync_dist}"
            if filt.max_sync_offset is not None and abs(s["offset"]) > filt.max_sync_offset:
                return None, f"sync offset {s['offset']} beyond +-{filt.max_sync_offset}"
    return layout.meta_entry(rec), None


@dataclass
class MetaResult:
    entries: list[dict] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # video id -> reason
    held_out: list[str] = field(default_factory=list)  # video ids of held-out (test) identities


def collect(root: str | os.PathLike, stage: str, filt: MetaFilter, video_ids: Sequence[str] | None = None,
            holdout: Sequence[str] = ()) -> MetaResult:
    """Check every finished sample under ``root`` (or ``video_ids``) for ``stage``; videos of the ``holdout``
    identities (case-insensitive) are left out and listed in ``held_out``."""
    if stage not in STAGE_FILES:
        raise ConfigError(f"stage must be one of {sorted(STAGE_FILES)}, got {stage!r}")
    if not layout.samples_dir(root).is_dir():
        raise InputError(f"{root} is not a prepared dataset (no {layout.SAMPLES}/ folder); run "
                         f"scripts/data_preprocess.py first or pass the right --root")
    out = MetaResult()
    held = {h.upper() for h in holdout}
    for vid in (video_ids if video_ids is not None else layout.list_samples(root)):
        entry, reason = check_sample(root, vid, stage, filt)
        if entry is not None and str(entry.get("identity") or "").upper() in held:
            out.held_out.append(vid)
        elif entry is None:
            out.rejected[vid] = reason
        else:
            out.entries.append(entry)
    return out


def write_stage_meta(root, stage: str, filt: MetaFilter, path, holdout: Sequence[str] = ()) -> MetaResult:
    """Collect and write one meta file; returns what was kept, rejected and held out."""
    res = collect(root, stage, filt, holdout=holdout)
    layout.write_meta(path, stage, root, res.entries)
    return res
