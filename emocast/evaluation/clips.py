"""A video as the metrics see it: frames (RGB uint8 at 25 fps) and audio track (16 kHz mono int16).

Decoding is :mod:`emocast.media`'s; this module places the streams in time.

Both streams are put on the file's timeline the way the reference pipelines' ffmpeg commands do it
(syncnet_python ``run_pipeline.py``: ``ffmpeg -i in -async 1 -r 25 video.avi``, then
``ffmpeg -i video.avi -ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav``):

- **frames**: ffmpeg's constant-frame-rate conversion to 25 fps (:func:`cfr_indices`): output frames are counted
  from the file's start time; a source frame is dropped when it falls more than 0.6 output frames behind the
  output clock and repeated when it is more than 1.1 ahead. For 25 fps sources starting at the file start this is
  the identity;
- **audio**: ``-async 1`` corrects the start only: an audio track that starts after the file's start time gets
  that much silence in front (a track starting before it is trimmed); no later correction.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..media.audio import decode_audio
from ..media.video import probe, timed_frames

FPS = 25
SAMPLE_RATE = 16000
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB at 25 fps
    audio: np.ndarray | None  # (S,) int16 at 16 kHz, None when the file has no audio track


def list_files(folder, extensions, what: str) -> list[Path]:
    """The files of ``folder`` (not recursive) with one of ``extensions``, sorted; InputError when none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what} folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise InputError(f"no {what} files ({', '.join(extensions)}) in {folder}")
    return files


def list_videos(folder) -> list[Path]:
    return list_files(folder, VIDEO_EXTENSIONS, "video")


def cfr_indices(times, rate: float | None, fps: int = FPS) -> np.ndarray:
    """Source frame shown by each output frame of ffmpeg's ``-r fps`` conversion.

    ``times``: presentation times (s) of the decoded frames relative to the file's start time; ``rate``: the
    stream's frame rate. ffmpeg's video sync keeps an output clock ``n`` (frames written so far) and, per source
    frame at ``x = t * fps`` output frames, with ``delta = x - n + d`` (``d`` = 1, or ``fps / rate`` when that
    rounds to 0, i.e. sources of 50 fps and more): writes it 0 times when ``delta < -0.6``, ``rint(delta)``
    times when ``delta > 1.1``, else once. This reproduces ffmpeg 5.1's ``-r 25`` output frame for frame on
    15, 23.976, 24, 29.97, 30, 50 and 60 fps sources (checked against ffmpeg's output); a stream that starts after
    the file start gets its first frame repeated in front, as ffmpeg does.
    """
    step = fps / float(rate) if rate else 1.0
    dur = 1.0 if np.rint(step) > 0 else step
    out, clock = [], 0
    for j, t in enumerate(np.asarray(times, dtype=np.float64)):
        delta = t * fps - clock + dur
        n = 0 if delta < -0.6 else int(np.rint(delta)) if delta > 1.1 else 1
        out.extend([j] * n)
        clock += n
    return np.asarray(out, dtype=np.int64)


def read_video(path, with_audio: bool = True) -> Clip:
    """Decode ``path``: frames converted to 25 fps like ``ffmpeg -r 25`` (:func:`cfr_indices`), audio as
    :func:`read_audio`."""
    path = Path(path)
    rate = probe(path).fps
    times, frames = [], []
    for t, frame in timed_frames(path):
        times.append(t)
        frames.append(frame)
    if not frames:
        raise InputError(f"{path} has no video frames")
    idx = cfr_indices(np.asarray(times), rate)
    if len(idx) == 0:
        raise InputError(f"{path} has no video frames at {FPS} fps")
    audio = read_audio(path) if with_audio else None
    return Clip(np.stack([frames[i] for i in idx]), audio)


def read_audio(path) -> np.ndarray | None:
    """The first audio track of ``path`` as 16 kHz mono int16 (None when there is none), aligned to the file's
    start time like ``ffmpeg -async 1``: silence in front when the track starts later, trimmed when earlier."""
    decoded = decode_audio(path, rate=SAMPLE_RATE, layout="mono", sample_format="s16", align_to_file_start=True)
    return None if decoded is None else decoded[0][0]
