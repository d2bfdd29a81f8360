"""Shared pytest fixtures.

``tiny_models``: a ``pretrained_models``-shaped folder of tiny random models in the real on-disk formats
(:func:`emocast.testing.tiny_kit.write_tiny_models`), written once per test session into a temporary folder.
Pass it as ``root``/``models_root`` to the package's real loaders.
"""
from __future__ import annotations

import os

import pytest
import torch

# tests never touch the network: every Hugging Face call must be served from local files
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Path of the session's tiny model kit (read-only by convention: copy it before modifying files)."""
    from emocast.testing.tiny_kit import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny models run
    fastest that way and do not fight other processes for the cores; the previous count is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
