"""Reading source videos for data preparation: probing and a 25 fps frame stream at any source rate.

Frames are streamed (never the whole video in memory). Resampling to 25 fps picks, for output frame ``k`` at
time ``k / 25``, the source frame whose presentation time is nearest (what ffmpeg's ``fps`` filter does), so
variable-frame-rate sources stay in sync with their audio.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError


class UnreadableVideo(InputError):
    """The file cannot be opened or decoded as a video."""


@dataclass(frozen=True)
class VideoProbe:
    width: int
    height: int
    fps: float  # average source frame rate
    duration: float  # seconds (video stream)
    has_audio: bool


def probe(path: str | os.PathLike) -> VideoProbe:
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise UnreadableVideo(f"{path} has no video stream")
            vs = c.streams.video[0]
            fps = float(vs.average_rate or vs.guessed_rate or 0) or 25.0
            if vs.duration is not None and vs.time_base is not None:
                duration = float(vs.duration * vs.time_base)
            elif c.duration is not None:
                duration = c.duration / 1_000_000
            else:
                duration = 0.0
            return VideoProbe(vs.codec_context.width, vs.codec_context.height, fps, duration, bool(c.streams.audio))
    except UnreadableVideo:
        raise
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise UnreadableVideo(f"{path} cannot be opened as a video ({err}); check the file or remove it") from None


def _timed_frames(path: str | os.PathLike) -> Iterator[tuple[float, np.ndarray]]:
    import av

    try:
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            vs.thread_type = "AUTO"
            last_t = None
            fps = float(vs.average_rate or 25)
            for i, frame in enumerate(c.decode(vs)):
                t = frame.time
                if t is None:
                    t = i / fps if last_t is None else last_t + 1 / fps
                last_t = t
                yield float(t), frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as err:
        raise UnreadableVideo(f"{path}: decoding failed ({err}); the file is corrupt or truncated") from None


def frames_25fps(path: str | os.PathLike, fps: int = 25) -> Iterator[np.ndarray]:
    """RGB uint8 frames of ``path`` resampled to ``fps`` (nearest presentation time), from the first frame's time.

    The number of output frames is ``round(span * fps)`` where ``span`` runs from the first frame to the end of
    the last one (its time plus one source frame interval)."""
    it = _timed_frames(path)
    try:
        t0, prev = next(it)
    except StopIteration:
        raise UnreadableVideo(f"{path} contains no decodable video frames") from None
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
