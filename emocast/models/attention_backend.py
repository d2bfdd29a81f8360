"""Attention kernels: PyTorch SDPA by default; xformers optionally, on CUDA only (never required).

``use_xformers(net, True)`` switches every plain attention to diffusers' ``XFormersAttnProcessor`` and the
decoupled text/face processors to xformers kernels — keeping their face projections (diffusers'
``enable_xformers_memory_efficient_attention`` would replace them and drop the IP-Adapter weights, spec §11).
"""
from __future__ import annotations

from diffusers.models.attention_processor import Attention, AttnProcessor2_0, XFormersAttnProcessor
from torch import nn

from ..errors import ConfigError
from .decoupled_attention import DecoupledAttnProcessor


def xformers_available(device) -> bool:
    try:
        import xformers.ops  # noqa: F401
    except Exception:
        return False
    return str(device).startswith("cuda")


def use_xformers(model: nn.Module, enabled: bool = True) -> None:
    """Switch all attentions of ``model`` between xformers (``enabled``) and PyTorch SDPA."""
    if enabled:
        device = next(model.parameters()).device
        if not xformers_available(device):
            raise ConfigError("xformers attention needs a CUDA device and the xformers package "
                              "(pip install 'emocast[gpu]'); disable it to use PyTorch SDPA")
    for module in model.modules():
        if not isinstance(module, Attention):
            continue
        if isinstance(module.processor, DecoupledAttnProcessor):
            module.processor.use_xformers = enabled
        else:
            module.set_processor(XFormersAttnProcessor() if enabled else AttnProcessor2_0())
