"""Token projections (spec §1.5, §1.6): face embedding -> face tokens, wav2vec2 windows -> audio tokens."""
from __future__ import annotations

import torch
from torch import nn


class ImageProj(nn.Module):
    """Identity embedding ``(B, 512)`` -> ``(B, num_tokens, dim)`` (Linear, reshape, LayerNorm)."""

    def __init__(self, dim: int = 768, embedding_dim: int = 512, num_tokens: int = 4):
        super().__init__()
        self.num_tokens = num_tokens
        self.dim = dim
        self.proj = nn.Linear(embedding_dim, num_tokens * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, face_emb: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(face_emb).reshape(-1, self.num_tokens, self.dim))


class AudioProj(nn.Module):
    """Audio windows ``(B, F, window, layers, channels)`` -> ``(B, F, context_tokens, output_dim)``."""

    def __init__(self, window: int = 5, layers: int = 12, channels: int = 768, intermediate_dim: int = 512,
                 output_dim: int = 768, context_tokens: int = 32):
        super().__init__()
        self.context_tokens = context_tokens
        self.output_dim = output_dim
        self.input_dim = window * layers * channels
        self.proj1 = nn.Linear(self.input_dim, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if windows.ndim != 5 or windows[0, 0].numel() != self.input_dim:
            raise ValueError(f"audio windows must be (B, F, window, layers, channels) with "
                             f"window*layers*channels = {self.input_dim}; got {tuple(windows.shape)}")
        b, f = windows.shape[:2]
        x = torch.relu(self.proj1(windows.reshape(b * f, self.input_dim)))
        x = torch.relu(self.proj2(x))
        x = self.norm(self.proj3(x).reshape(b * f, self.context_tokens, self.output_dim))
        return x.reshape(b, f, self.context_tokens, self.output_dim)
