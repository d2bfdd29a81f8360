"""Reading a video's frames (RGB uint8, resampled to 25 fps) and its audio track (16 kHz mono int16) with PyAV."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

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


def _resample_indices(times: np.ndarray, fps: int = FPS) -> np.ndarray:
    """Indices of the source frames shown at ``0, 1/fps, 2/fps, ...`` (the last frame at or before each time)."""
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    t0 = times[0]
    duration = times[-1] - t0 + (np.median(np.diff(times)) if len(times) > 1 else 1.0 / fps)
    targets = t0 + np.arange(int(round(duration * fps))) / fps
    return np.clip(np.searchsorted(times, targets + 1e-6, side="right") - 1, 0, len(times) - 1)


def read_video(path, with_audio: bool = True) -> Clip:
    """Decode ``path``; frames at other rates are resampled to 25 fps (nearest earlier frame)."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream")
            vs = container.streams.video[0]
            frames, times = [], []
            for frame in container.decode(vs):
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(float(frame.time) if frame.time is not None else len(times) / FPS)
        audio = read_audio(path) if with_audio else None
    except av.error.FFmpegError as err:
        raise InputError(f"cannot decode {path}: {err}") from None
    if not frames:
        raise InputError(f"{path} has no video frames")
    times = np.asarray(times)
    rate = vs.average_rate
    if rate is not None and abs(float(rate) - FPS) > 0.01 and len(frames) > 1:
        frames = [frames[i] for i in _resample_indices(times)]
    return Clip(np.stack(frames), audio)


def read_audio(path) -> np.ndarray | None:
    """The first audio track of ``path`` as 16 kHz mono int16 (None when there is none)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)
