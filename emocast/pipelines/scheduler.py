"""The noise schedule (spec §8.1) and the seeded initial noise.

:class:`Schedule` is the one description of a noise process: training builds its forward process from it,
sampling its DDIM scheduler, and a checkpoint card records it (``emocast.pipelines.card``). Its defaults are the
released settings: linear betas 0.00085 → 0.012 over 1000 steps, zero-terminal-SNR rescale, trailing spacing,
v-prediction (40 steps give timesteps 999, 974, ..., 24). Initial noise is drawn on the CPU from one
``torch.Generator`` seeded once per video, in the weight dtype, and the stream continues from clip to clip, so a
given seed reproduces the same video on any device.

The solver integrates that process: ``ddim`` (the release's, first order), or diffusers' multistep solvers of the
same probability-flow ODE at fewer steps, ``dpmsolver++`` (DPM-Solver++ 2M) and ``unipc`` (UniPC, order 2 with
its corrector) — both take the zero-terminal-SNR v-prediction schedule (``rescale_betas_zero_snr``, trailing
spacing) and end at sigma 0 (``final_sigmas_type="zero"``), as DDIM does.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

from ..config import option
from ..errors import ConfigError

DEFAULT_STEPS = 40
DEFAULT_CFG_SCALE = 3.5
DEFAULT_SEED = 42


@dataclass
class Schedule:
    """A diffusion noise schedule (the ``DDIMScheduler`` settings that define it); defaults = the release's."""

    num_train_timesteps: int = option(1000, "training timesteps", ge=1)
    beta_start: float = option(0.00085, "first beta", gt=0)
    beta_end: float = option(0.012, "last beta", gt=0)
    beta_schedule: Literal["linear", "scaled_linear"] = option("linear", "beta spacing")
    prediction_type: Literal["v_prediction", "epsilon"] = option("v_prediction", "what the network predicts")
    rescale_betas_zero_snr: bool = option(True, "zero-terminal-SNR rescale")
    timestep_spacing: Literal["trailing", "leading", "linspace"] = option("trailing", "sampling timestep spacing")
    steps_offset: int = option(1, "DDIM steps_offset (ignored by trailing spacing)", ge=0)
    clip_sample: bool = option(False, "clip x0 predictions")
    set_alpha_to_one: bool = option(True, "final alpha_cumprod = 1")

    def kwargs(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        check_samplable(self, "a schedule with zero-terminal SNR needs prediction_type v_prediction")

    def replace(self, **changes) -> "Schedule":
        return dataclasses.replace(self, **changes)


#: The released scheduler settings (``noise_scheduler_kwargs`` + ``enable_zero_snr`` of the official config).
RELEASED_SCHEDULE = Schedule()
RELEASED_SCHEDULER_KWARGS = RELEASED_SCHEDULE.kwargs()


def check_samplable(schedule: Schedule, fix: str) -> None:
    """:class:`ConfigError` for a schedule DDIM cannot sample: epsilon prediction with zero-terminal-SNR betas
    (the signal level of the last timestep is 0, the first step divides by it, and every frame comes out NaN)."""
    if schedule.prediction_type == "epsilon" and schedule.rescale_betas_zero_snr:
        raise ConfigError("prediction_type=epsilon cannot be sampled with zero-terminal-SNR betas (the first DDIM step "
                          "divides by the signal level of the last timestep, which is 0, so every frame is NaN); "
                          f"zero-terminal SNR needs v_prediction. Fix: {fix}")


SOLVERS = ("ddim", "dpmsolver++", "unipc")
#: DDIM-only settings of :class:`Schedule` (the multistep solvers always end at sigma 0)
_DDIM_ONLY = ("clip_sample", "set_alpha_to_one")


def make_scheduler(schedule: Schedule | None = None, solver: str = "ddim", **overrides):
    """A scheduler for ``schedule`` (default: the released one) with ``solver`` (one of :data:`SOLVERS`; default
    the release's DDIM); keyword arguments override single settings."""
    kwargs = (schedule or RELEASED_SCHEDULE).kwargs()
    if solver == "ddim":
        kwargs.update(overrides)
        return DDIMScheduler(**kwargs)
    for key in _DDIM_ONLY:
        kwargs.pop(key)
    kwargs.update(solver_order=2, final_sigmas_type="zero", lower_order_final=True)
    kwargs.update(overrides)
    if solver == "dpmsolver++":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", **kwargs)
    if solver == "unipc":
        return UniPCMultistepScheduler(**kwargs)
    raise ConfigError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")


def make_generator(seed: int) -> torch.Generator:
    """The CPU generator the whole video draws its noise from (seeded once, continued across clips)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def initial_noise(generator: torch.Generator, shape, dtype: torch.dtype, device) -> torch.Tensor:
    """``randn(shape)`` drawn on the CPU in ``dtype`` (fp16 in the release) and moved to ``device``."""
    noise = torch.randn(tuple(shape), generator=generator, dtype=dtype, device="cpu")
    return noise.to(device)
