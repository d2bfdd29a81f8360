"""FaceLocator (spec §1.4): a small conv net encoding the face-region mask, added to the UNet's ``conv_in`` output."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FaceLocator(nn.Module):
    def __init__(self, out_channels: int = 320, in_channels: int = 3,
                 block_out_channels: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1)
        blocks = []
        for c_in, c_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(block_out_channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H/8, W/8); a (B, 3, F, H, W) video is encoded per frame -> (B, C, F, h, w)."""
        if x.ndim == 5:
            b, c, f, hh, ww = x.shape
            out = self(x.transpose(1, 2).reshape(b * f, c, hh, ww))
            return out.reshape(b, f, *out.shape[1:]).transpose(1, 2)
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)
