"""FID between generated and ground-truth frames: frame sampling, Inception features, Fréchet distance.

Frame sampling (the field disagrees, so it is a setting; config key ``fid.sampling``):

- ``"per_video"`` (default, EAT's protocol): ``frames_per_video`` indices ``floor(linspace(0, T, k, endpoint=False))``
  from each video (all frames when ``T <= k``);
- ``"every_k"``: frames ``0, k, 2k, ...`` (``every_k``);
- ``"all"``: every frame.

Features are pooled over **all** sampled frames of a folder (one Gaussian per side), then
``||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2))``. Two ways to get ``Tr(sqrtm(S1 S2))``:

- ``"sqrtm"``: ``scipy.linalg.sqrtm`` of the 2048x2048 product (eps * I added to both covariances when it is
  singular, a negligible imaginary part dropped), exactly as pytorch-fid;
- ``"gram"``: with centred, ``1/sqrt(N-1)``-scaled feature matrices ``A1 (N1xD)``, ``A2 (N2xD)``,
  ``S1 S2 = A1' (A1 A2') A2`` has the same non-zero eigenvalues as ``M M'`` with ``M = A1 A2'``, so the trace is
  the sum of the singular values of the small ``N1 x N2`` matrix ``M`` (exact, no eps; fast and stable when
  ``N < D``, where ``sqrtm`` of the rank-deficient product takes minutes on a CPU and needs the eps fallback).

``fid.method: auto`` (default) uses ``gram`` when either side has fewer samples than feature dimensions, else
``sqrtm``.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg

from ..errors import ConfigError, InputError

SAMPLING = ("per_video", "every_k", "all")


def sample_indices(num_frames: int, sampling: str = "per_video", frames_per_video: int = 5,
                   every_k: int = 25) -> list[int]:
    if sampling not in SAMPLING:
        raise ConfigError(f"fid.sampling={sampling!r} is not one of {', '.join(SAMPLING)}")
    if num_frames <= 0:
        return []
    if sampling == "all":
        return list(range(num_frames))
    if sampling == "every_k":
        if every_k < 1:
            raise ConfigError(f"fid.every_k must be >= 1, got {every_k}")
        return list(range(0, num_frames, every_k))
    if frames_per_video < 1:
        raise ConfigError(f"fid.frames_per_video must be >= 1, got {frames_per_video}")
    k = min(num_frames, frames_per_video)
    return np.linspace(0, num_frames, k, endpoint=False).astype(np.int64).tolist()


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``np.cov``, unbiased) of ``(N, D)`` features."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise InputError(f"FID needs at least 2 sampled frames per side, got {features.shape[0]}; "
                         "sample more frames (fid.sampling / fid.frames_per_video) or add videos")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("mean vectors / covariances have different shapes")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(f"FID: singular covariance product; adding {eps} to the diagonals")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


METHODS = ("auto", "sqrtm", "gram")


def _centred(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    return (x - x.mean(0)) / np.sqrt(x.shape[0] - 1)


def frechet_distance_gram(gen: np.ndarray, ref: np.ndarray) -> float:
    """The Fréchet distance of the two feature sets' Gaussians through the ``N1 x N2`` cross-Gram matrix."""
    statistics(gen), statistics(ref)  # shape checks
    a1, a2 = _centred(gen), _centred(ref)
    diff = np.asarray(gen, np.float64).mean(0) - np.asarray(ref, np.float64).mean(0)
    nuclear = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    return float(diff @ diff + (a1 * a1).sum() + (a2 * a2).sum() - 2 * nuclear)


def fid_from_features(gen: np.ndarray, ref: np.ndarray, method: str = "auto") -> float:
    if method not in METHODS:
        raise ConfigError(f"fid.method={method!r} is not one of {', '.join(METHODS)}")
    dim = np.asarray(gen).shape[-1]
    if method == "gram" or (method == "auto" and min(len(gen), len(ref)) < dim):
        return frechet_distance_gram(gen, ref)
    return frechet_distance(*statistics(gen), *statistics(ref))


@torch.no_grad()
def inception_features(model, frames_rgb: np.ndarray, batch_size: int = 16, device="cpu") -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 2048)`` float64 pool features."""
    out = []
    dtype = next(model.parameters()).dtype
    for s in range(0, len(frames_rgb), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(frames_rgb[s:s + batch_size])).permute(0, 3, 1, 2)
        x = x.to(device=device, dtype=torch.float32) / 255.0
        out.append(model.features(x.to(dtype)).double().cpu().numpy())
    return np.concatenate(out, 0) if out else np.zeros((0, 2048))
