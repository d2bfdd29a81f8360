"""SyncNet (Chung & Zisserman 2016) as released with syncnet_python (``syncnet_v2.model``), for LSE-D / LSE-C.

The two streams and their inputs (what the released weights expect):

- **video**: 5 consecutive frames of a 224x224 face crop, **BGR** channel order (syncnet_python reads frames
  with OpenCV), raw 0..255 values (no normalisation): ``(N, 3, 5, 224, 224)`` -> ``(N, 1024)``.
- **audio**: 20 MFCC frames (0.2 s at 100 Hz) x 13 coefficients from 16 kHz int16 PCM
  (:mod:`emocast.scoring.mfcc`): ``(N, 1, 13, 20)`` -> ``(N, 1024)``. Video frame ``i`` (25 fps) pairs with
  MFCC columns ``4i .. 4i+19``.

The module tree mirrors the checkpoint's key names (``netcnnaud.*``, ``netfcaud.*``, ``netcnnlip.*``,
``netfclip.*``; indices are the positions in each ``nn.Sequential``, pooling/ReLU included) so the released
state dict loads strictly. ``syncnet_v2.model`` is a pickled ``OrderedDict`` of tensors (syncnet_python itself
reads it with ``torch.load(..., weights_only=True)``); files from PyTorch < 0.4.1 lack BatchNorm's
``num_batches_tracked`` counters, which is accepted.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import registry
from .checkpoints import load_state_file

WEIGHTS_FILE = "syncnet_v2.model"
EMBED_DIM = 1024
FRAMES_PER_WINDOW = 5
CROP_SIZE = 224
MFCC_PER_WINDOW = 20
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps video


def _conv_bn_relu(conv: nn.Module, bn: nn.Module) -> list[nn.Module]:
    return [conv, bn, nn.ReLU(inplace=True)]


def _audio_cnn() -> nn.Sequential:
    c = nn.Conv2d
    layers = [
        *_conv_bn_relu(c(1, 64, 3, 1, 1), nn.BatchNorm2d(64)), nn.MaxPool2d(1, 1),          # 0-3
        *_conv_bn_relu(c(64, 192, 3, 1, 1), nn.BatchNorm2d(192)), nn.MaxPool2d(3, (1, 2)),  # 4-7
        *_conv_bn_relu(c(192, 384, 3, 1, 1), nn.BatchNorm2d(384)),                          # 8-10
        *_conv_bn_relu(c(384, 256, 3, 1, 1), nn.BatchNorm2d(256)),                          # 11-13
        *_conv_bn_relu(c(256, 256, 3, 1, 1), nn.BatchNorm2d(256)), nn.MaxPool2d(3, 2),      # 14-17
        *_conv_bn_relu(c(256, 512, (5, 4), 1, 0), nn.BatchNorm2d(512)),                     # 18-20
    ]
    return nn.Sequential(*layers)


def _lip_cnn() -> nn.Sequential:
    c = nn.Conv3d
    layers = [
        *_conv_bn_relu(c(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(96)),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2)),                                                  # 0-3
        *_conv_bn_relu(c(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(256)),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),                                       # 4-7
        *_conv_bn_relu(c(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.BatchNorm3d(256)),            # 8-10
        *_conv_bn_relu(c(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.BatchNorm3d(256)),            # 11-13
        *_conv_bn_relu(c(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.BatchNorm3d(256)),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2)),                                                  # 14-17
        *_conv_bn_relu(c(256, 512, (1, 6, 6), 1, 0), nn.BatchNorm3d(512)),                   # 18-20
    ]
    return nn.Sequential(*layers)


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """Audio and lip embedding networks; compare the two embeddings with Euclidean distance."""

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.netcnnaud = _audio_cnn()
        self.netfcaud = _head(embed_dim)
        self.netfclip = _head(embed_dim)
        self.netcnnlip = _lip_cnn()

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 13, 20)`` MFCC windows -> ``(N, embed_dim)``."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 5, 224, 224)`` BGR 0..255 windows -> ``(N, embed_dim)``."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def _fix() -> str:
    return ("Download the original file with `python scripts/download_models.py --only syncnet` "
            f"(source: {registry.COMPONENTS['syncnet'].source}).")


def load_syncnet_file(path, device="cpu") -> SyncNet:
    """Build :class:`SyncNet` from a syncnet_python-format state dict (strict key and shape check)."""
    return load_state_file(SyncNet(), path, "SyncNet (syncnet_v2.model)", _fix(), device)


def load_syncnet(models_root=None, device="cpu") -> SyncNet:
    """The released SyncNet from ``<models_root>/eval/syncnet_v2.model`` (download report when missing)."""
    folder = registry.component_dir("syncnet", models_root)
    return load_syncnet_file(Path(folder) / WEIGHTS_FILE, device=device)
