"""Vocal separation with audio-separator's MDX-Net ``Kim_Vocal_2.onnx`` (spec §6.1), fully offline.

The model file and audio-separator's three metadata files (``download_checks.json``, ``mdx_model_data.json``,
``vr_model_data.json``) must be in ``pretrained_models/audio_separator`` (registry component
``audio_separator``): with them present, ``Separator.load_model`` finds everything locally and never goes to
the network. The check runs before audio-separator is imported, so a missing file gives the download report.

audio-separator imports ``onnx2torch`` at module level but only calls it when the MDX ``segment_size`` differs
from the model's ``dim_t``; it is installed without it (its dependency pulls a CUDA torchvision, see
environment.md §5), so an empty placeholder module is registered first (``sys.modules.setdefault``; a real
onnx2torch, if installed, is left alone). audio-separator also needs the ``ffmpeg`` binary on PATH.

:meth:`VocalSeparator.separate` works on arrays: the waveform is written to a private temporary folder as a
44.1 kHz WAV, separated there (vocals stem only), read back and the folder deleted: no files are left behind.
"""
from __future__ import annotations

import logging
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np

from .. import registry
from ..errors import EmoCASTError
from ..media.ffmpeg_cli import require_ffmpeg

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

    def separate(self, wave: np.ndarray, rate: int, source: str = "the driving audio") -> tuple[np.ndarray, int]:
        """Vocals of ``wave`` (``(channels, samples)`` float32 at ``rate``) as float32 at 44.1 kHz."""
        from ..media.audio import resample, write_wav
        from .audio import load_audio

        with tempfile.TemporaryDirectory(dir=self._workdir.name) as tmp:
            src = Path(tmp) / "input.wav"
            mix = resample(np.atleast_2d(wave), rate, SEPARATOR_RATE)
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
            vocals, vrate = load_audio(out, check=False)
        return vocals, vrate

    def close(self) -> None:
        self._workdir.cleanup()
