"""The one video decoder (PyAV): probing, frames with their presentation times, frames by index.

- :func:`probe`: size, average frame rate, duration, whether there is an audio track.
- :func:`timed_frames`: the RGB uint8 frames of the first video stream, streamed, each with its presentation time
  in seconds on the file's timeline (the file's start time subtracted, as ffmpeg does). The frame-rate
  conversions built on it belong to their callers (data preparation's nearest-time 25 fps stream,
  the evaluation's ffmpeg ``-r 25`` rule).
- :func:`read_frames`: all frames, or those at given indices of a constant-rate file, seeking to the keyframe
  before each wanted frame instead of decoding from the start; :func:`count_frames`.

A file that cannot be opened or decoded raises :class:`~emocast.errors.UnreadableMedia` naming it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..errors import UnreadableMedia
from .container import decode_errors, open_container


@dataclass(frozen=True)
class VideoProbe:
    width: int
    height: int
    fps: float  # average source frame rate (25 when the file does not say)
    duration: float  # seconds (video stream; 0 when unknown)
    has_audio: bool
    frames: int  # the container's frame count; 0 when the header does not say


def _open(path):
    container = open_container(path)
    if not container.streams.video:
        container.close()
        raise UnreadableMedia(path, "has no video stream", "pass a video file")
    return container


def probe(path: str | os.PathLike) -> VideoProbe:
    with _open(path) as c:
        vs = c.streams.video[0]
        fps = float(vs.average_rate or vs.guessed_rate or 0) or 25.0
        if vs.duration is not None and vs.time_base is not None:
            duration = float(vs.duration * vs.time_base)
        elif c.duration is not None:
            duration = c.duration / 1_000_000
        else:
            duration = 0.0
        return VideoProbe(vs.codec_context.width, vs.codec_context.height, fps, duration, bool(c.streams.audio),
                          int(vs.frames or 0))


def timed_frames(path: str | os.PathLike) -> Iterator[tuple[float, np.ndarray]]:
    """``(time, RGB uint8 (H, W, 3))`` for every frame of the first video stream, in decoding order.

    ``time`` is the frame's presentation time minus the file's start time (minus the first frame's time when the
    file has none); a frame without a timestamp is placed one average frame interval after the previous one."""
    container = _open(path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        fps = float(vs.average_rate or 25)
        start = None if container.start_time is None else container.start_time / 1_000_000  # AV_TIME_BASE
        last = None
        for frame in container.decode(vs):
            t = frame.time
            if t is None:
                t = 0.0 if last is None else last + 1 / fps
            elif start is not None:
                t -= start
            if last is None and start is None:
                start = t  # no file start time: count from the first frame
                t = 0.0
            last = float(t)
            yield last, frame.to_ndarray(format="rgb24")
    except decode_errors() as err:
        raise UnreadableMedia.from_error(path, err, decoding=True) from None
    finally:
        container.close()


def count_frames(path: str | os.PathLike) -> int:
    """Frames of the first video stream (the container's count; decoded and counted when the header lacks it)."""
    with _open(path) as c:
        n = int(c.streams.video[0].frames or 0)
        try:
            return n if n > 0 else sum(1 for _ in c.decode(video=0))
        except decode_errors() as err:
            raise UnreadableMedia.from_error(path, err, decoding=True) from None


def read_frames(path: str | os.PathLike, indices: Sequence[int] | None = None,
                keyframe_interval: int = 250) -> np.ndarray:
    """RGB uint8 frames ``(K, H, W, 3)``: all of them, or those at ``indices`` (in the order given; repeats
    allowed; IndexError for indices past the end). Frame index = ``round((time - start) * fps)``, so ``indices``
    suit constant-rate files; when a wanted frame lies more than two ``keyframe_interval`` ahead of (or behind)
    the decoder, it seeks back to the keyframe before it."""
    with _open(path) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            if indices is None:
                out = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
                return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)
            wanted = [int(i) for i in indices]
            got = _decode_indices(c, stream, sorted(set(wanted)), keyframe_interval)
        except decode_errors() as err:
            raise UnreadableMedia.from_error(path, err, decoding=True) from None
    bad = sorted({i for i in wanted if i not in got})
    if bad:
        raise IndexError(f"{path}: frame indices {bad[:5]} out of range")
    return np.stack([got[i] for i in wanted]) if wanted else np.zeros((0, 0, 0, 3), np.uint8)


def _decode_indices(container, stream, targets: list[int], keyframe_interval: int) -> dict[int, np.ndarray]:
    """Decode the frames with the given sorted indices, seeking backwards to a keyframe when a target is far
    ahead of (or behind) the decoder."""
    fps = float(stream.average_rate or 25)
    tb = stream.time_base
    start = float((stream.start_time or 0) * tb)
    got: dict[int, np.ndarray] = {}
    frames = None
    pos = None  # index of the last decoded frame
    for target in targets:
        if target < 0:
            continue
        if frames is None or pos is None or target <= pos or target - pos > 2 * keyframe_interval:
            container.seek(int(round((start + target / fps) / tb)), stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
            pos = None
        for frame in frames:
            pos = int(round((float(frame.pts * tb) - start) * fps))
            if pos == target:
                got[target] = frame.to_ndarray(format="rgb24")
            if pos >= target:
                break
    return got
