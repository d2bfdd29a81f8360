"""The audio module of the denoising UNet with EmoCAST's emotive audio attention (spec §2.7, §4).

Per frame: self-attention; the 77 text tokens query the frame's audio tokens (``attn_audioemo``, post-LayerNorm,
no residual) and the result is the context of three mask-gated cross-attentions (pose = background mask, face,
lip), each followed by a zero-initialised 1x1 conv and weighted by ``audio_weights``; then a GEGLU feed-forward.

The emotive context depends on the text and the audio only, not on the latents: :meth:`EmoAudioBlock.context_kv`
computes it and the three branches' keys/values from it, once per clip at inference (``kv`` argument), or inline.
The text queries are projected once per batch row and shared by the row's frames.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from .attention_ops import attend, check_plain, key_values

KV = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (keys, values) of the three branches, each (N, 77, D)


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
        self.attn_audioemo = check_plain(Attention(query_dim=text_dim, cross_attention_dim=audio_dim, heads=heads,
                                                   dim_head=emo_head_dim, bias=False))
        self.postnorm_audioemo = nn.LayerNorm(text_dim)
        for i in range(3):
            self.add_module(f"attn2_{i}", check_plain(Attention(query_dim=dim, cross_attention_dim=text_dim,
                                                                heads=heads, dim_head=dim // heads, bias=False)))
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    @property
    def branches(self):
        return ((self.attn2_0, self.zero_conv_full), (self.attn2_1, self.zero_conv_face),
                (self.attn2_2, self.zero_conv_lip))

    def emotive_context(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Text tokens (B, 77, Dt), one row per batch row, query audio tokens (B*F, A, Da), one row per frame
        -> LayerNorm'd (B*F, 77, Dt)."""
        attn = self.attn_audioemo
        frames = audio.shape[0] // text.shape[0]
        q = attn.to_q(text)
        q = q.unsqueeze(1).expand(-1, frames, -1, -1).reshape(audio.shape[0], *q.shape[1:])
        k, v = key_values(attn, audio)
        return self.postnorm_audioemo(attend(attn, q, k, v))

    def context_kv(self, text: torch.Tensor, audio: torch.Tensor) -> KV:
        """The three branches' keys/values of the emotive context (what does not change over a clip's steps)."""
        context = self.emotive_context(text, audio)
        return tuple(key_values(attn, context) for attn, _ in self.branches)

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None, text: torch.Tensor | None,
                masks: Sequence[torch.Tensor], audio_weights: Sequence[float], kv: KV | None = None) -> torch.Tensor:
        """x (N, HW, D), N = B*F; audio (N, A, Da); text (B, 77, Dt); masks (full, face, lip) each (N, HW);
        kv: :meth:`context_kv` of (text, audio) when precomputed (then audio and text are not read)."""
        x = self.attn1(self.norm1(x)) + x
        if kv is None:
            kv = self.context_kv(text, audio)
        n = self.norm2(x)
        branches = []
        for (attn, conv), (k, v), mask in zip(self.branches, kv, masks):
            y = attend(attn, attn.to_q(n), k, v) * mask.to(n.dtype).unsqueeze(-1)
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

    @property
    def block(self) -> EmoAudioBlock:
        return self.transformer_blocks[0]

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None, text: torch.Tensor | None,
                masks: Sequence[torch.Tensor], audio_weights: Sequence[float], kv: KV | None = None) -> torch.Tensor:
        """x (N, Cin, h, w) -> same; the other arguments as :meth:`EmoAudioBlock.forward`."""
        n_, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x))
        d = tokens.shape[1]
        tokens = tokens.permute(0, 2, 3, 1).reshape(n_, h * w, d)
        tokens = self.block(tokens, audio, text, masks, audio_weights, kv)
        out = self.proj_out(tokens.reshape(n_, h, w, d).permute(0, 3, 1, 2).contiguous())
        return out + x
