"""The training objective: v-prediction target and Min-SNR-γ weighting, kept per sample.

Hallo's stage 2 reduces the MSE over the whole batch *before* weighting, so its per-sample Min-SNR weights
collapse to one batch-mean factor (spec §11 item 17). Here the squared error is averaged over every
dimension except the batch first, weighted per sample, and only then averaged over the batch.
"""
from __future__ import annotations

import torch


def snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``ᾱ_t / (1 − ᾱ_t)`` per timestep (``inf``-safe: 0 at the zero-SNR end)."""
    a = alphas_cumprod.to(device=timesteps.device, dtype=torch.float64)[timesteps]
    return (a / (1.0 - a).clamp_min(1e-20)).to(torch.float32)


def min_snr_weights(snr_values: torch.Tensor, gamma: float | None, prediction_type: str = "v_prediction"):
    """Min-SNR-γ loss weights (Hang et al. 2023) for each sample; ``gamma=None`` or ``<=0`` → all ones.

    ε-prediction: ``min(snr, γ) / snr``; v-prediction: ``min(snr, γ) / (snr + 1)`` (the v-target already
    carries a factor ``snr + 1``). The v form stays finite at the zero-terminal-SNR timestep (snr = 0).
    """
    if gamma is None or gamma <= 0:
        return torch.ones_like(snr_values)
    clipped = torch.minimum(snr_values, torch.full_like(snr_values, float(gamma)))
    if prediction_type == "v_prediction":
        return clipped / (snr_values + 1.0)
    if prediction_type == "epsilon":
        return clipped / snr_values.clamp_min(1e-8)
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample ``(B,)``, computed in float32."""
    err = (pred.float() - target.float()) ** 2
    return err.reshape(err.shape[0], -1).mean(dim=1)


def diffusion_loss(pred, target, weights: torch.Tensor | None = None):
    """``(loss, per_sample)``: weighted per-sample MSE averaged over the batch, and the unweighted per-sample MSE."""
    per_sample = per_sample_mse(pred, target)
    weighted = per_sample if weights is None else per_sample * weights.to(per_sample)
    return weighted.mean(), per_sample.detach()
