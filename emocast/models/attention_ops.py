"""Attention as separate pieces (projections, the kernel, the output projection) on diffusers ``Attention`` modules.

The blocks call these instead of ``attn(hidden, context)`` where a piece can be computed once and reused: the
keys/values of a context that does not change over the steps of a clip (text, face, reference and audio tokens,
motion-frame features), or queries that only some rows need. The math is that of diffusers' ``AttnProcessor2_0``
for the plain attentions used here (no norms, no residual inside, output rescale 1): ``to_q``/``to_k``/``to_v``,
multi-head scaled-dot-product attention with scale ``1/sqrt(head_dim)``, ``to_out``. The kernel is PyTorch SDPA,
or xformers when :func:`emocast.models.attention_backend.use_xformers` switched the module to it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, XFormersAttnProcessor


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def multihead(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, use_xformers: bool = False):
    """Multi-head attention on ``(B, N, inner)`` projections -> ``(B, Nq, inner)`` (SDPA, or xformers on CUDA)."""
    if use_xformers:
        import xformers.ops  # optional GPU dependency, checked by emocast.models.attention_backend

        b, n, d = q.shape
        split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, d // heads)  # noqa: E731
        out = xformers.ops.memory_efficient_attention(split(q), split(k), split(v))
        return out.reshape(b, n, d)
    out = F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads), _heads(v, heads))
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], q.shape[2])


def uses_xformers(attn: Attention) -> bool:
    processor = attn.processor
    return isinstance(processor, XFormersAttnProcessor) or bool(getattr(processor, "use_xformers", False))


def key_values(attn: Attention, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(to_k(context), to_v(context))``."""
    return attn.to_k(context), attn.to_v(context)


def output(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """``to_out`` (linear, then dropout, which is the identity here)."""
    return attn.to_out[1](attn.to_out[0](x))


def attend(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The attention kernel on projected ``q, k, v`` and the output projection: ``to_out(softmax(qk^T) v)``."""
    return output(attn, multihead(q, k, v, attn.heads, uses_xformers(attn)))


def check_plain(attn: Attention) -> Attention:
    """``attn`` computes exactly ``to_out(attention(to_q(x), to_k(c), to_v(c)))`` (what these pieces assume)."""
    extras = [name for name in ("norm_q", "norm_k", "spatial_norm", "group_norm", "norm_cross")
              if getattr(attn, name, None) is not None]
    if extras or attn.residual_connection or attn.rescale_output_factor != 1.0:
        raise ValueError(f"attention with {extras or 'a residual/rescaled output'} is not supported here")
    return attn
