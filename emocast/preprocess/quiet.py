"""Keeping third-party start-up noise out of the user's terminal.

- mediapipe 0.10.21's C++ graphs log TensorFlow Lite / absl start-up lines on first use (and, without
  :mod:`emocast.compat`'s protobuf shim, a ``GetPrototype`` error line on import). :func:`mediapipe_quiet` filters
  exactly those known lines at the file-descriptor level; anything else printed meanwhile still reaches stderr.
- transformers prints a progress bar per model load and a "LOAD REPORT" for the keys wav2vec2-base-960h's
  CTC head leaves unused. :func:`quiet_transformers` silences both around our loads (errors still raise).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile

MEDIAPIPE_NOISE = ("GetPrototype", "XNNPACK delegate for CPU", "absl::InitializeLog",
                   "inference_feedback_manager.cc", "landmark_projection_calculator.cc")


@contextlib.contextmanager
def mediapipe_quiet(noise=MEDIAPIPE_NOISE):
    """Capture stderr (fd 2, so C++ output too) inside the block; re-print every line but the known noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            printed = capture.read().decode("utf-8", errors="replace")
    for line in printed.splitlines():
        if line.strip() and not any(n in line for n in noise):
            print(line, file=sys.stderr)


def import_mediapipe():
    """``import mediapipe`` without its start-up noise; returns the module. (:mod:`emocast.compat`'s protobuf shim,
    which its ``.task`` loader needs, is already in place: importing ``emocast`` applies it.)"""
    if "mediapipe" not in sys.modules:
        with mediapipe_quiet():
            import mediapipe  # noqa: F401
    return sys.modules["mediapipe"]


@contextlib.contextmanager
def quiet_transformers():
    """transformers' load progress bars and info/warning logs off inside the block, restored afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
