"""Source videos for data preparation: listing them and a 25 fps frame stream at any source rate.

Frames are streamed (never the whole video in memory). Resampling to 25 fps picks, for output frame ``k`` at
time ``k / 25``, the source frame whose presentation time is nearest (what ffmpeg's ``fps`` filter does), so
variable-frame-rate sources stay in sync with their audio.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError, UnreadableMedia
from ..media.video import timed_frames


def frames_25fps(path: str | os.PathLike, fps: int = 25) -> Iterator[np.ndarray]:
    """RGB uint8 frames of ``path`` resampled to ``fps`` (nearest presentation time), from the first frame's time.

    The number of output frames is ``round(span * fps)`` where ``span`` runs from the first frame to the end of
    the last one (its time plus one source frame interval)."""
    it = timed_frames(path)
    try:
        t0, prev = next(it)
    except StopIteration:
        raise UnreadableMedia(path, "contains no decodable video frames", "check the file or remove it") from None
    prev_t = 0.0
    k = 0
    step = None
    for t, frame in it:
        t -= t0
        step = t - prev_t if t > prev_t else step
        # emit ``prev`` for every output time nearer to prev_t than to t
        mid = (prev_t + t) / 2
        while k / fps < mid - 1e-9:
            yield prev
            k += 1
        prev, prev_t = frame, t
    end = prev_t + (step if step else 1.0 / fps)
    total = int(round(end * fps))
    while k < total:
        yield prev
        k += 1


def list_videos(root: str | os.PathLike, extensions=(".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv")) -> list[Path]:
    """Video files below ``root`` (recursively), sorted, hidden folders skipped."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"input folder {root} does not exist; pass the folder that holds your videos")
    exts = {e.lower() for e in extensions}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in filenames if Path(f).suffix.lower() in exts and not f.startswith("."))
    return sorted(out)
