"""The noise scheduler of the released pipeline (spec §8.1) and the seeded initial noise.

The release samples with diffusers' :class:`~diffusers.DDIMScheduler` configured as below (zero-terminal-SNR
rescale, trailing spacing, v-prediction, 40 steps give timesteps 999, 974, ..., 24). Initial noise is drawn on
the CPU from one ``torch.Generator`` seeded once per video, in the weight dtype, and the stream continues from
clip to clip, so a given seed reproduces the same video on any device.
"""
from __future__ import annotations

import torch
from diffusers import DDIMScheduler

#: The released scheduler settings (``noise_scheduler_kwargs`` + ``enable_zero_snr`` of the official config).
RELEASED_SCHEDULER_KWARGS = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="linear",
    clip_sample=False,
    steps_offset=1,
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
    set_alpha_to_one=True,
)

DEFAULT_STEPS = 40
DEFAULT_CFG_SCALE = 3.5
DEFAULT_SEED = 42


def make_scheduler(**overrides) -> DDIMScheduler:
    """A DDIM scheduler with the released settings; keyword arguments override single settings."""
    kwargs = dict(RELEASED_SCHEDULER_KWARGS)
    kwargs.update(overrides)
    return DDIMScheduler(**kwargs)


def make_generator(seed: int) -> torch.Generator:
    """The CPU generator the whole video draws its noise from (seeded once, continued across clips)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def initial_noise(generator: torch.Generator, shape, dtype: torch.dtype, device) -> torch.Tensor:
    """``randn(shape)`` drawn on the CPU in ``dtype`` (fp16 in the release) and moved to ``device``."""
    noise = torch.randn(tuple(shape), generator=generator, dtype=dtype, device="cpu")
    return noise.to(device)


def guided(model_output: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    """Classifier-free guidance on a [uncond, cond] batch: ``u + scale * (c - u)``."""
    uncond, cond = model_output.chunk(2)
    return uncond + cfg_scale * (cond - uncond)
