"""Training noise: the scheduler (schedule choice documented), noise offset, timesteps, noisy latents, v-target.

Beta schedule: the release *samples* with ``"linear"`` betas (0.00085 → 0.012, zero-terminal-SNR rescale,
trailing spacing, v-prediction; spec §8.1), while Hallo *trained* with ``"scaled_linear"`` (spec §11 item 4).
Our default is ``"linear"`` so that training matches inference; the config key ``noise.beta_schedule``
switches it (``scaled_linear`` reproduces Hallo's training schedule).

All random draws take an explicit ``torch.Generator`` so a resumed run redraws exactly the same noise.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..pipelines.scheduler import make_scheduler

BETA_SCHEDULES = ("linear", "scaled_linear")


def make_train_scheduler(beta_schedule: str = "linear", zero_snr: bool = True,
                         prediction_type: str = "v_prediction"):
    """The DDIM scheduler whose ``alphas_cumprod`` defines the forward process used for training."""
    if beta_schedule not in BETA_SCHEDULES:
        raise ConfigError(f"noise.beta_schedule={beta_schedule!r} is not supported: use one of {BETA_SCHEDULES} "
                          "(\"linear\" matches the released sampler)")
    if prediction_type not in ("v_prediction", "epsilon"):
        raise ConfigError(f"noise.prediction_type={prediction_type!r}: use v_prediction (released) or epsilon")
    return make_scheduler(beta_schedule=beta_schedule, rescale_betas_zero_snr=bool(zero_snr),
                          prediction_type=prediction_type)


def sample_noise(latents: torch.Tensor, offset: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise plus a per-sample, per-channel offset ``offset·N(0,1)`` constant over frames and pixels.

    ``latents`` is ``(B, C, F, h, w)``. Drawn on the CPU from ``generator`` (device independent), then moved.
    """
    shape = tuple(latents.shape)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    if offset:
        off_shape = shape[:2] + (1,) * (len(shape) - 2)
        noise = noise + float(offset) * torch.randn(off_shape, generator=generator, dtype=torch.float32)
    return noise.to(device=latents.device, dtype=latents.dtype)


def sample_timesteps(batch: int, num_train_timesteps: int, generator: torch.Generator, device) -> torch.Tensor:
    """Uniform integer timesteps in ``[0, num_train_timesteps)`` (CPU draw, moved to ``device``)."""
    t = torch.randint(0, int(num_train_timesteps), (batch,), generator=generator)
    return t.to(device)


def noisy_and_target(scheduler, latents, noise, timesteps):
    """``(noisy_latents, target)``: forward-diffused latents and the training target (v or ε)."""
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return noisy, target
