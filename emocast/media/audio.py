"""The one audio decoder (PyAV, which bundles FFmpeg), array resampling and WAV writing.

- :class:`AudioStream`: the first audio stream of any file FFmpeg opens (audio files, the audio track of a
  video), decoded chunk by chunk: at the source rate and channel count as float32, or through FFmpeg's
  resampler (swresample) to a rate / channel layout / sample format. The video writer streams the driving audio
  with it; everything else calls :func:`decode_audio`.
- :func:`decode_audio`: the whole stream at once, ``(channels, samples)`` and its rate; None when the file has
  no audio stream. ``align_to_file_start`` places the track on the file's timeline like ``ffmpeg -async 1``.
- :func:`resample` (swresample on arrays, channel count kept), :func:`resample_chunks` (the same, streamed
  piece by piece with the same result), :func:`to_mono` (channel average).
- :func:`write_wav`.

Encoder padding: an AAC (M4A, MP4/MOV video) stream decodes to whole codec frames of 1024 samples, so the last
frame carries up to 1023 samples of padding beyond the recording (a 0.600 s file decodes to 0.640 s and would give
one video frame too many). The decoder cuts the samples past the end the file declares (the stream's start time
plus its duration, else the container's) when they are at most :data:`PADDING_TOLERANCE` source samples; a file
whose audio runs on further than that has a wrong header, and nothing is cut. (FFmpeg already drops the encoder's
priming samples at the start through the MP4 edit list.)

A file that cannot be opened or decoded raises :class:`~emocast.errors.UnreadableMedia` naming it; callers with
their own advice (the driving audio of inference, a video of data preparation) catch it and say theirs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import UnreadableMedia
from .container import decode_errors, open_container

#: output sample formats of :meth:`AudioStream.chunks` and their array types
SAMPLE_FORMATS = {"flt": np.float32, "fltp": np.float32, "s16": np.int16, "s16p": np.int16}
#: the most decoded samples (at the source rate) past the declared end that are taken for encoder padding and cut:
#: two AAC frames (HE-AAC frames are 2048 samples)
PADDING_TOLERANCE = 2048


class AudioStream:
    """The first audio stream of ``path``, opened (use as a context manager).

    ``has_audio``: whether there is one; ``source_rate`` / ``source_channels``: its rate and channel count;
    ``file_start``: the file's start time in seconds (None when unknown); ``first_time``: the presentation time of
    the first decoded frame, known once decoding started (None when the stream has no timestamps).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.container = open_container(self.path)
        streams = self.container.streams.audio
        self.stream = streams[0] if streams else None
        self.has_audio = self.stream is not None
        ctx = self.stream.codec_context if self.has_audio else None
        self.source_rate = int(ctx.sample_rate or self.stream.rate or 0) if ctx is not None else 0
        self.source_channels = int(ctx.channels or 1) if ctx is not None else 0
        start = self.container.start_time
        self.file_start = None if start is None else start / 1_000_000  # AV_TIME_BASE
        self.first_time: float | None = None

    def chunks(self, rate: int | None = None, layout: str | None = None,
               sample_format: str = "flt") -> Iterator[np.ndarray]:
        """Decoded samples as ``(channels, n)`` arrays.

        With neither ``rate`` nor ``layout`` the source samples come out as they are, converted to float32 in
        [-1, 1) (integers divided by their full scale; 8-bit unsigned centred first). Otherwise FFmpeg's
        resampler converts them to ``rate`` (default: the source rate), ``layout`` ("mono", "stereo"; default:
        the source layout) and ``sample_format`` (a key of :data:`SAMPLE_FORMATS`). The resampler ignores the
        frames' timestamps: gaps are not filled (see :func:`decode_audio`'s ``align_to_file_start``).
        """
        import av

        if sample_format not in SAMPLE_FORMATS:
            raise ValueError(f"sample_format must be one of {sorted(SAMPLE_FORMATS)}, got {sample_format!r}")
        native = rate is None and layout is None
        if native and sample_format != "flt":
            raise ValueError("source samples come out as float32 ('flt'); pass a rate or layout to convert them")
        resampler = None if native else av.AudioResampler(format=sample_format, layout=layout, rate=rate)
        return self._trim_padding(self._decoded(resampler, SAMPLE_FORMATS[sample_format]), rate)

    def declared_end(self) -> float | None:
        """Where the stream ends by the file's own account, in seconds: its start time plus its duration, else the
        container's end; None when the file declares neither."""
        s = self.stream
        if s is not None and s.duration is not None and s.time_base is not None:
            return float(((s.start_time or 0) + s.duration) * s.time_base)
        if self.container.duration is not None:
            return ((self.container.start_time or 0) + self.container.duration) / 1_000_000  # AV_TIME_BASE
        return None

    def _trim_padding(self, chunks: Iterator[np.ndarray], rate: int | None) -> Iterator[np.ndarray]:
        """``chunks`` without the samples past :meth:`declared_end` when they are encoder padding (at most
        :data:`PADDING_TOLERANCE` source samples); when more follow, the header is wrong and everything is kept."""
        end = self.declared_end()
        if end is None:
            yield from chunks
            return
        limit = tolerance = None
        emitted, held = 0, []
        for chunk in chunks:
            if limit is None:  # the first chunk is decoded: its time and the rate are known
                out_rate = rate or self.source_rate
                origin = self.first_time if self.first_time is not None else 0.0
                limit = max(0, int(round((end - origin) * out_rate)))
                tolerance = int(np.ceil(PADDING_TOLERANCE * out_rate / max(self.source_rate, 1)))
            if not held and emitted + chunk.shape[1] <= limit:
                emitted += chunk.shape[1]
                yield chunk
                continue
            if not held:
                keep = max(0, limit - emitted)
                if keep:
                    emitted += keep
                    yield chunk[:, :keep]
                chunk = chunk[:, keep:]
            held.append(chunk)
            if sum(c.shape[1] for c in held) > tolerance:  # not padding: the declared duration is wrong
                yield from held
                held, limit = [], float("inf")

    def _decoded(self, resampler, dtype) -> Iterator[np.ndarray]:
        errors = decode_errors()  # now, not when a generator left open is closed at interpreter exit (no imports then)
        try:
            for frame in self.container.decode(self.stream):
                if self.first_time is None and frame.time is not None:
                    self.first_time = float(frame.time)
                if resampler is None:
                    self.source_rate = frame.sample_rate
                    yield _to_float(_channels_first(frame))
                    continue
                frame.pts = None
                for out in resampler.resample(frame):
                    yield _channels_first(out).astype(dtype, copy=False)
            for out in resampler.resample(None) if resampler is not None else ():
                yield _channels_first(out).astype(dtype, copy=False)
        except errors as err:
            raise UnreadableMedia.from_error(self.path, err, decoding=True) from None

    def close(self) -> None:
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _channels_first(frame) -> np.ndarray:
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        return arr.reshape(channels, -1)
    return arr.reshape(-1, channels).T


def _to_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
    return arr.astype(np.float32)


def decode_audio(path: str | os.PathLike, rate: int | None = None, layout: str | None = None,
                 sample_format: str = "flt", align_to_file_start: bool = False) -> tuple[np.ndarray, int] | None:
    """The first audio stream of ``path`` as ``(samples (channels, S), rate)``; None when there is none.

    ``rate`` / ``layout`` / ``sample_format``: as :meth:`AudioStream.chunks` (the source's rate and channels as
    float32 when neither rate nor layout is given). ``align_to_file_start``: put the track on the file's
    timeline the way ``ffmpeg -async 1`` corrects the start: a track that starts after the file's start time gets
    that much silence in front, one that starts before it is trimmed; nothing later is corrected.
    """
    with AudioStream(path) as stream:
        if not stream.has_audio:
            return None
        chunks = list(stream.chunks(rate, layout, sample_format))
        out_rate = int(rate or stream.source_rate)
        channels = stream.source_channels if layout is None else {"mono": 1, "stereo": 2}.get(layout, 1)
        first, start = stream.first_time, stream.file_start
    wave = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), SAMPLE_FORMATS[sample_format])
    if align_to_file_start and first is not None and start is not None:
        lead = int(round((first - start) * out_rate))
        if lead > 0:
            wave = np.concatenate([np.zeros((wave.shape[0], lead), wave.dtype), wave], axis=1)
        elif lead < 0:
            wave = wave[:, -lead:]
    return wave, out_rate


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample ``(channels, samples)`` float32 with FFmpeg's swresample (channel count kept)."""
    if rate == target:
        return wave.astype(np.float32, copy=False)
    step = rate * 10
    out = list(resample_chunks((wave[:, s:s + step] for s in range(0, wave.shape[1], step)), rate, target))
    return np.concatenate(out, axis=1) if out else np.zeros((wave.shape[0], 0), np.float32)


def resample_chunks(chunks: Iterable[np.ndarray], rate: int, target: int) -> Iterator[np.ndarray]:
    """Consecutive ``(channels, n)`` pieces of one signal resampled to ``target`` by one swresample stream, piece
    by piece: the pieces it yields, concatenated, equal :func:`resample` of the whole signal exactly (swresample
    keeps its filter state between pieces), whatever the pieces' sizes. Memory stays the size of a piece."""
    import av

    resamplers = None
    for chunk in chunks:
        chunk = np.ascontiguousarray(chunk, np.float32)
        if rate == target:
            yield chunk
            continue
        if resamplers is None:  # av layouts beyond stereo: one mono stream per channel
            layout = {1: "mono", 2: "stereo"}.get(chunk.shape[0])
            groups = [slice(None)] if layout else [slice(c, c + 1) for c in range(chunk.shape[0])]
            layout = layout or "mono"
            resamplers = [av.AudioResampler(format="fltp", layout=layout, rate=target) for _ in groups]
        outs = []
        for resampler, group in zip(resamplers, groups):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk[group]), format="fltp", layout=layout)
            frame.sample_rate = rate
            outs.append([f.to_ndarray() for f in resampler.resample(frame)])
        yield from _stacked(outs)
    for out in _stacked([[f.to_ndarray() for f in r.resample(None)] for r in resamplers or ()]):
        yield out


def _stacked(outs: list[list[np.ndarray]]) -> Iterator[np.ndarray]:
    """One ``(channels, n)`` float32 array from the frames of each channel group (nothing when there are none)."""
    parts = [np.concatenate(frames, axis=1) for frames in outs if frames]
    if parts:
        yield np.concatenate(parts, axis=0).astype(np.float32, copy=False)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """``(channels, samples)`` -> ``(samples,)`` by averaging channels."""
    return wave.mean(axis=0).astype(np.float32) if wave.ndim == 2 else wave.astype(np.float32)


def write_wav(path: str | os.PathLike, wave: np.ndarray, rate: int, subtype: str = "PCM_16") -> None:
    """Write ``(samples,)`` or ``(channels, samples)`` float audio in [-1, 1] as a WAV file (``subtype``:
    soundfile's, e.g. ``"PCM_16"``, ``"FLOAT"``)."""
    import soundfile as sf

    wave = np.asarray(wave, dtype=np.float32)
    sf.write(str(path), wave.T if wave.ndim == 2 else wave, rate, subtype=subtype)
