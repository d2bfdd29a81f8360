"""The one video writer: H.264 (yuv420p, deterministic) plus optional AAC audio, streamed (PyAV).

Every H.264 file of the package is written here: rendered videos (inference, training validation), the
``frames.mp4`` of prepared samples (:func:`emocast.data.layout.write_frames`) and the synthetic test videos
(:mod:`emocast.testing`). Frames are encoded as they arrive and the audio is interleaved in step with the video,
so memory does not grow with the length of the video.

The audio comes from a file (``audio_path``: the driving audio, decoded as it is needed) or from memory
(``audio_array`` at ``audio_rate``). By default it is cut (or padded with silence) to the duration of the
video: a rendered video has ``ceil(audio_seconds * fps)`` frames, so at most one frame of silence is added.
With ``fit_audio=False`` the whole audio is written as it is (test videos whose tracks differ in length).

The same frames always give the same file: the RGB -> yuv420p conversion is ours (:func:`rgb_to_yuv420p`) and
x264's macroblock-tree rate control is off (see :meth:`VideoWriter._open_video`).

The file is written under a hidden temporary name that is unique to the process and the call
(:func:`partial_path`) and moved into place with one atomic rename when it is complete: two writers of the same
output never share a file (the later one to finish wins, with a complete video), and an interrupted one leaves
nothing under the final name. A temporary file whose process no longer runs (killed with SIGKILL) is removed by
the next writer of that output (:func:`remove_stale_partials`). A write that fails because the disk is full or
the folder is read-only or protected raises :class:`~emocast.errors.OutputError` naming the output.
"""
from __future__ import annotations

import contextlib
import glob
import os
import socket
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError, OutputError
from .audio import AudioStream

AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def frames_to_uint8(frames) -> np.ndarray:
    """Frames as ``(N, H, W, 3)`` uint8. Accepts that, or float ``(N, 3, H, W)`` in [0, 1] (tensor or array).

    Float frames are scaled by 255 and truncated, as the release writes its [0, 1] video tensor.
    """
    try:
        import torch

        if isinstance(frames, torch.Tensor):
            frames = frames.detach().to("cpu", torch.float32).numpy() if frames.dtype != torch.uint8 \
                else frames.cpu().numpy()
    except ImportError:  # pragma: no cover - torch is always installed
        pass
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 or (N, 3, H, W) float, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.shape[1] == 3 and arr.shape[-1] != 3:
            arr = arr.transpose(0, 2, 3, 1)
        arr = np.clip(arr * 255.0, 0, 255).astype(np.uint8)
    if arr.shape[-1] != 3:
        raise ValueError(f"frames must have 3 colour channels last, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


PARTIAL = ".partial"


def partial_path(path: Path) -> Path:
    """The temporary name ``path`` is written under: ``.<name>.<pid>.<random>.<host>.partial`` (hidden, unique per
    process and call, and naming its owner so that a later run can tell when it is stale)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.{socket.gethostname()}{PARTIAL}")


def _process_alive(pid: int) -> bool:
    if os.name != "posix":  # no safe liveness probe (os.kill(pid, 0) is not one on Windows): keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to another user
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete the temporary files of ``path`` (:func:`partial_path`) whose process, on this machine, no longer
    runs (a kill -9, a crash, a power cut); files of running processes and of other machines are left alone."""
    prefix, host = f".{path.name}.", socket.gethostname()
    removed = []
    for p in path.parent.glob(glob.escape(prefix) + "*" + PARTIAL):
        owner = p.name[len(prefix):-len(PARTIAL)].split(".", 2)
        if len(owner) == 3 and owner[0].isdigit() and owner[2] == host and not _process_alive(int(owner[0])):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB (even H, W) -> planar yuv420p ``(H * 3 // 2, W)`` uint8, BT.601 limited range.

    Done here rather than by FFmpeg's swscale, whose first conversion in a process can differ from later ones
    (lazily initialised SIMD paths), which made the same frames encode differently: with this, the same frames
    always give the same file.
    """
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    h, w = rgb.shape[:2]
    sub = x.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))  # 2x2 box average before the chroma matrix
    r, g, b = sub[..., 0], sub[..., 1], sub[..., 2]
    u = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, u, v)]
    return np.concatenate([p.ravel() for p in planes]).reshape(h * 3 // 2, w)


def aac_format(source: AudioStream) -> tuple[int, str]:
    """The ``(rate, layout)`` an audio stream is muxed with: its rate when AAC has it (else 48 kHz), mono or
    stereo (more channels are down-mixed)."""
    rate = source.source_rate if source.source_rate in AAC_RATES else 48000
    return rate, "mono" if source.source_channels == 1 else "stereo"


def read_audio_track(audio_path) -> tuple[np.ndarray, int]:
    """The first audio stream of a file decoded as the writer muxes it: ``(samples (1|2, S) float32, rate)``, so
    ``VideoWriter(audio_array=..., audio_rate=...)`` writes the same track as ``VideoWriter(audio_path=...)``."""
    with AudioStream(audio_path) as source:
        if not source.has_audio:
            raise InputError(f"{audio_path} has no audio stream; pass a speech recording as the driving audio")
        rate, layout = aac_format(source)
        chunks = list(source.chunks(rate=rate, layout=layout, sample_format="fltp"))
    channels = 1 if layout == "mono" else 2
    return (np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)), rate


class _AudioTrack:
    """Encodes audio chunks ``(channels, n)`` float32 at ``rate`` into an AAC stream of the output container."""

    def __init__(self, container, chunks: Iterator[np.ndarray], rate: int, channels: int, source=None):
        self.chunks = chunks
        self.rate = rate
        self.layout = "mono" if channels == 1 else "stereo"
        self.source = source  # an open file to close at the end (audio from a file)
        self.stream = container.add_stream("aac", rate=self.rate)
        self.stream.layout = self.layout
        self.stream.time_base = Fraction(1, self.rate)
        self.container = container
        self.pending = np.zeros((channels, 0), np.float32)
        self.written = 0  # samples sent to the encoder
        self.exhausted = False

    @classmethod
    def from_file(cls, container, audio_path: Path) -> "_AudioTrack":
        """The first audio stream of ``audio_path``, decoded as it is needed (:class:`~.audio.AudioStream`)."""
        source = AudioStream(audio_path)
        if not source.has_audio:
            source.close()
            raise InputError(f"{audio_path} has no audio stream; pass a speech recording as the driving audio")
        rate, layout = aac_format(source)
        chunks = source.chunks(rate=rate, layout=layout, sample_format="fltp")
        return cls(container, chunks, rate, 1 if layout == "mono" else 2, source)

    @classmethod
    def from_array(cls, container, wave, rate: int) -> "_AudioTrack":
        wave = np.asarray(wave, np.float32)
        wave = wave[None] if wave.ndim == 1 else wave
        if wave.ndim != 2 or wave.shape[0] not in (1, 2):
            raise ValueError(f"audio must be (samples,) or (1 or 2 channels, samples), got shape {wave.shape}")
        if rate not in AAC_RATES:
            raise ValueError(f"audio rate {rate} Hz is not an AAC rate ({', '.join(map(str, AAC_RATES))})")
        step = 1024
        chunks = (wave[:, i:i + step] for i in range(0, wave.shape[1], step))
        return cls(container, chunks, int(rate), wave.shape[0])

    def _pull(self) -> bool:
        """Take one more chunk of the source into ``pending``; False at the end of the source."""
        if self.exhausted:
            return False
        chunk = next(self.chunks, None)
        if chunk is None:
            self.exhausted = True
            return False
        self.pending = np.concatenate([self.pending, chunk.astype(np.float32, copy=False)], axis=1)
        return True

    def _encode(self, samples: np.ndarray) -> None:
        import av

        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=self.layout)
        frame.sample_rate = self.rate
        frame.pts = self.written
        frame.time_base = Fraction(1, self.rate)
        self.written += samples.shape[1]
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def write_until(self, seconds: float | None, pad: bool = False) -> None:
        """Encode the audio up to ``seconds`` (None: all of it); with ``pad`` fill a short source with silence."""
        target = None if seconds is None else int(round(seconds * self.rate))
        while (target is None or self.written + self.pending.shape[1] < target) and self._pull():
            pass
        take = self.pending.shape[1] if target is None else min(target - self.written, self.pending.shape[1])
        if take > 0:
            self._encode(self.pending[:, :take])
            self.pending = self.pending[:, take:]
        if pad and target is not None and self.written < target:
            self._encode(np.zeros((self.pending.shape[0], target - self.written), np.float32))

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.close_source()

    def close_source(self) -> None:
        if self.source is not None:
            self.source.close()


class VideoWriter:
    """Write frames to ``path`` as H.264 (yuv420p) at ``fps``; mux audio as AAC when given.

    Use as a context manager; call :meth:`write` with batches of frames (``(N, H, W, 3)`` uint8 or
    ``(N, 3, H, W)`` float in [0, 1]; one ``(H, W, 3)`` frame works too). The file is written under a temporary
    name unique to this writer (:func:`partial_path`) and renamed on success, so an interrupted run never leaves a
    truncated video under the final name and two writers of one path never mix their files.

    ``fps``: an integer or a fraction (``30000/1001``; a float is turned into the nearest fraction with a
    denominator up to 1001). Audio: ``audio_path`` (a file ffmpeg decodes), or ``audio_array`` ``(samples,)`` /
    ``(1 or 2, samples)`` float in [-1, 1] at ``audio_rate`` (an AAC rate); ``fit_audio`` cuts / pads it to the
    video's duration. ``keyframe_interval``: frames between keyframes (x264's default when None); ``crf`` and
    ``preset`` are x264's.
    """

    def __init__(self, path, fps=25, audio_path=None, crf: int = 18, preset: str = "medium", *,
                 audio_array=None, audio_rate: int | None = None, fit_audio: bool = True,
                 keyframe_interval: int | None = None):
        import av

        if audio_path is not None and audio_array is not None:
            raise ValueError("pass audio_path or audio_array, not both")
        self.path = Path(path)
        with self._output_errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.path)
        self.tmp_path = partial_path(self.path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.crf, self.preset, self.keyframe_interval = crf, preset, keyframe_interval
        self.fit_audio = fit_audio
        with self._output_errors():
            self.container = av.open(str(self.tmp_path), mode="w", format="mp4")
        self.video = None
        self.frames_written = 0
        self.size = None
        try:
            if audio_path is not None:
                self.audio = _AudioTrack.from_file(self.container, Path(audio_path))
            elif audio_array is not None:
                self.audio = _AudioTrack.from_array(self.container, audio_array, audio_rate)
            else:
                self.audio = None
        except BaseException:
            self.container.close()
            self.tmp_path.unlink(missing_ok=True)
            raise
        self._closed = False

    def _open_video(self, height: int, width: int) -> None:
        self.video = self.container.add_stream("libx264", rate=self.fps)
        self.video.width, self.video.height = width + width % 2, height + height % 2
        self.video.pix_fmt = "yuv420p"
        if self.keyframe_interval:
            self.video.codec_context.gop_size = int(self.keyframe_interval)
        # mbtree off: with it, x264's CRF rate control gave different bitstreams for the same frames from run to
        # run (seen with small frames); without it the same frames always give the same file
        self.video.options = {"crf": str(self.crf), "preset": self.preset, "mbtree": "0"}
        self.size = (height, width)

    def write(self, frames) -> None:
        """Encode a batch of frames (and the audio that goes with them)."""
        import av

        arr = frames_to_uint8(frames)
        if self.video is None:
            self._open_video(arr.shape[1], arr.shape[2])
        if arr.shape[1:3] != self.size:
            raise ValueError(f"frame size changed from {self.size} to {arr.shape[1:3]}")
        if self.video.height != arr.shape[1] or self.video.width != arr.shape[2]:  # odd size: pad to even
            arr = np.pad(arr, ((0, 0), (0, self.video.height - arr.shape[1]), (0, self.video.width - arr.shape[2]),
                               (0, 0)), mode="edge")
        with self._output_errors():
            for img in arr:
                frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(img), format="yuv420p")
                frame.pts = self.frames_written
                for packet in self.video.encode(frame):
                    self.container.mux(packet)
                self.frames_written += 1
                if self.audio is not None:
                    self.audio.write_until(float(self.frames_written / self.fps))

    @contextlib.contextmanager
    def _output_errors(self):
        """A write that fails for a reason the user can fix (disk full, read-only, no permission) ->
        :class:`OutputError` naming the output (not the temporary file)."""
        try:
            yield
        except OSError as err:
            out = OutputError.from_os_error(self.path, err)
            if out is None:
                raise
            raise out from None

    @property
    def duration(self) -> float:
        return float(self.frames_written / self.fps)

    def close(self) -> Path:
        """Flush the encoders, finish the audio track (at the video's duration with ``fit_audio``) and move the
        file into place."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            with self._output_errors():
                try:
                    if self.video is None:
                        raise ValueError("no frames were written")
                    for packet in self.video.encode(None):
                        self.container.mux(packet)
                    if self.audio is not None:
                        if self.fit_audio:
                            self.audio.write_until(self.duration, pad=True)
                        else:
                            self.audio.write_until(None)
                        self.audio.close()
                finally:
                    if self.audio is not None:
                        self.audio.close_source()
                    self.container.close()
                os.replace(self.tmp_path, self.path)  # atomic: readers see the previous file or this one
        except BaseException:  # nothing half-written stays behind, not even the temporary file
            self.tmp_path.unlink(missing_ok=True)
            raise
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file (used when generation fails)."""
        if not self._closed:
            self._closed = True
            try:
                if self.audio is not None:
                    self.audio.close_source()
                self.container.close()
            except Exception:
                pass
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
