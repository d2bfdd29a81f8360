"""AnimateDiff-v2 motion module (spec §2.6): attention along time at every spatial location.

Parameter names are those of ``mm_sd_v15_v2.ckpt`` (``temporal_transformer.transformer_blocks.0.attention_blocks.0
.to_q.weight``, ``...pos_encoder.pe`` ...), so the file loads unchanged.
"""
from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from ..errors import ConfigError


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """The ``(1, length, dim)`` AnimateDiff table: sin on even channels, cos on odd, base 10000."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div)
    pe[0, :, 1::2] = torch.cos(position * div)
    return pe


class PositionalEncoding(nn.Module):
    """Adds ``pe[:, :frames]`` to ``(batch, frames, dim)`` tokens; ``pe`` is a persistent buffer (in net.pth)."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(max_len, dim), persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pe.shape[1]:
            raise ConfigError(f"{x.shape[1]} frames (clip frames + motion frames) exceed the motion modules' "
                              f"positional table of {self.pe.shape[1]}; use shorter clips")
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class TemporalAttention(Attention):
    """A diffusers self-attention that owns the positional table added to its input (``pos_encoder.pe``)."""

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.pos_encoder = PositionalEncoding(dim, max_len)


class TemporalTransformerBlock(nn.Module):
    """Two pre-normed temporal self-attentions (each adding its own PE) and a GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, max_len) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch x spatial positions, frames, dim)."""
        for attn, norm in zip(self.attention_blocks, self.norms):
            x = attn(attn.pos_encoder(norm(x))) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int, norm_groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_len)])
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)  # AnimateDiff's zero_initialize (overwritten by the checkpoint)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, F, C, h, w) -> same shape. GroupNorm statistics are per frame."""
        b, f, c, h, w = x.shape
        tokens = self.norm(x.reshape(b * f, c, h, w))
        tokens = tokens.permute(0, 2, 3, 1).reshape(b, f, h * w, c)
        tokens = self.proj_in(tokens).transpose(1, 2).reshape(b * h * w, f, c)
        tokens = self.transformer_blocks[0](tokens)
        tokens = self.proj_out(tokens).reshape(b, h, w, f, c).permute(0, 3, 4, 1, 2)
        return tokens + x


class MotionModule(nn.Module):
    """``VanillaTemporalModule``: prepends the motion-frame features, runs the temporal transformer, drops them."""

    def __init__(self, channels: int, heads: int, max_len: int, norm_groups: int):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, max_len, norm_groups)

    def forward(self, x: torch.Tensor, frames: int, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B*frames, C, h, w); prefix: (B, M, C, h, w) motion-frame features or None -> (B*frames, C, h, w)."""
        n, c, h, w = x.shape
        video = x.reshape(n // frames, frames, c, h, w)
        m = 0
        if prefix is not None:
            m = prefix.shape[1]
            video = torch.cat([prefix.to(x.dtype), video], dim=1)
        out = self.temporal_transformer(video)[:, m:]
        return out.reshape(n, c, h, w)
