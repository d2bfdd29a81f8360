"""Classifier-free-guidance dropout: which conditions each training sample loses.

At inference the unconditional CFG row drops *everything together* (text → empty prompt, face identity →
``imageproj(0)``, reference tokens, face-region feature, audio → zero tokens; spec §8.3). Training drops
each condition independently per sample (so the model also learns partial conditioning) and, with
probability ``all``, every condition at once (the exact unconditional row the sampler uses).

Hallo drew one coin per *batch* (spec §9.2); here the draws are per sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError

CONDITIONS = ("reference", "audio", "text", "face", "face_region")


@dataclass
class DropMasks:
    """Boolean ``(B,)`` masks, ``True`` = this sample *keeps* the condition."""

    reference: torch.Tensor
    audio: torch.Tensor
    text: torch.Tensor
    face: torch.Tensor
    face_region: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {c: getattr(self, c) for c in CONDITIONS}


def _rate(rates, name) -> float:
    value = float(rates.get(name, 0.0) or 0.0)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"dropout.{name}={value} must be a probability in [0, 1]")
    return value


def draw_drop_masks(batch: int, rates, generator: torch.Generator) -> DropMasks:
    """Per-sample keep masks from ``rates`` (a mapping with keys of :data:`CONDITIONS` and ``all``).

    Drawn on the CPU from ``generator`` in a fixed order, so a resumed run reproduces the same draws.
    """
    unknown = set(rates.keys()) - set(CONDITIONS) - {"all"}
    if unknown:
        raise ConfigError(f"unknown dropout key(s) {sorted(unknown)}: allowed are {list(CONDITIONS) + ['all']}")
    drop_all = torch.rand(batch, generator=generator) < _rate(rates, "all")
    keep = {}
    for name in CONDITIONS:
        dropped = torch.rand(batch, generator=generator) < _rate(rates, name)
        keep[name] = ~(dropped | drop_all)
    return DropMasks(**keep)


def apply_prompt_dropout(prompts: list[str], keep_text: torch.Tensor) -> list[str]:
    """The empty prompt ``""`` (what the sampler's unconditional row encodes) where the text is dropped."""
    return [p if bool(k) else "" for p, k in zip(prompts, keep_text.tolist())]


def zero_rows(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x`` with the rows of dropped samples set to zero (differentiable, no in-place write)."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return x * keep.to(device=x.device, dtype=x.dtype).reshape(shape)
