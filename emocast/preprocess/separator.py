"""Vocal separation with audio-separator's MDX-Net ``Kim_Vocal_2.onnx`` (spec §6.1), fully offline.

The model file and audio-separator's three metadata files (``download_checks.json``, ``mdx_model_data.json``,
``vr_model_data.json``) must be in ``pretrained_models/audio_separator`` (registry component
``audio_separator``): with them present, ``Separator.load_model`` finds everything locally and never goes to
the network. The check runs before audio-separator is imported, so a missing file gives the download report.

audio-separator imports ``onnx2torch`` at module level but only calls it when the MDX ``segment_size`` differs
from the model's ``dim_t``; it is installed without it (its dependency pulls a CUDA torchvision, see
environment.md §5), so an empty placeholder module is registered first (``sys.modules.setdefault``; a real
onnx2torch, if installed, is left alone). audio-separator also needs the ``ffmpeg`` binary on PATH.

:meth:`VocalSeparator.separate` works on arrays, in memory and piece by piece, so that memory does not grow with the
audio's length: :func:`separate_streaming` computes what audio-separator's MDX separation computes for the whole
file (the same model segments, normalisation and output scale). Other model architectures go through the
library's whole-file path (a temporary WAV in a private folder, deleted afterwards).
"""
from __future__ import annotations

import itertools
import logging
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np

from .. import registry
from ..errors import EmoCASTError
from ..media.audio import resample, resample_chunks, write_wav
from ..media.ffmpeg_cli import require_ffmpeg
from ..runtime import release_free_memory

COMPONENT = "audio_separator"
MODEL_FILE = "Kim_Vocal_2.onnx"
SEPARATOR_RATE = 44100


def install_onnx2torch_placeholder() -> None:
    """Register an empty ``onnx2torch`` module unless a real one is importable (environment.md §5)."""
    if "onnx2torch" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("onnx2torch") is None:
        sys.modules["onnx2torch"] = types.ModuleType("onnx2torch")


BLOCK_SECONDS = 10  # input pieces of the streamed separation


def _peak_scale(peak: float, max_peak: float, min_peak: float | None) -> float:
    """The factor audio-separator's ``normalize`` applies to a signal of this peak (down to ``max_peak`` above it,
    up to ``min_peak`` below it when that is set)."""
    if peak > max_peak:
        return max_peak / peak
    if min_peak and 0 < peak < min_peak:
        return min_peak / peak
    return 1.0


class _Window:
    """A signal that arrives as consecutive blocks, read through a window that only moves forward:
    :meth:`read` ``(lo, hi)`` gives samples [lo, hi) (zeros past the end) and forgets everything before ``lo``."""

    def __init__(self, blocks, channels: int):
        self.blocks, self.buffer, self.start = iter(blocks), np.zeros((channels, 0), np.float32), 0

    def read(self, lo: int, hi: int) -> np.ndarray:
        pending = [self.buffer[:, max(0, lo - self.start):]]
        end = self.start + self.buffer.shape[1]
        while end < hi:
            block = next(self.blocks, None)
            if block is None:
                break
            pending.append(block if end >= lo else block[:, max(0, lo - end):])
            end += block.shape[1]
        self.buffer = np.concatenate(pending, axis=1)
        self.start = end - self.buffer.shape[1]
        out = self.buffer[:, : hi - lo]
        return np.pad(out, ((0, 0), (0, hi - lo - out.shape[1]))) if out.shape[1] < hi - lo else out


def _mix_blocks(wave: np.ndarray, rate: int):
    """audio-separator's mix, 10 s at a time: 44.1 kHz, stereo (a mono file as two equal channels)."""
    step = rate * BLOCK_SECONDS
    pieces = (wave[:, s:s + step] for s in range(0, wave.shape[1], step))
    for block in resample_chunks(pieces, rate, SEPARATOR_RATE):
        yield np.repeat(block, 2, axis=0) if block.shape[0] == 1 else block


def separate_streaming(model, wave: np.ndarray, rate: int, out_rate: int, mono: bool) -> np.ndarray:
    """The vocals audio-separator's MDX ``separate`` writes for ``wave`` (``(1 or 2, samples)`` at ``rate``), as
    float32 ``(channels, samples)`` at ``out_rate`` (one channel with ``mono``), with memory independent of the
    audio's length. ``model`` is the library's loaded ``MDXSeparator``; its ``run_model`` does the STFT, the network
    and the inverse STFT of one segment.

    The library, on the whole file: the mix (44.1 kHz stereo) is scaled by ``normalize`` (to
    ``normalization_threshold`` when its peak exceeds it); ``demix`` pads it with ``trim`` zeros in front and
    ``gen + trim - n % gen`` behind (``gen = chunk_size - 2 trim``), runs segments of ``chunk_size`` samples
    (zero-padded past the end) every ``int((1 - overlap) chunk_size)`` samples, weights each output by a Hann window
    of the segment's length, sums them and divides by the summed windows, keeps samples ``trim .. trim + n``; the
    result times the mix's original peak is the vocals stem, written after another ``normalize`` (by the vocals'
    peak) as 16-bit PCM.

    Here the same segments run on the same float32 samples in the same order with the same arithmetic, but the mix
    is resampled 10 s at a time (:func:`~emocast.media.audio.resample_chunks`, exactly the whole-file resampling)
    and read through a sliding window, and each output sample leaves as soon as the last segment covering it has
    run (the next one starts a step later), to be resampled to ``out_rate`` piece by piece. The two whole-file
    peaks are found without holding the file: the mix's by a first resampling pass, the vocals' while they
    stream, their scale applied to the (small) result at the end. The library's second ``demix`` pass (the
    instrumental stem, not written here) is skipped.
    """
    import torch

    model.initialize_model_settings()
    size, trim, overlap = int(model.chunk_size), int(model.trim), float(model.overlap)
    gen, step = size - 2 * trim, int((1 - overlap) * size)
    max_peak, min_peak = float(model.normalization_threshold), model.amplification_threshold
    peak, n = np.float32(0), 0
    for block in _mix_blocks(wave, rate):  # first pass: the mix's peak and length
        peak, n = max(peak, np.abs(block).max(initial=np.float32(0))), n + block.shape[1]
    scale = np.float32(_peak_scale(float(peak), max_peak, min_peak))
    total = trim + n + gen + trim - n % gen  # the padded mixture's length
    front = np.zeros((2, trim), np.float32)
    mixture = _Window(itertools.chain([front], (b * scale for b in _mix_blocks(wave, rate))), 2)

    def vocals():  # 44.1 kHz stereo, in order, each block as soon as no later segment adds to it
        result, divider = np.zeros((2, size), np.float32), np.zeros((2, size), np.float32)  # from sample s on
        for s in range(0, total, step):
            if s:  # move to the new start: fixed buffers, no allocation per segment
                result[:, :size - step], divider[:, :size - step] = result[:, step:].copy(), divider[:, step:].copy()
                result[:, size - step:], divider[:, size - step:] = 0, 0
            width = min(s + size, total) - s
            with torch.no_grad():
                tar = model.run_model(torch.tensor(mixture.read(s, s + size)[None], dtype=torch.float32))
            if overlap != 0:
                window = np.hanning(width)
                tar[..., :width] *= window
                divider[:, :width] += window
            else:
                divider[:, :width] += 1
            result[:, :width] += tar[0, :, :width]
            lo, hi = max(s, trim), min(s + step, total, trim + n)  # final now, and among the mix's samples
            if hi > lo:
                yield result[:, lo - s:hi - s] / divider[:, lo - s:hi - s] * peak

    vocal_peak = np.float32(0)
    # the result, allocated once (pieces kept in a list between the transient buffers fragment the heap, and the
    # process keeps growing with the audio's length); swresample may give a few samples more than the ratio
    out = np.zeros((1 if mono else 2, n * out_rate // SEPARATOR_RATE + out_rate // 100), np.float32)
    filled = 0

    def tracked():
        nonlocal vocal_peak
        for block in vocals():
            vocal_peak = max(vocal_peak, np.abs(block).max(initial=np.float32(0)))
            yield block

    for block in resample_chunks(tracked(), SEPARATOR_RATE, out_rate):
        if filled + block.shape[1] > out.shape[1]:
            out = np.concatenate([out, np.zeros_like(out[:, :filled + block.shape[1] - out.shape[1]])], axis=1)
        out[:, filled:filled + block.shape[1]] = block.mean(axis=0, keepdims=True) if mono else block
        filled += block.shape[1]
    out = out[:, :filled]
    out *= np.float32(_peak_scale(float(vocal_peak), max_peak, min_peak))  # the library's write normalisation
    return out

class VocalSeparator:
    """``separate(wave, rate) -> (vocals (channels, samples) float32, 44100)`` with Kim_Vocal_2."""

    def __init__(self, models_root=None, device=None, log_level: int = logging.WARNING):
        self.folder = registry.component_dir(COMPONENT, models_root)  # MissingModelError with the report
        require_ffmpeg("vocal separation", "skip separation with --no_separation")
        install_onnx2torch_placeholder()
        self._workdir = tempfile.TemporaryDirectory(prefix="emocast-sep-")
        # Separator() calls warnings.filterwarnings("ignore") for the whole process; keep our warnings alive
        with warnings.catch_warnings():
            from audio_separator.separator import Separator

            self._separator = Separator(log_level=log_level, model_file_dir=str(self.folder.resolve()),
                                        output_dir=self._workdir.name, output_single_stem="vocals",
                                        sample_rate=SEPARATOR_RATE)
            try:
                self._separator.load_model(MODEL_FILE)
            except (ValueError, KeyError, OSError) as err:
                raise EmoCASTError(
                    f"audio-separator cannot load {self.folder / MODEL_FILE} with its metadata ({err}). Fix: "
                    f"re-download the component: {registry.fix_command(COMPONENT, models_root)}") from None

    def separate(self, wave: np.ndarray, rate: int, source: str = "the driving audio", out_rate: int | None = None,
                 mono: bool = False) -> tuple[np.ndarray, int]:
        """Vocals of ``wave`` (``(channels, samples)`` float32 at ``rate``) as float32 ``(channels, samples)`` at
        ``out_rate`` (default 44.1 kHz, the model's), averaged to one channel with ``mono``.

        An MDX-Net model (Kim_Vocal_2) is run by :func:`separate_streaming`: audio-separator's whole-file
        computation, done piece by piece so that memory does not grow with the audio's length. Audio with more than
        two channels is averaged to one first (audio-separator takes mono or stereo only)."""
        from audio_separator.separator.architectures.mdx_separator import MDXSeparator

        wave = np.atleast_2d(np.asarray(wave, np.float32))
        wave = wave.mean(axis=0, keepdims=True) if wave.shape[0] > 2 else wave
        out_rate = int(out_rate or SEPARATOR_RATE)
        model = self._separator.model_instance
        if isinstance(model, MDXSeparator):
            with warnings.catch_warnings():  # the library's own numeric noise, scoped to this call
                warnings.simplefilter("ignore")
                vocals = separate_streaming(model, wave, int(rate), out_rate, mono)
            release_free_memory()  # its transient buffers, freed, would stay resident under the later peak
        else:  # another architecture: the library's whole-file path
            vocals, vrate = self._separate_file(wave, int(rate), source)
            vocals = resample(vocals, vrate, out_rate)
            vocals = vocals.mean(axis=0, keepdims=True) if mono else vocals
        if vocals.shape[-1] == 0:
            raise EmoCASTError(f"vocal separation of {source} produced no output. Fix: try --no_separation.")
        return vocals, out_rate

    def _separate_file(self, wave: np.ndarray, rate: int, source: str) -> tuple[np.ndarray, int]:
        """The library's own path: the whole waveform through a temporary WAV file."""
        from .audio import load_audio

        with tempfile.TemporaryDirectory(dir=self._workdir.name) as tmp:
            src = Path(tmp) / "input.wav"
            mix = resample(wave, rate, SEPARATOR_RATE)
            write_wav(src, mix, SEPARATOR_RATE, subtype="FLOAT")
            self._separator.output_dir = tmp
            self._separator.model_instance.output_dir = tmp
            with warnings.catch_warnings():  # the library's own deprecation/numeric noise, scoped to this call
                warnings.simplefilter("ignore")
                outputs = self._separator.separate(str(src))
            if not outputs:
                raise EmoCASTError(f"vocal separation of {source} produced no output. Fix: try --no_separation.")
            out = Path(outputs[0])
            out = out if out.is_absolute() else Path(tmp) / out
            return load_audio(out, check=False)

    def close(self) -> None:
        self._workdir.cleanup()
