"""The audio module of the denoising UNet with EmoCAST's emotive audio attention (spec §2.7, §4).

Per frame: self-attention; the 77 text tokens query the frame's audio tokens (``attn_audioemo``, post-LayerNorm,
no residual) and the result is the context of three mask-gated cross-attentions (pose = background mask, face,
lip), each followed by a zero-initialised 1x1 conv and weighted by ``audio_weights``; then a GEGLU feed-forward.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn


def _zero_conv(dim: int) -> nn.Conv2d:
    conv = nn.Conv2d(dim, dim, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class EmoAudioBlock(nn.Module):
    """``EmoCrossAudioTemporalBasicTransformerBlock`` of the release (key names unchanged)."""

    def __init__(self, dim: int, heads: int, text_dim: int, audio_dim: int, emo_head_dim: int):
        super().__init__()
        self.zero_conv_full = _zero_conv(dim)
        self.zero_conv_face = _zero_conv(dim)
        self.zero_conv_lip = _zero_conv(dim)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.attn_audioemo = Attention(query_dim=text_dim, cross_attention_dim=audio_dim, heads=heads,
                                       dim_head=emo_head_dim, bias=False)
        self.postnorm_audioemo = nn.LayerNorm(text_dim)
        for i in range(3):
            self.add_module(f"attn2_{i}", Attention(query_dim=dim, cross_attention_dim=text_dim, heads=heads,
                                                    dim_head=dim // heads, bias=False))
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    def emotive_context(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Text tokens (N, 77, Dt) query audio tokens (N, A, Da) -> LayerNorm'd (N, 77, Dt)."""
        return self.postnorm_audioemo(self.attn_audioemo(text, audio))

    def forward(self, x: torch.Tensor, audio: torch.Tensor, text: torch.Tensor,
                masks: Sequence[torch.Tensor], audio_weights: Sequence[float]) -> torch.Tensor:
        """x (N, HW, D); audio (N, A, Da); text (N, 77, Dt); masks (full, face, lip) each (N, HW)."""
        x = self.attn1(self.norm1(x)) + x
        context = self.emotive_context(text, audio)
        n = self.norm2(x)
        branches = []
        for attn, conv, mask in zip((self.attn2_0, self.attn2_1, self.attn2_2),
                                    (self.zero_conv_full, self.zero_conv_face, self.zero_conv_lip), masks):
            y = attn(n, context) * mask.to(n.dtype).unsqueeze(-1)
            branches.append(F.linear(y, conv.weight.flatten(1), conv.bias))  # the 1x1 conv, per token
        s_pose, s_face, s_lip = audio_weights
        x = s_pose * branches[0] + s_face * branches[1] + s_lip * branches[2] + x
        return self.ff(self.norm3(x)) + x


class AudioModule(nn.Module):
    """GroupNorm -> 1x1 conv (Cin -> D) -> :class:`EmoAudioBlock` -> 1x1 conv (D -> Cin) -> + residual.

    ``level`` is the mask level (UNet resolution index) this module reads; set at construction.
    """

    def __init__(self, in_channels: int, dim: int, heads: int, text_dim: int, audio_dim: int, emo_head_dim: int,
                 norm_groups: int, level: int):
        super().__init__()
        self.level = level
        self.norm = nn.GroupNorm(norm_groups, in_channels, eps=1e-6)
        self.proj_in = nn.Conv2d(in_channels, dim, 1)
        self.transformer_blocks = nn.ModuleList([EmoAudioBlock(dim, heads, text_dim, audio_dim, emo_head_dim)])
        self.proj_out = nn.Conv2d(dim, in_channels, 1)

    def forward(self, x: torch.Tensor, audio: torch.Tensor, text: torch.Tensor,
                masks: Sequence[torch.Tensor], audio_weights: Sequence[float]) -> torch.Tensor:
        """x (N, Cin, h, w) -> same; the other arguments as :meth:`EmoAudioBlock.forward`."""
        n_, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x))
        d = tokens.shape[1]
        tokens = tokens.permute(0, 2, 3, 1).reshape(n_, h * w, d)
        tokens = self.transformer_blocks[0](tokens, audio, text, masks, audio_weights)
        out = self.proj_out(tokens.reshape(n_, h, w, d).permute(0, 3, 1, 2).contiguous())
        return out + x
