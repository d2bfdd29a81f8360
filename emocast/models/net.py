"""``EmoCASTNet``: the container of the five networks; its ``state_dict()`` is the ``net.pth`` layout.

Quick start::

    from emocast.models import build_net, TINY
    net = build_net(TINY)            # or build_net("sd15"), build_net({"block_out_channels": [32, 32, 32, 32], ...})
    torch.save(net.state_dict(), "net.pth")   # what the official checkpoint is; we write safetensors (loading.py)
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ConfigError
from .configs import NetConfig, resolve_config
from .denoising_unet import DenoisingUNet
from .face_locator import FaceLocator
from .projections import AudioProj, ImageProj
from .reference_net import ReferenceFeatures, ReferenceNet

PAIRINGS = ("release", "matched")


class EmoCASTNet(nn.Module):
    """``reference_unet``, ``denoising_unet``, ``face_locator``, ``imageproj``, ``audioproj`` (official order)."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.reference_unet = ReferenceNet(config)
        self.denoising_unet = DenoisingUNet(config)
        self.face_locator = FaceLocator(config.block_out_channels[0], config.face_locator_in_channels,
                                        config.face_locator_channels)
        self.imageproj = ImageProj(config.cross_attention_dim, config.face_embedding_dim, config.num_face_tokens)
        self.audioproj = AudioProj(config.audio_window, config.audio_layers, config.audio_feature_dim,
                                   config.audio_intermediate_dim, config.audio_attention_dim,
                                   config.audio_context_tokens)

    @property
    def dtype(self) -> torch.dtype:
        return self.denoising_unet.dtype

    @property
    def device(self) -> torch.device:
        return self.denoising_unet.device

    @property
    def is_student(self) -> bool:
        """A consistency-distilled student: its denoising UNet takes the guidance scale it folds in (one row,
        no classifier-free-guidance mix; ``NetConfig.guidance_embed_dim > 0``)."""
        return self.denoising_unet.guidance_embedding is not None

    def enable_gradient_checkpointing(self, enabled: bool = True):
        self.reference_unet.enable_gradient_checkpointing(enabled)
        self.denoising_unet.enable_gradient_checkpointing(enabled)
        return self

    def reference_records(self, latents: torch.Tensor, encoder_hidden_states: torch.Tensor, pairing: str,
                          first_slot: int, slots: int, bank_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """The ReferenceNet's records (path -> (B, n, HW, C)) of the slots ``first_slot .. first_slot + n - 1`` of a
        reference batch with ``slots`` slots per row (slot 0 = the reference image, then the motion frames);
        latents (B, n, 4, h, w). Each input row gets the conditioning row the pairing gives its slot (see
        :meth:`reference_features`); the ReferenceNet treats every input row on its own, so any subset of the
        slots gives the records those slots get in the full batch."""
        if pairing not in PAIRINGS:
            raise ConfigError(f"unknown reference pairing {pairing!r}; choose one of {PAIRINGS}")
        b, n = latents.shape[:2]
        ehs = encoder_hidden_states.to(self.dtype)
        # input row (row, slot) is row * slots + slot of the release's tiled batch, which reads ehs[that % B]
        rows = [((r * slots + s) % b if pairing == "release" else r) for r in range(b)
                for s in range(first_slot, first_slot + n)]
        context = ehs[torch.tensor(rows, device=ehs.device)]
        records = self.reference_unet(latents.reshape(b * n, *latents.shape[2:]).to(self.dtype), 0, context)
        out = {}
        for path, tokens in records.items():
            tokens = tokens.reshape(b, n, *tokens.shape[1:])
            out[path] = tokens if bank_dtype is None else tokens.to(bank_dtype)
        return out

    def reference_features(self, ref_latents: torch.Tensor, encoder_hidden_states: torch.Tensor,
                           pairing: str = "release", bank_dtype: torch.dtype | None = None,
                           reference: dict[str, torch.Tensor] | None = None) -> ReferenceFeatures:
        """Run the ReferenceNet at timestep 0 and group its records into reference and motion-frame tokens.

        ref_latents: (1+M, 4, h, w) shared by every batch row, or (B, 1+M, 4, h, w); slot 0 is the reference
        image, slots 1..M the motion frames. encoder_hidden_states: (B, T+K, D), one row per denoising batch
        row (with CFG: [uncond, cond]).

        pairing: which conditioning row each ReferenceNet input row sees. ``"release"`` (default) reproduces the
        released code (spec §5.3): the latents are tiled batch-major ([ref, m1, m2] per row) while the tokens are
        repeated whole ([U, C, U, C, U, C]), so input row j gets ``encoder_hidden_states[j % B]``.
        ``"matched"`` gives every image of batch row b the tokens of row b. The choice is recorded in the
        result and also selects how the denoising UNet spreads reference rows over frames (see
        :class:`ReferenceFeatures`): ``"release"`` reproduces both quirks of the released code, ``"matched"``
        corrects both (use it for new training with batch > 1).
        bank_dtype: cast the recorded tokens (the release casts them to float16); None keeps the compute dtype.
        reference: the reference image's tokens (path -> (B, HW, C)) of slot 0 of the same batch layout
        (:meth:`reference_records` of slot 0, e.g. from the video's first clip); then slot 0 of ``ref_latents``
        is not run again, only the motion frames.
        """
        b = encoder_hidden_states.shape[0]
        if ref_latents.ndim == 4:
            ref_latents = ref_latents.unsqueeze(0).expand(b, *ref_latents.shape)
        if ref_latents.ndim != 5 or ref_latents.shape[0] != b:
            raise ValueError(f"ref_latents must be (1+M, C, h, w) or ({b}, 1+M, C, h, w); got {tuple(ref_latents.shape)}")
        slots = ref_latents.shape[1]
        first = 0 if reference is None else 1
        records = {}
        if slots > first:
            records = self.reference_records(ref_latents[:, first:], encoder_hidden_states, pairing, first, slots,
                                             bank_dtype)
        if reference is None:
            return ReferenceFeatures({p: t[:, 0] for p, t in records.items()},
                                     {p: t[:, 1:] for p, t in records.items()}, pairing)
        motion = records or {p: t.unsqueeze(1)[:, :0] for p, t in reference.items()}
        return ReferenceFeatures(dict(reference), motion, pairing)

    def forward(self, *args, **kwargs):
        raise TypeError("EmoCASTNet is a container; call its children (see emocast.pipelines.conditioning)")


def build_net(config: NetConfig | Mapping[str, Any] | str | None = None, device=None,
              dtype: torch.dtype | None = None) -> EmoCASTNet:
    """Build (randomly initialised) networks from a config: a :class:`NetConfig`, a dict of its fields, a
    diffusers UNet config dict, a preset name (``"sd15"``, ``"tiny"``) or None (= SD-1.5 release sizes).

    ``device="meta"`` builds without allocating weights.
    """
    cfg = resolve_config(config)
    if device is not None and str(device) == "meta":
        with torch.device("meta"):
            return EmoCASTNet(cfg)
    net = EmoCASTNet(cfg)
    if device is not None or dtype is not None:
        net = net.to(device=device, dtype=dtype)
    return net
