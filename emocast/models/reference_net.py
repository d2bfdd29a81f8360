"""ReferenceNet (spec §1.2, §5.3): the SD-1.5 UNet without ``conv_norm_out``/``conv_out``, run at timestep 0 on the
reference image and the motion frames. Its product is the ``norm1`` output of every spatial transformer block.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .configs import NetConfig
from .unet_blocks import BlockInputs, UNetBase


@dataclass
class ReferenceFeatures:
    """What the denoising UNet reads from the reference pass, keyed by spatial-transformer path.

    reference: path -> (B, HW, C) reference-image tokens (self-attention keys/values of the denoising UNet);
    motion: path -> (B, M, HW, C) motion-frame tokens (prepended to the motion module of the same layer);
    pairing: ``"release"`` — the denoising UNet spreads the reference rows over frames as the released code
    does (frame t of batch row b reads reference row ``(b*F + t) % B``; with CFG the conditional frames
    alternate between the reference encoded with the unconditional and with the conditional tokens);
    ``"matched"`` — every frame of row b reads row b. Identical for B = 1.
    """

    reference: dict[str, torch.Tensor]
    motion: dict[str, torch.Tensor]
    pairing: str = "release"

    @property
    def num_motion_frames(self) -> int:
        return next(iter(self.motion.values())).shape[1]

    def to(self, *args, **kwargs) -> "ReferenceFeatures":
        return ReferenceFeatures({k: v.to(*args, **kwargs) for k, v in self.reference.items()},
                                 {k: v.to(*args, **kwargs) for k, v in self.motion.items()}, self.pairing)


class ReferenceNet(UNetBase):
    def __init__(self, config: NetConfig):
        super().__init__(config, temporal=False)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor) -> dict[str, torch.Tensor]:
        """sample (N, 4, h, w), timestep (scalar or (N,)), encoder_hidden_states (N, T+K, D)
        -> {block path: norm1 output (N, h_l*w_l, C)} for every spatial transformer block.

        Work whose result cannot reach a record is skipped: the last block (in execution order) stops after
        its ``norm1``, and nothing after it runs (the released code computes and discards it).
        """
        temb = self.embed_time(timestep, sample.shape[0], sample.dtype, sample.device)
        records: dict[str, torch.Tensor] = {}
        inputs = BlockInputs(temb=temb, context=encoder_hidden_states, records=records,
                             record_only=self.up_blocks[-1].attentions[-1].path,
                             use_checkpoint=self.gradient_checkpointing)
        self.run_blocks(self.conv_in(sample), inputs)
        return records
