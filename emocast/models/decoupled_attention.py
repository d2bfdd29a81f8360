"""Decoupled text/face cross-attention (spec §3): the attention processor of every ``attn2``.

The context is one tensor of ``T + K`` tokens: the first ``T`` (CLIP text) go through the attention's own
``to_k``/``to_v`` (the pretrained SD projections), the last ``K`` (face identity) through this processor's
``to_k_ip.0``/``to_v_ip.0``. One shared query, two independent softmax attentions, results added (face
scale 1.0), then the shared ``to_out``. The processor is an ``nn.Module`` so its weights live at
``attn2.processor.to_k_ip.0.weight`` — the released checkpoint's names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, use_xformers: bool = False):
    """Multi-head attention on ``(B, N, inner)`` projections -> ``(B, Nq, inner)`` (SDPA, or xformers on CUDA)."""
    if use_xformers:
        import xformers.ops  # optional GPU dependency, checked by emocast.models.attention_backend

        b, n, d = q.shape
        split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, d // heads)  # noqa: E731
        out = xformers.ops.memory_efficient_attention(split(q), split(k), split(v))
        return out.reshape(b, n, d)
    out = F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads), _heads(v, heads))
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], q.shape[2])


class DecoupledAttnProcessor(nn.Module):
    """Attention processor: text tokens through ``attn.to_k/to_v``, the last ``num_tokens`` through ``to_k_ip/to_v_ip``."""

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_tokens: int = 4, scale: float = 1.0):
        super().__init__()
        self.num_tokens = num_tokens
        self.scale = scale
        self.use_xformers = False
        self.to_k_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])
        self.to_v_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        if encoder_hidden_states is None or encoder_hidden_states.shape[1] <= self.num_tokens:
            raise ValueError(f"decoupled cross-attention needs text tokens followed by {self.num_tokens} face tokens")
        if attention_mask is not None:
            raise ValueError("decoupled cross-attention does not take an attention mask")
        text = encoder_hidden_states[:, : -self.num_tokens]
        face = encoder_hidden_states[:, -self.num_tokens:]
        query = attn.to_q(hidden_states)
        out = attention(query, attn.to_k(text), attn.to_v(text), attn.heads, self.use_xformers)
        face_out = attention(query, self.to_k_ip[0](face), self.to_v_ip[0](face), attn.heads, self.use_xformers)
        out = out + self.scale * face_out
        return attn.to_out[1](attn.to_out[0](out))
