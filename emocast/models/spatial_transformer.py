"""The spatial transformer of both UNets (spec §2.5, §5): reference-aware self-attention + decoupled cross-attention.

Tensors are per frame: ``(N, C, h, w)`` with ``N = batch x frames`` (frame index fastest). The block returns its
``norm1`` output too, which is what the ReferenceNet records and the denoising UNet attends to.
"""
from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from .decoupled_attention import DecoupledAttnProcessor


def reference_self_attention(attn: Attention, n: torch.Tensor, reference: torch.Tensor | None,
                             rows: torch.Tensor | None) -> torch.Tensor:
    """``attn1`` with keys/values ``[n, reference]`` for the rows in ``rows``, plain self-attention for the others.

    n: (N, L, C); reference: (R, L_ref, C) for the R selected rows (in order) or None; rows: (N,) bool or None
    (= every row when ``reference`` is given).
    """
    if reference is None:
        return attn(n)
    if rows is None or bool(rows.all()):
        return attn(n, torch.cat([n, reference.to(n.dtype)], dim=1))
    if not bool(rows.any()):
        return attn(n)
    out = n.new_empty(n.shape)
    with_ref = n[rows]
    out[rows] = attn(with_ref, torch.cat([with_ref, reference.to(n.dtype)], dim=1))
    out[~rows] = attn(n[~rows])  # the unconditional CFG half: no reference tokens (spec §5.4)
    return out


class SpatialTransformerBlock(nn.Module):
    """LayerNorm -> self-attention (+ reference tokens) -> LayerNorm -> decoupled cross-attention -> GEGLU FF."""

    def __init__(self, dim: int, heads: int, cross_attention_dim: int, num_face_tokens: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(query_dim=dim, cross_attention_dim=cross_attention_dim, heads=heads,
                               dim_head=dim // heads, bias=False,
                               processor=DecoupledAttnProcessor(dim, cross_attention_dim, num_face_tokens))
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")

    def forward(self, x, context, reference=None, rows=None):
        n = self.norm1(x)
        x = reference_self_attention(self.attn1, n, reference, rows) + x
        x = self.attn2(self.norm2(x), context) + x
        x = self.ff(self.norm3(x)) + x
        return x, n


class SpatialTransformer(nn.Module):
    """GroupNorm -> 1x1 conv -> one :class:`SpatialTransformerBlock` -> 1x1 conv -> + residual.

    ``path`` (e.g. ``"down_blocks.0.attentions.1"``) is set by the owning UNet; it keys the reference features.
    """

    def __init__(self, channels: int, heads: int, cross_attention_dim: int, num_face_tokens: int, norm_groups: int):
        super().__init__()
        self.path = ""
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            [SpatialTransformerBlock(channels, heads, cross_attention_dim, num_face_tokens)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def norm1_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Only the block's ``norm1`` output (N, h*w, C) — what the ReferenceNet records."""
        n_, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(n_, h * w, c)
        return self.transformer_blocks[0].norm1(tokens)

    def forward(self, x: torch.Tensor, context: torch.Tensor, reference: torch.Tensor | None = None,
                rows: torch.Tensor | None = None):
        """x (N, C, h, w); context (N, T+K, D) -> (output (N, C, h, w), norm1 tokens (N, h*w, C)).

        reference: (R, h*w', C) tokens appended to the self-attention keys of the rows selected by ``rows``
        ((N,) bool; None = all rows).
        """
        n_, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(n_, h * w, c)
        tokens, n = self.transformer_blocks[0](tokens, context, reference, rows)
        out = self.proj_out(tokens.reshape(n_, h, w, c).permute(0, 3, 1, 2).contiguous())
        return out + x, n
