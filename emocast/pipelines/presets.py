"""Inference presets: named bundles of config keys (``--preset NAME``), each of which is also a key of its own.

A preset's values sit under every explicit setting: the config schema's defaults, then the preset, then the -c
YAML, the flags and the ``key=value`` overrides (``--preset fast --steps 30`` samples the fast preset at 30
steps). ``--print_config`` shows the result.

=========  ============================================================================================  ==========
preset     what it sets                                                                                  UNet FLOPs
=========  ============================================================================================  ==========
release    nothing: DDIM, 40 steps, CFG 3.5 on every step — the released settings, the released outputs   1
fast       DPM-Solver++ 20 steps, guidance on the first half of the steps, DeepCache every 2nd step      0.28
faster     DPM-Solver++ 10 steps, guidance on the first 40 % of the steps, DeepCache every 2nd step       0.13
turbo      a consistency-distilled student (card ``sampler: consistency``): its card's 1-8 steps, one row  ≤ 0.05
=========  ============================================================================================  ==========

(FLOPs per clip relative to ``release``, counted at 512x512 and 16 frames: ``scripts/benchmark.py``.)

A preset also names the checkpoint family it samples (``sampler``, the checkpoint card's field): a checkpoint whose
card says another sampler is refused with one message (a student sampled by a DDIM preset: a warning).
New presets are added with :func:`register`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    values: Mapping[str, Any] = field(default_factory=dict)  # InferenceConfig keys (dotted) -> value
    sampler: str = "ddim"  # the checkpoint card's sampler this preset is for


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} is already registered")
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown preset {name!r} (choose one of {', '.join(PRESETS)}){hint}") from None


def presets_for(sampler: str) -> list[str]:
    return [p.name for p in PRESETS.values() if p.sampler == sampler]


RELEASE = register(Preset("release", "the released settings and outputs: DDIM, 40 steps, CFG on every step"))
FAST = register(Preset(
    "fast", "DPM-Solver++ at 20 steps, guidance on the first half of the steps, DeepCache every 2nd step",
    {"solver": "dpmsolver++", "inference_steps": 20, "guidance_interval": [0.0, 0.5], "deep_cache_interval": 2}))
FASTER = register(Preset(
    "faster", "DPM-Solver++ at 10 steps, guidance on the first 40 % of the steps, DeepCache every 2nd step",
    {"solver": "dpmsolver++", "inference_steps": 10, "guidance_interval": [0.0, 0.4], "deep_cache_interval": 2}))
TURBO = register(Preset(
    "turbo", "a consistency-distilled student (scripts/train_distill.py): its card's 1-8 steps, one row with the "
    "guidance scale as input", {}, sampler="consistency"))
