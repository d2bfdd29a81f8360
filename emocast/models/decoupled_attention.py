"""Decoupled text/face cross-attention (spec §3): the attention processor of every ``attn2``.

The context is one tensor of ``T + K`` tokens: the first ``T`` (CLIP text) go through the attention's own
``to_k``/``to_v`` (the pretrained SD projections), the last ``K`` (face identity) through this processor's
``to_k_ip.0``/``to_v_ip.0``. One shared query, two independent softmax attentions, results added (face
scale 1.0), then the shared ``to_out``. The processor is an ``nn.Module`` so its weights live at
``attn2.processor.to_k_ip.0.weight`` — the released checkpoint's names.

The context is the same for every frame of a video row, so the blocks project it once per row
(:meth:`DecoupledAttnProcessor.key_values`, cached for a whole clip at inference) and let the queries of all the
row's frames attend to it in one call (:meth:`DecoupledAttnProcessor.attend` with ``frames``): the same
per-query softmax as one call per frame.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention_ops import multihead, output


class DecoupledAttnProcessor(nn.Module):
    """Attention processor: text tokens through ``attn.to_k/to_v``, the last ``num_tokens`` through ``to_k_ip/to_v_ip``."""

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_tokens: int = 4, scale: float = 1.0):
        super().__init__()
        self.num_tokens = num_tokens
        self.scale = scale
        self.use_xformers = False
        self.to_k_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])
        self.to_v_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])

    def key_values(self, attn, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``context`` (B, T+K, D) -> (text keys, text values (B, T, C), face keys, face values (B, K, C))."""
        if context is None or context.shape[1] <= self.num_tokens:
            raise ValueError(f"decoupled cross-attention needs text tokens followed by {self.num_tokens} face tokens")
        text, face = context[:, : -self.num_tokens], context[:, -self.num_tokens:]
        return attn.to_k(text), attn.to_v(text), self.to_k_ip[0](face), self.to_v_ip[0](face)

    def attend(self, attn, hidden_states: torch.Tensor, kv: tuple[torch.Tensor, ...], frames: int = 1):
        """hidden_states (B*frames, L, C) (frame fastest) against ``kv`` of :meth:`key_values` with B rows."""
        n, length, c = hidden_states.shape
        query = attn.to_q(hidden_states).reshape(n // frames, frames * length, -1)
        k_text, v_text, k_face, v_face = kv
        out = multihead(query, k_text, v_text, attn.heads, self.use_xformers)
        face_out = multihead(query, k_face, v_face, attn.heads, self.use_xformers)
        out = out + self.scale * face_out
        return output(attn, out.reshape(n, length, -1))

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        if attention_mask is not None:
            raise ValueError("decoupled cross-attention does not take an attention mask")
        return self.attend(attn, hidden_states, self.key_values(attn, encoder_hidden_states))
