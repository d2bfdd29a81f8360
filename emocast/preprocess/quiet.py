"""Keeping transformers' start-up noise out of the user's terminal.

transformers prints a progress bar per model load and a "LOAD REPORT" for the keys wav2vec2-base-960h's CTC head
leaves unused. :func:`quiet_transformers` silences both around our loads (errors still raise). (mediapipe's noise
is filtered where mediapipe is wrapped: :func:`emocast.media.mediapipe_faces.mediapipe_quiet`.)
"""
from __future__ import annotations

import contextlib


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
