"""Training noise: the forward process of a :class:`~emocast.pipelines.scheduler.Schedule`, noise offset,
timesteps, noisy latents and the target.

Beta schedule: the release *samples* with ``"linear"`` betas (0.00085 → 0.012, zero-terminal-SNR rescale,
trailing spacing, v-prediction; spec §8.1), while Hallo *trained* with ``"scaled_linear"`` (spec §11 item 4).
Our default is ``"linear"`` so that training matches inference; the config key ``noise.beta_schedule``
switches it (``scaled_linear`` reproduces Hallo's training schedule). The schedule a run trains with is written
into its checkpoint card, so inference samples with it.

All random draws take an explicit ``torch.Generator`` so a resumed run redraws exactly the same noise.
"""
from __future__ import annotations

import torch

from ..pipelines.scheduler import RELEASED_SCHEDULE, Schedule, make_scheduler


def train_schedule(ncfg) -> Schedule:
    """The noise schedule of a run's ``noise`` config section (the release's, with its three switches)."""
    return RELEASED_SCHEDULE.replace(beta_schedule=ncfg.beta_schedule, rescale_betas_zero_snr=bool(ncfg.zero_snr),
                                     prediction_type=ncfg.prediction_type)


def make_train_scheduler(schedule: Schedule):
    """The DDIM scheduler whose ``alphas_cumprod`` defines the forward process used for training."""
    return make_scheduler(schedule)


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
