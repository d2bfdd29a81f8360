"""Random-weight metric models in the real on-disk formats, for offline end-to-end tests of the evaluation.

:func:`write_tiny_eval_models` writes into ``<root>/eval/`` the three files the registry expects, each with the
real architecture's key names and shapes (the loaders check them strictly), so ``scripts/evaluate.py`` runs
through the same code as with the released weights:

- ``syncnet_v2.model``: a pickled state dict of :class:`~emocast.scoring.syncnet.SyncNet` without BatchNorm
  ``num_batches_tracked`` counters (like the 2017 file), about 55 MB;
- ``pt_inception-2015-12-05-6726825d.pth``: the FID Inception state dict (pytorch-fid layout), about 96 MB;
- ``emotion_fan_mead.pth``: ``{"epoch", "state_dict" (keys prefixed ``module.``), "accuracy", "name"}`` like
  EAT's Emotion-FAN checkpoint, about 45 MB.

"Tiny" refers to the compute (random weights, seeded), not the size: the architectures are fixed by the files.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

FILES = ("syncnet_v2.model", "pt_inception-2015-12-05-6726825d.pth", "emotion_fan_mead.pth")


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Seeded weights; BatchNorm statistics near identity so activations stay finite and input-dependent."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(1.0 + 0.1 * torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(0.01 * torch.randn(t.shape, generator=g))
            elif t.dim() == 1:  # BatchNorm weight
                t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=g))
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)


def write_tiny_syncnet(path, seed: int = 0) -> Path:
    from ..scoring.syncnet import SyncNet

    model = SyncNet()
    _randomise(model, seed)
    state = OrderedDict((k, v.clone()) for k, v in model.state_dict().items()
                        if not k.endswith("num_batches_tracked"))
    torch.save(state, path)
    return Path(path)


def write_tiny_inception(path, seed: int = 1) -> Path:
    from ..evaluation.inception import FIDInception

    model = FIDInception()
    _randomise(model, seed)
    torch.save(OrderedDict((k, v.clone()) for k, v in model.state_dict().items()), path)
    return Path(path)


def write_tiny_emotion_fan(path, seed: int = 2) -> Path:
    from ..scoring.emotion_fan import FrameAttentionNet

    model = FrameAttentionNet()
    _randomise(model, seed)
    state = OrderedDict(("module." + k, v.clone()) for k, v in model.state_dict().items())
    torch.save({"epoch": 62, "state_dict": state, "accuracy": torch.tensor(84.3655), "name": "acc_testdata"}, path)
    return Path(path)


def write_tiny_eval_models(root, only=None) -> Path:
    """Write the metric models into ``<root>/eval/`` (``only``: subset of registry names
    ``syncnet``, ``inception_fid``, ``emotion_fan``). Returns ``root``."""
    root = Path(root)
    folder = root / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    writers = {"syncnet": (write_tiny_syncnet, FILES[0]), "inception_fid": (write_tiny_inception, FILES[1]),
               "emotion_fan": (write_tiny_emotion_fan, FILES[2])}
    for name, (fn, fname) in writers.items():
        if only is None or name in only:
            fn(folder / fname)
    return root


def write_test_video(path, frames, audio=None, fps: int = 25, sample_rate: int = 16000) -> Path:
    """Write ``frames`` ``(T, H, W, 3)`` uint8 RGB as H.264 (+ ``audio`` int16 mono, written whole, as AAC) with
    :class:`~emocast.media.video_writer.VideoWriter`."""
    import numpy as np

    from ..media.video_writer import VideoWriter

    wave = None if audio is None else np.asarray(audio, dtype=np.float32) / 32768.0
    with VideoWriter(path, fps=fps, preset="ultrafast", audio_array=wave, audio_rate=sample_rate,
                     fit_audio=False) as writer:
        writer.write(np.asarray(frames, dtype=np.uint8))
    return Path(path)
