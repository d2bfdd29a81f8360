"""Deterministic weights and inputs for parity fixtures, tests and benchmarks (no downloads needed).

``golden_tensor`` is the rule of tests/fixtures/parity/README.md: every state-dict entry is a function of its
key and shape only, so any implementation with the official names gets the same weights.
"""
from __future__ import annotations

import math
import zlib

import torch

from .configs import NetConfig
from .net import EmoCASTNet


def golden_tensor(key: str, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    x = torch.randn(*shape, generator=g, dtype=torch.float32)
    if len(shape) == 1:
        return 1 + 0.1 * x if key.endswith(".weight") else 0.02 * x
    return x / math.sqrt(math.prod(shape[1:]))


def fill_golden(net: torch.nn.Module) -> torch.nn.Module:
    """Overwrite every parameter and buffer in place, key by key (low peak memory)."""
    with torch.no_grad():
        for key, tensor in net.state_dict().items():
            tensor.copy_(golden_tensor(key, tuple(tensor.shape)))
    return net


def golden_net(config: NetConfig, device="cpu") -> EmoCASTNet:
    """The architecture built without initialisation (meta device), then filled with golden weights."""
    with torch.device("meta"):
        net = EmoCASTNet(config)
    net.to_empty(device=device)
    return fill_golden(net)


def random_step_inputs(config: NetConfig, frames: int = 4, latent_size: int = 8, motion_frames: int = 2,
                       seed: int = 0, text_tokens: int = 77) -> dict:
    """Inputs shaped like a parity fixture's ``inputs`` for ``config`` (image = 8 x latent size)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    d = config.cross_attention_dim
    levels = [latent_size // 2 ** i for i in range(config.num_levels)]
    masks = lambda: [torch.rand(1, s * s, generator=g) for s in levels]  # noqa: E731
    return {
        "ref_latents": r(1 + motion_frames, config.in_channels, latent_size, latent_size),
        "face_emb": r(1, config.face_embedding_dim) * 5,
        "text_emb": r(1, text_tokens, d),
        "uncond_text_emb": r(1, text_tokens, d),
        "audio_windows": r(1, frames, config.audio_window, config.audio_layers, config.audio_feature_dim),
        "face_region": torch.rand(1, config.face_locator_in_channels, 8 * latent_size, 8 * latent_size, generator=g),
        "full_masks": masks(), "face_masks": masks(), "lip_masks": masks(),
        "latents": r(1, config.in_channels, frames, latent_size, latent_size),
    }
