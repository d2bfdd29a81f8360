"""The one denoising loop: a model function, a scheduler, initial latents, and a per-step callback.

The sampler (every clip of a video), training's validation previews and the benchmark all run :func:`denoise`.
The model function decides what runs at each step (:class:`GuidedPrediction`: the step's rows through the network
and their classifier-free-guidance mix); the callback sees every step (progress bars, previews, timing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from . import conditioning


@dataclass
class StepState:
    """What a callback gets after each step."""

    index: int  # 0-based step number
    steps: int  # steps in this loop
    timestep: torch.Tensor
    latents: torch.Tensor  # after the scheduler step
    prediction: torch.Tensor  # the (guided) model prediction of this step


class GuidedPrediction:
    """The model function of a denoising loop: the step's rows ([unconditional, conditional], or one conditional
    row) through the network, mixed by classifier-free guidance with ``cfg_scale``. A consistency student
    (:attr:`~emocast.models.EmoCASTNet.is_student`) folds the guidance in: its one row gets ``cfg_scale`` as
    input and its output is the guided prediction."""

    def __init__(self, net, video: conditioning.VideoConditioning, clip: conditioning.ClipConditioning,
                 cfg_scale: float = 1.0, audio_weights: Sequence[float] = (1.0, 1.0, 1.0)):
        self.net, self.video, self.clip = net, video, clip
        self.cfg_scale, self.audio_weights = float(cfg_scale), tuple(float(w) for w in audio_weights)

    def __call__(self, latents: torch.Tensor, timestep, index: int) -> torch.Tensor:
        if self.net.is_student:  # the guided prediction itself, guidance scale in
            return conditioning.model_output(self.net, self.video, self.clip, latents, timestep,
                                             audio_weights=self.audio_weights, guidance_scale=self.cfg_scale)
        out = conditioning.model_output(self.net, self.video, self.clip, latents, timestep,
                                        audio_weights=self.audio_weights)
        return conditioning.guide(out, self.cfg_scale)


def denoise(predict: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor], scheduler, latents: torch.Tensor,
            steps: int, *, callback: Callable[[StepState], None] | None = None, progress: bool = False,
            desc: str = "steps") -> torch.Tensor:
    """Run ``steps`` scheduler steps from ``latents`` (pure noise, scaled by the scheduler's ``init_noise_sigma``
    here); ``predict(latents, t, index)`` returns the model's (guided) prediction. Returns the final latents."""
    scheduler.set_timesteps(int(steps), device=latents.device)
    latents = latents * scheduler.init_noise_sigma
    timesteps = scheduler.timesteps
    for i, t in enumerate(tqdm(timesteps, desc=desc, unit="step", leave=False, disable=not progress)):
        prediction = predict(latents, t, i)
        latents = scheduler.step(prediction, t, latents).prev_sample
        if callback is not None:
            callback(StepState(i, len(timesteps), t, latents, prediction))
    return latents
