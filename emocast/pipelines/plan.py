"""The per-step plan of a denoising loop: which conditioning rows run at each step, how their predictions are
mixed, and whether the deep UNet features are recomputed or reused.

A video's conditioning has rows (:class:`~emocast.pipelines.conditioning.Keep`: with classifier-free guidance
row 0 drops every condition and row 1 keeps them all). A :class:`PlanStep` names the rows that run at one step and
the guidance scales that mix their predictions ``o_0, o_1, ..., o_n`` along the chain::

    v = o_0 + s_1 (o_1 - o_0) + s_2 (o_2 - o_1) + ... + s_n (o_n - o_{n-1})

(:func:`~emocast.pipelines.conditioning.guide`). Two rows and one scale are the release's CFG
``uncond + s (cond - uncond)``; one row and no scale is the plain conditional prediction. Three rows
[nothing, audio only, everything] with two scales are multi-condition guidance with separate audio and emotion
scales. :func:`build_plan` makes the plan of a sampler setting:

- ``guidance_interval`` (start, end): guidance on the steps ``start <= i / steps < end`` only; the other steps run
  the last row alone (one UNet row instead of all of them);
- ``deep_cache_interval`` k > 1: DeepCache (Ma et al., 2023) — the deep part of the UNet runs at every k-th step;
  the steps in between reuse its output and recompute only the ``deep_cache_depth`` shallowest levels. A step
  whose rows were not all run at the last full step is promoted to a full step.

:class:`~emocast.pipelines.denoise.GuidedPrediction` runs a plan; the denoising loop (:func:`~emocast.pipelines
.denoise.denoise`) and the scheduler do not see it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import ConfigError


@dataclass(frozen=True)
class PlanStep:
    rows: tuple[int, ...]  # conditioning rows run at this step, in chain order
    scales: tuple[float, ...] = ()  # len(rows) - 1 guidance scales along the chain
    reuse_deep: bool = False  # DeepCache: reuse the deep features of the last full step

    def __post_init__(self):
        if not self.rows:
            raise ValueError("a plan step runs at least one row")
        if len(self.scales) != len(self.rows) - 1:
            raise ValueError(f"{len(self.rows)} rows need {len(self.rows) - 1} guidance scales, got {self.scales}")


def check_interval(interval: Sequence[float], what: str = "guidance_interval") -> tuple[float, float]:
    try:
        start, end = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be two numbers [start, end], got {interval!r}") from None
    if not 0.0 <= start <= end <= 1.0:
        raise ConfigError(f"{what} must satisfy 0 <= start <= end <= 1 (fractions of the steps), got "
                          f"[{start}, {end}]")
    return start, end


def build_plan(steps: int, rows: Sequence[int], scales: Sequence[float] = (), *,
               guidance_interval: Sequence[float] = (0.0, 1.0), deep_cache_interval: int = 1) -> tuple[PlanStep, ...]:
    """The plan of ``steps`` steps over the conditioning ``rows`` (chain order, the fully conditional row last)
    mixed with ``scales`` (``len(rows) - 1`` of them); see the module docstring for the two options."""
    rows, scales = tuple(int(r) for r in rows), tuple(float(s) for s in scales)
    PlanStep(rows, scales)  # checks the counts
    start, end = check_interval(guidance_interval)
    if int(deep_cache_interval) < 1:
        raise ConfigError(f"deep_cache_interval must be at least 1 (1 = off), got {deep_cache_interval}")
    plan, full_rows = [], None
    for i in range(int(steps)):
        guided = len(rows) > 1 and start <= i / steps < end
        step_rows, step_scales = (rows, scales) if guided else (rows[-1:], ())
        reuse = (deep_cache_interval > 1 and i % deep_cache_interval != 0 and full_rows is not None
                 and set(step_rows) <= set(full_rows))
        if not reuse:
            full_rows = step_rows
        plan.append(PlanStep(step_rows, step_scales, reuse))
    return tuple(plan)


def unet_rows(plan: Sequence[PlanStep]) -> tuple[int, int]:
    """(rows run with the full UNet, rows run with DeepCache's shallow part) summed over the steps."""
    full = sum(len(s.rows) for s in plan if not s.reuse_deep)
    return full, sum(len(s.rows) for s in plan) - full
