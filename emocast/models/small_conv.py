"""3x3 convolutions on small feature maps on the CPU as one GEMM (im2col), the same math as ``nn.Conv2d``.

On the CPU, PyTorch's fp32 3x3 convolution (oneDNN's direct kernel) is weight-bandwidth bound when the output has
few positions: the UNet's lowest levels at small resolutions (2x2 and 4x4 maps at 128x128 pixels) run 2-2.5x
slower than ``unfold`` + one matrix multiply over the same weights (measured in docs/benchmarks.md, one thread,
[8, 1280, 2, 2] -> 1280: 85 ms vs 35 ms; [8, 1280, 4, 4]: 120 ms vs 100 ms; from 8x8 maps on, or more than
:data:`MAX_ROWS` output positions in all, the direct kernel is faster and is kept). The GEMM path is taken only
on the CPU, in fp32, for stride 1, padding 1, no dilation or groups — everything else is ``nn.Conv2d``'s
``forward``, unchanged. On a GPU nothing changes.

:func:`use_small_map_gemm` switches the 3x3 convolutions of a model to :class:`SmallMapConv2d` in place (a
subclass of ``nn.Conv2d``: same parameters, same state-dict names).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: largest number of output positions (batch x height x width) that takes the GEMM path
MAX_ROWS = 128


def small_map_gemm_applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and x.shape[0] * x.shape[2] * x.shape[3] <= MAX_ROWS)


def conv3x3_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for a 3x3 kernel as im2col + one matrix multiply."""
    n, c, h, w = x.shape
    out = weight.shape[0]
    cols = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(n * h * w, c * 9)  # (N*L, C*9), channel-major
    flat = weight.reshape(out, c * 9).t()
    y = torch.addmm(bias, cols, flat) if bias is not None else cols @ flat
    return y.reshape(n, h * w, out).transpose(1, 2).reshape(n, out, h, w)


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes 3x3 convolutions of small CPU feature maps as one GEMM (see the module)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        if small_map_gemm_applies(self, input):
            return conv3x3_gemm(input, weight, bias)
        return super()._conv_forward(input, weight, bias)


def use_small_map_gemm(model: nn.Module) -> int:
    """Switch every plain 3x3 ``nn.Conv2d`` of ``model`` to :class:`SmallMapConv2d` in place; returns how many."""
    n = 0
    for module in model.modules():
        if type(module) is nn.Conv2d and module.kernel_size == (3, 3):
            module.__class__ = SmallMapConv2d
            n += 1
    return n
