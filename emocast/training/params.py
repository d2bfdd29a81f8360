"""Trainable parameters of a training run, by the named groups of
:func:`emocast.models.parameter_groups.trainable_parameter_groups` (``train.trainable`` in the configs):

``reference_unet``, ``denoising_spatial``, ``ip_adapter`` (decoupled face attention, both UNets),
``motion_modules``, ``audio_modules``, ``audio_emo`` (emotive audio attention), ``audioproj``, ``imageproj``,
``face_locator``. The union of the listed groups is trained; everything else is frozen.
"""
from __future__ import annotations

from typing import Iterable

import torch

from ..errors import ConfigError
from ..models.parameter_groups import GROUPS, trainable_parameter_groups

NEVER_RUN = "unused_motion_modules"
TRAINABLE = tuple(g for g in GROUPS if g != NEVER_RUN)


def check_groups(groups: Iterable[str]) -> list[str]:
    """``groups`` as a list; a :class:`ConfigError` naming an unknown or never-trainable group."""
    import difflib

    groups = list(groups)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], TRAINABLE, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown trainable group(s) {unknown} in train.trainable{hint}; choose from "
                          f"{list(TRAINABLE)}")
    if NEVER_RUN in groups:
        raise ConfigError(f"train.trainable lists {NEVER_RUN!r}: those motion modules never run (spec §2.4), so they "
                          f"would never get a gradient; choose from {list(TRAINABLE)}")
    if not groups:
        raise ConfigError(f"train.trainable is empty: list at least one of {list(TRAINABLE)}")
    return groups


def group_parameters(net: torch.nn.Module, groups: Iterable[str]) -> list[tuple[str, torch.nn.Parameter]]:
    """``[(name, param)]`` of ``net`` in any of ``groups``."""
    groups = check_groups(groups)
    return [np for g, params in trainable_parameter_groups(net).items() if g in groups for np in params]


def set_trainable(net: torch.nn.Module, groups: Iterable[str]) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze ``net`` except ``groups``; returns the trainable ``[(name, param)]``."""
    chosen = group_parameters(net, groups)
    net.requires_grad_(False)
    for _, p in chosen:
        p.requires_grad_(True)
    return chosen


def count(params) -> int:
    return sum(p.numel() for _, p in params)
