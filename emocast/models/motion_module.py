"""AnimateDiff-v2 motion module (spec §2.6): attention along time at every spatial location.

Parameter names are those of ``mm_sd_v15_v2.ckpt`` (``temporal_transformer.transformer_blocks.0.attention_blocks.0
.to_q.weight``, ``...pos_encoder.pe`` ...), so the file loads unchanged.

The motion frames (features of the previous clip's last frames, from the reference pass) are prepended to the
clip's frames and dropped from the output. Their features do not change over the steps of a clip, and only the
clip frames' outputs are kept, so the work on them is split (:class:`MotionPrefix`): GroupNorm, ``proj_in`` and
the first attention's projections of the motion frames once per clip; in the last attention only the clip
frames' queries, and the feed-forward and ``proj_out`` only on the clip frames. The kept outputs are the same
math as running every frame through every layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from ..errors import ConfigError
from .attention_ops import attend, check_plain, key_values


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """The ``(1, length, dim)`` AnimateDiff table: sin on even channels, cos on odd, base 10000."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div)
    pe[0, :, 1::2] = torch.cos(position * div)
    return pe


class PositionalEncoding(nn.Module):
    """Adds ``pe[:, start:start + frames]`` to ``(batch, frames, dim)`` tokens; ``pe`` is a persistent buffer (in
    net.pth)."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(max_len, dim), persistent=True)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        if start + x.shape[1] > self.pe.shape[1]:
            raise ConfigError(f"{start + x.shape[1]} frames (clip frames + motion frames) exceed the motion modules' "
                              f"positional table of {self.pe.shape[1]}; use shorter clips")
        return x + self.pe[:, start: start + x.shape[1]].to(x.dtype)


class TemporalAttention(Attention):
    """A diffusers self-attention that owns the positional table added to its input (``pos_encoder.pe``)."""

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        check_plain(self)
        self.pos_encoder = PositionalEncoding(dim, max_len)


@dataclass
class MotionPrefix:
    """The motion frames of one motion module, prepared once per clip: ``tokens`` (B*HW, M, C) after GroupNorm and
    ``proj_in``; ``q, k, v`` (B*HW, M, C) the first attention's projections of them (pre-norm + positions 0..M-1)."""

    tokens: torch.Tensor
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor

    @property
    def frames(self) -> int:
        return self.tokens.shape[1]

    def map(self, fn) -> "MotionPrefix":
        return MotionPrefix(fn(self.tokens), fn(self.q), fn(self.k), fn(self.v))


class TemporalTransformerBlock(nn.Module):
    """Two pre-normed temporal self-attentions (each adding its own PE) and a GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, max_len) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def prefix_qkv(self, tokens: torch.Tensor):
        """The first attention's q, k, v of prefix tokens (B*HW, M, C) at positions 0..M-1."""
        attn = self.attention_blocks[0]
        n = attn.pos_encoder(self.norms[0](tokens))
        return (attn.to_q(n), *key_values(attn, n))

    def forward(self, x: torch.Tensor, prefix: MotionPrefix | None = None) -> torch.Tensor:
        """x: (batch x spatial positions, frames, dim) clip-frame tokens -> the same for the clip frames, with the
        ``prefix`` frames (positions 0..M-1, before the clip frames) in every attention's keys and values."""
        m = 0 if prefix is None else prefix.frames
        last = len(self.attention_blocks) - 1
        for i, (attn, norm) in enumerate(zip(self.attention_blocks, self.norms)):
            if i == 0:  # the prefix's normalised tokens and projections come prepared
                n = attn.pos_encoder(norm(x), start=m)
                q, k, v = attn.to_q(n), *key_values(attn, n)
                if prefix is not None:
                    k, v = torch.cat([prefix.k, k], dim=1), torch.cat([prefix.v, v], dim=1)
                    if i < last:
                        q, x = torch.cat([prefix.q, q], dim=1), torch.cat([prefix.tokens, x], dim=1)
                x = attend(attn, q, k, v) + x
            else:  # keys/values over all frames; the last attention's motion-frame outputs would be dropped
                n = attn.pos_encoder(norm(x))
                k, v = key_values(attn, n)
                if i == last and m:
                    n, x = n[:, m:].contiguous(), x[:, m:]  # (a strided input would make to_q a batched matmul)
                x = attend(attn, attn.to_q(n), k, v) + x
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

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, C, *spatial) -> GroupNorm (statistics per frame) and proj_in -> (B*HW, F, C)."""
        b, f, c = x.shape[:3]
        tokens = self.norm(x.reshape(b * f, c, -1))
        hw = tokens.shape[-1]
        tokens = tokens.transpose(1, 2).reshape(b, f, hw, c)
        return self.proj_in(tokens).transpose(1, 2).reshape(b * hw, f, c)

    def prefix(self, features: torch.Tensor) -> MotionPrefix:
        """Motion-frame features (B, M, C, h, w) or (B, M, C, h*w) -> :class:`MotionPrefix`."""
        tokens = self._tokens(features)
        return MotionPrefix(tokens, *self.transformer_blocks[0].prefix_qkv(tokens))

    def forward(self, x: torch.Tensor, prefix: MotionPrefix | None = None) -> torch.Tensor:
        """x: (B, F, C, h, w) clip frames -> same shape (the ``prefix`` frames attended to, not returned)."""
        b, f, c, h, w = x.shape
        tokens = self.transformer_blocks[0](self._tokens(x), prefix)
        tokens = self.proj_out(tokens).reshape(b, h, w, f, c).permute(0, 3, 4, 1, 2)
        return tokens + x


class MotionModule(nn.Module):
    """``VanillaTemporalModule``: attention along time over the clip frames with the motion frames prepended."""

    def __init__(self, channels: int, heads: int, max_len: int, norm_groups: int):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, max_len, norm_groups)

    def prefix(self, features: torch.Tensor) -> MotionPrefix:
        return self.temporal_transformer.prefix(features)

    def forward(self, x: torch.Tensor, frames: int, prefix: torch.Tensor | MotionPrefix | None = None) -> torch.Tensor:
        """x: (B*frames, C, h, w); prefix: (B, M, C, h, w) motion-frame features, their :class:`MotionPrefix`, or
        None -> (B*frames, C, h, w)."""
        n, c, h, w = x.shape
        video = x.reshape(n // frames, frames, c, h, w)
        if prefix is not None and not isinstance(prefix, MotionPrefix):
            prefix = self.prefix(prefix.to(x.dtype))
        return self.temporal_transformer(video, prefix).reshape(n, c, h, w)
