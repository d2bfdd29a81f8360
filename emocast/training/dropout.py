"""Classifier-free-guidance dropout: which conditions each training sample loses.

At inference the unconditional CFG row drops *everything together* (text → empty prompt, face identity →
``imageproj(0)``, reference tokens, face-region feature, audio → zero tokens; spec §8.3). Training drops
each condition independently per sample (so the model also learns partial conditioning) and, with
probability ``all``, every condition at once (the exact unconditional row the sampler uses). What a dropped
condition becomes is decided in one place, :mod:`emocast.pipelines.conditioning`; this module only draws the
per-sample :class:`~emocast.pipelines.conditioning.Keep` masks.

Hallo drew one coin per *batch* (spec §9.2); here the draws are per sample.
"""
from __future__ import annotations

import torch

from ..pipelines.conditioning import CONDITIONS, Keep


def draw_keep(batch: int, rates, generator: torch.Generator) -> Keep:
    """Per-sample keep masks from ``rates`` (a ``DropoutConfig``: one probability per condition and ``all``).

    Drawn on the CPU from ``generator`` in a fixed order, so a resumed run reproduces the same draws.
    """
    drop_all = torch.rand(batch, generator=generator) < float(rates.all)
    keep = {}
    for name in CONDITIONS:
        dropped = torch.rand(batch, generator=generator) < float(getattr(rates, name))
        keep[name] = ~(dropped | drop_all)
    return Keep(**keep)
