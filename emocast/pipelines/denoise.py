"""The one denoising loop: a model function, a scheduler, initial latents, and a per-step callback.

The sampler (every clip of a video), training's validation previews and the benchmark all run :func:`denoise`.
The model function decides what runs at each step (:class:`GuidedPrediction`: the rows a step's
:class:`~emocast.pipelines.plan.PlanStep` names through the network — all of the UNet, or its shallow part
around reused deep features — and their guidance mix); the callback sees every step (progress bars, previews,
timing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..models.step_cache import take_rows
from ..models.unet_blocks import DeepFeatures
from . import conditioning
from .plan import PlanStep


@dataclass
class StepState:
    """What a callback gets after each step."""

    index: int  # 0-based step number
    steps: int  # steps in this loop
    timestep: torch.Tensor
    latents: torch.Tensor  # after the scheduler step
    prediction: torch.Tensor  # the (guided) model prediction of this step
    video: "conditioning.VideoConditioning | None" = None  # what the step was conditioned on (the sampler's clips)


class GuidedPrediction:
    """The model function of a denoising loop: at step ``index`` the rows of ``plan[index]`` through the network,
    mixed by :func:`~emocast.pipelines.conditioning.guide` with the step's scales.

    Without a plan every step runs all the video's rows ([unconditional, conditional] with CFG, mixed with
    ``cfg_scale``, or the one conditional row). ``deep_cache_depth``: the UNet levels a DeepCache step
    (``reuse_deep``) recomputes. A consistency student (:attr:`~emocast.models.EmoCASTNet.is_student`) folds the
    guidance in: its one row gets ``cfg_scale`` as input and its output is the guided prediction.
    """

    def __init__(self, net, video: conditioning.VideoConditioning, clip: conditioning.ClipConditioning,
                 cfg_scale: float = 1.0, audio_weights: Sequence[float] = (1.0, 1.0, 1.0),
                 plan: Sequence[PlanStep] | None = None, deep_cache_depth: int = 1):
        self.net, self.video, self.clip = net, video, clip
        self.cfg_scale, self.audio_weights = float(cfg_scale), tuple(float(w) for w in audio_weights)
        self.plan = tuple(plan) if plan is not None else None
        self.deep_cache_depth = int(deep_cache_depth)
        self._deep: tuple[tuple[int, ...], torch.Tensor] | None = None  # rows and features of the last full step
        self._uses_deep = self.plan is not None and any(s.reuse_deep for s in self.plan)

    def step(self, index: int) -> PlanStep:
        if self.plan is not None:
            return self.plan[index]
        rows = tuple(range(self.video.batch))
        return PlanStep(rows, (self.cfg_scale,) * (len(rows) - 1))

    def __call__(self, latents: torch.Tensor, timestep, index: int) -> torch.Tensor:
        step = self.step(index)
        deep = None
        if step.reuse_deep:
            if self._deep is None:
                raise ValueError(f"plan step {index} reuses deep features but no full step ran before it")
            full_rows, features = self._deep
            positions = [full_rows.index(r) for r in step.rows]
            deep = DeepFeatures(self.deep_cache_depth, take_rows(features, positions, len(full_rows)))
        elif self._uses_deep:
            deep = DeepFeatures(self.deep_cache_depth)
        out = conditioning.model_output(self.net, self.video, self.clip, latents, timestep,
                                        audio_weights=self.audio_weights, rows=step.rows, deep=deep,
                                        guidance_scale=self.cfg_scale if self.net.is_student else None)
        if deep is not None and not step.reuse_deep:
            self._deep = (step.rows, deep.features)
        return conditioning.guide(out, step.scales)


def denoise(predict: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor], scheduler, latents: torch.Tensor,
            steps: int, *, callback: Callable[[StepState], None] | None = None, progress: bool = False,
            desc: str = "steps") -> torch.Tensor:
    """Run ``steps`` scheduler steps from ``latents`` (pure noise, scaled by the scheduler's ``init_noise_sigma``
    here); ``predict(latents, t, index)`` returns the model's (guided) prediction. Returns the final latents."""
    scheduler.set_timesteps(int(steps), device=latents.device)
    latents = latents * scheduler.init_noise_sigma
    timesteps = scheduler.timesteps
    for i, t in enumerate(tqdm(timesteps, desc=desc, unit="step", leave=False, disable=not progress)):
        prediction = predict(scheduler.scale_model_input(latents, t), t, i)
        latents = scheduler.step(prediction, t, latents).prev_sample
        if callback is not None:
            callback(StepState(i, len(timesteps), t, latents, prediction))
    return latents

