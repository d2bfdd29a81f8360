"""The spatial transformer of both UNets (spec §2.5, §5): reference-aware self-attention + decoupled cross-attention.

Tensors are per frame: ``(N, C, h, w)`` with ``N = batch x frames`` (frame index fastest). The block returns its
``norm1`` output too, which is what the ReferenceNet records and the denoising UNet attends to.

Per-row data that is the same for every frame of a row (the text/face context) or for every step of a clip (the
reference tokens) can come in projected once: ``cross_kv`` (from
:meth:`~emocast.models.decoupled_attention.DecoupledAttnProcessor.key_values`) and ``reference_kv`` (``attn1``'s
keys/values of the reference tokens, one row per reference row). Without them the block projects ``context`` and
``reference`` itself — the same math.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from .attention_ops import check_plain, key_values, multihead, output, uses_xformers
from .decoupled_attention import DecoupledAttnProcessor


@dataclass(frozen=True)
class Segment:
    """Frame rows ``[start, stop)`` of a step and the reference row each of them reads in its self-attention
    (``reference``: (stop - start,) long tensor; None = plain self-attention, e.g. the unconditional CFG row)."""

    start: int
    stop: int
    reference: torch.Tensor | None


def reference_segments(attends: Sequence[bool], rows: Sequence[int], batch: int, frames: int, tiled: bool,
                       device=None) -> tuple[Segment, ...]:
    """The self-attention layout of a step whose batch rows are the video rows ``rows`` (of ``batch`` rows, one
    reference row each). ``attends[r]``: video row r attends to the reference. ``tiled`` (the release, spec §5.4):
    frame t of video row r reads reference row ``(r * frames + t) % batch``; otherwise reference row r.
    Consecutive rows of the same kind form one segment."""
    segments: list[list] = []
    for i, r in enumerate(rows):
        ref = None
        if attends[r]:
            ref = [(r * frames + t) % batch for t in range(frames)] if tiled else [r] * frames
        kind = ref is not None
        if segments and segments[-1][2] == kind:
            segments[-1][1] = (i + 1) * frames
            if kind:
                segments[-1][3].extend(ref)
        else:
            segments.append([i * frames, (i + 1) * frames, kind, ref or []])
    return tuple(Segment(s, e, torch.tensor(ref, dtype=torch.long, device=device) if kind else None)
                 for s, e, kind, ref in segments)


def reference_self_attention(attn: Attention, n: torch.Tensor, segments: Sequence[Segment] | None,
                             reference_kv: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """``attn1`` over ``n`` (N, L, C) whose keys/values also hold the reference tokens for the frame rows of the
    segments that read one (``reference_kv``: keys and values (R, L_ref, C), one row per reference row); plain
    self-attention for the other rows (the unconditional CFG row, spec §5.4) and when ``segments`` is None."""
    q, k, v = attn.to_q(n), attn.to_k(n), attn.to_v(n)
    heads, xf = attn.heads, uses_xformers(attn)
    if not segments or reference_kv is None:
        return output(attn, multihead(q, k, v, heads, xf))
    pieces = []
    for seg in segments:
        s, e = seg.start, seg.stop
        if seg.reference is None:
            pieces.append(multihead(q[s:e], k[s:e], v[s:e], heads, xf))
        else:
            k_ref, v_ref = reference_kv[0][seg.reference], reference_kv[1][seg.reference]
            pieces.append(multihead(q[s:e], torch.cat([k[s:e], k_ref.to(k.dtype)], dim=1),
                                    torch.cat([v[s:e], v_ref.to(v.dtype)], dim=1), heads, xf))
    return output(attn, pieces[0] if len(pieces) == 1 else torch.cat(pieces))


class SpatialTransformerBlock(nn.Module):
    """LayerNorm -> self-attention (+ reference tokens) -> LayerNorm -> decoupled cross-attention -> GEGLU FF."""

    def __init__(self, dim: int, heads: int, cross_attention_dim: int, num_face_tokens: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = check_plain(Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False))
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = check_plain(Attention(query_dim=dim, cross_attention_dim=cross_attention_dim, heads=heads,
                                           dim_head=dim // heads, bias=False,
                                           processor=DecoupledAttnProcessor(dim, cross_attention_dim,
                                                                            num_face_tokens)))
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")

    def cross_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Keys/values of the cross-attention context (B, T+K, D), one row per batch row."""
        return self.attn2.processor.key_values(self.attn2, context)

    def reference_kv(self, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``attn1``'s keys/values of reference tokens (R, L, C)."""
        return key_values(self.attn1, reference)

    def forward(self, x, context=None, frames: int = 1, segments=None, reference=None, *, cross_kv=None,
                reference_kv=None):
        """x (B*frames, L, C); context (B, T+K, D) or its ``cross_kv``; reference tokens (R, L, C) or their
        ``reference_kv``, read as ``segments`` say -> (output, norm1 output)."""
        n = self.norm1(x)
        if reference_kv is None and reference is not None and segments:
            reference_kv = self.reference_kv(reference.to(n.dtype))
        x = reference_self_attention(self.attn1, n, segments, reference_kv) + x
        kv = cross_kv if cross_kv is not None else self.cross_kv(context)
        x = self.attn2.processor.attend(self.attn2, self.norm2(x), kv, frames) + x
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

    @property
    def block(self) -> SpatialTransformerBlock:
        return self.transformer_blocks[0]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """GroupNorm and ``proj_in`` of (N, C, h, w) -> tokens (N, h*w, C)."""
        n_, c, h, w = x.shape
        return self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(n_, h * w, c)

    def norm1_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Only the block's ``norm1`` output (N, h*w, C) — what the ReferenceNet records."""
        return self.block.norm1(self.tokens(x))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, frames: int = 1, segments=None,
                reference: torch.Tensor | None = None, cross_kv=None, reference_kv=None):
        """x (N, C, h, w), N = B*frames; context (B, T+K, D) (or ``cross_kv``) -> (output (N, C, h, w), norm1
        tokens (N, h*w, C)). reference: (R, h*w, C) reference tokens (or their ``reference_kv``) appended to the
        self-attention keys of the frame rows as ``segments`` (of :func:`reference_segments`) say."""
        n_, c, h, w = x.shape
        tokens, n = self.block(self.tokens(x), context, frames, segments, reference, cross_kv=cross_kv,
                               reference_kv=reference_kv)
        out = self.proj_out(tokens.reshape(n_, h, w, c).permute(0, 3, 1, 2).contiguous())
        return out + x, n
