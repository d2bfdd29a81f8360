"""Named groups of trainable parameters and freezing.

Group names used by ``train.trainable`` in the training configs (keys of the ``net.pth`` layout):

| group | parameters |
|---|---|
| ``reference_unet`` | all of ``reference_unet.`` (its decoupled face attention included) |
| ``denoising_spatial`` | ``denoising_unet.`` except ``motion_modules`` and ``audio_modules`` (resnets, spatial transformers with the decoupled text/face cross-attention, conv_in/out, time embedding) |
| ``face_attention`` | the face branch of the decoupled cross-attention (``attn2.processor.to_k_ip/to_v_ip``) in both UNets |
| ``motion_modules`` | AnimateDiff motion modules of the denoising UNet |
| ``audio_modules`` | Hallo audio modules incl. the emotive audio attention |
| ``emotive_audio_attention`` | only ``attn_audioemo`` + ``postnorm_audioemo`` (the EmoCAST addition) |
| ``face_locator`` / ``imageproj`` / ``audioproj`` | those children |

Groups may overlap; the union is trained, everything else is frozen (``requires_grad=False``).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..errors import ConfigError

_SPATIAL_EXCLUDE = (".motion_modules.", ".audio_modules.")

GROUPS: dict[str, Callable[[str], bool]] = {
    "reference_unet": lambda k: k.startswith("reference_unet."),
    "denoising_spatial": lambda k: k.startswith("denoising_unet.") and not any(s in k for s in _SPATIAL_EXCLUDE),
    "face_attention": lambda k: ".to_k_ip." in k or ".to_v_ip." in k,
    "motion_modules": lambda k: k.startswith("denoising_unet.") and ".motion_modules." in k,
    "audio_modules": lambda k: k.startswith("denoising_unet.") and ".audio_modules." in k,
    "emotive_audio_attention": lambda k: ".attn_audioemo." in k or ".postnorm_audioemo." in k,
    "face_locator": lambda k: k.startswith("face_locator."),
    "imageproj": lambda k: k.startswith("imageproj."),
    "audioproj": lambda k: k.startswith("audioproj."),
}


def group_parameters(net: torch.nn.Module, groups: Iterable[str]) -> list[tuple[str, torch.nn.Parameter]]:
    """``[(name, param)]`` of ``net`` in any of ``groups`` (state-dict order)."""
    groups = list(groups)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ConfigError(f"unknown trainable group(s) {unknown} in train.trainable; choose from {sorted(GROUPS)}")
    tests = [GROUPS[g] for g in groups]
    return [(n, p) for n, p in net.named_parameters() if any(t(n) for t in tests)]


def set_trainable(net: torch.nn.Module, groups: Iterable[str]) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze ``net`` except ``groups``; returns the trainable ``[(name, param)]``."""
    net.requires_grad_(False)
    chosen = group_parameters(net, groups)
    for _, p in chosen:
        p.requires_grad_(True)
    return chosen


def count(params) -> int:
    return sum(p.numel() for _, p in params)
