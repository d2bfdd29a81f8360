"""The VAE between pixels and the latents the networks see: the one owner of the latent scaling and of batching.

:class:`VaeCodec` wraps a diffusers ``AutoencoderKL`` (``sd-vae-ft-mse``). Its scaling factor comes from the
VAE's config (0.18215 for SD's VAE; the release hard-codes that number) unless a checkpoint card says the network
was trained with another. Training, inference, validation and data preparation all use it::

    codec = VaeCodec(load_vae(models_root, device, dtype))
    z = codec.encode(pixels)                        # (n, 3, H, W) in [-1, 1] -> (n, 4, H/8, W/8), posterior mean
    z = codec.encode(pixels, sample=True, generator=g)   # a posterior sample (training targets)
    frames = codec.decode(z)                        # -> (n, 3, H, W) float32 in [0, 1], in batches
"""
from __future__ import annotations

import torch

from .. import registry

VAE_COMPONENT = "sd-vae-ft-mse"


def load_vae(models_root=None, device=None, dtype=None):
    """The frozen ``AutoencoderKL`` of ``<models>/sd-vae-ft-mse`` (checked through the registry first)."""
    from diffusers import AutoencoderKL

    folder = registry.component_dir(VAE_COMPONENT, models_root)
    vae = AutoencoderKL.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
    return vae.to(device).eval().requires_grad_(False)


class VaeCodec:
    """Pixels in [-1, 1] <-> latents x ``scaling_factor``, in batches, without gradients."""

    def __init__(self, vae, scaling_factor: float | None = None, encode_batch: int = 16, decode_batch: int = 8):
        self.vae = vae
        self.scaling_factor = float(scaling_factor if scaling_factor is not None else vae.config.scaling_factor)
        self.encode_batch, self.decode_batch = int(encode_batch), int(decode_batch)
        if self.encode_batch < 1 or self.decode_batch < 1:
            raise ValueError("VAE batch sizes must be at least 1")

    @property
    def device(self) -> torch.device:
        return self.vae.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.dtype

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, 3, H, W)`` in [-1, 1] -> ``(n, C, H/f, W/f)`` in the VAE's dtype and device: the posterior mean
        (reference image, motion frames) or, with ``sample``, a draw from ``generator`` (training targets)."""
        out = []
        for part in pixels.split(self.encode_batch):
            dist = self.vae.encode(part.to(device=self.device, dtype=self.dtype)).latent_dist
            z = dist.sample(generator=generator) if sample else dist.mean
            out.append(z * self.scaling_factor)
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(n, C, h, w)`` latents -> ``(n, 3, H, W)`` float32 images in [0, 1] on the VAE's device, decoded
        ``decode_batch`` frames at a time (the affine to [0, 1] in the VAE's dtype, as the release)."""
        out = []
        for part in latents.split(self.decode_batch):
            x = self.vae.decode(part.to(device=self.device, dtype=self.dtype) / self.scaling_factor).sample
            out.append((x / 2 + 0.5).clamp(0, 1).float())
        return torch.cat(out)
