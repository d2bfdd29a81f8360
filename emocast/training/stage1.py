"""Stage 1 — emotion-conditioned image-to-image (paper §3.4.1).

Trained (config ``train.trainable``): ReferenceNet, the denoising UNet's spatial layers (with the decoupled
text/face cross-attention), FaceLocator and ImageProj, on (reference image, target frame, face-region mask,
identity embedding, emotive prompt). The target is a one-frame "video"; the motion and audio modules of the
denoising UNet neither run nor train. References come from :class:`emocast.data.datasets.Stage1Dataset`
(emotion-aware sampling).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.datasets import Stage1Dataset, build_index
from .common import DiffusionTask, keep_dict, to_device
from .dropout import zero_rows


def spatial_prediction(unet, sample, timestep, encoder_hidden_states, face_locator_feature=None, reference=None,
                       reference_rows=None):
    """The denoising UNet with its audio and motion modules skipped (stage 1: ``temporal=False``)."""
    return unet(sample, timestep, encoder_hidden_states, None, None, None, face_locator_feature=face_locator_feature,
                reference=reference, reference_rows=reference_rows, temporal=False)


class Stage1Module(nn.Module):
    """The stage-1 network forward; ``net`` is the EmoCASTNet (its state dict is the export)."""

    def __init__(self, net, pairing: str = "matched"):
        super().__init__()
        self.net = net
        self.pairing = pairing

    def conditioning(self, text_emb, face_emb, face_region, keep):
        """(encoder_hidden_states (B, 77+K, D), face-locator feature (B, C0, 1, h, w)) with dropout applied."""
        net = self.net
        face_tokens = net.imageproj(zero_rows(face_emb, keep["face"]))  # dropped -> imageproj(0), as the sampler
        ehs = torch.cat([text_emb.to(face_tokens.dtype), face_tokens], dim=1)
        feature = zero_rows(net.face_locator(face_region), keep["face_region"]).unsqueeze(2)
        return ehs, feature

    def forward(self, noisy, timesteps, *, text_emb, face_emb, face_region, ref_latents, keep):
        ehs, feature = self.conditioning(text_emb, face_emb, face_region, keep)
        rows = keep["reference"]
        reference = None
        if bool(rows.any()):
            reference = self.net.reference_features(ref_latents, ehs, pairing=self.pairing)
        rows = None if reference is None or bool(rows.all()) else rows
        return spatial_prediction(self.net.denoising_unet, noisy, timesteps, ehs, feature, reference, rows)


class Stage1Task(DiffusionTask):
    name = "stage1"

    def build_module(self, net):
        return Stage1Module(net, self.cfg.train.get("reference_pairing", "matched"))

    def build_dataset(self):
        d = self.cfg.data
        return Stage1Dataset(build_index(d.datasets), int(d.size), int(self.cfg.seed),
                             neutral_ref_rate=float(d.get("neutral_ref_rate", 1.0)),
                             sample_margin=int(d.get("sample_margin", 30)), max_retries=int(d.get("max_retries", 50)))

    def make_inputs(self, batch, keep, generator):
        dev = self.device
        sample_target = str(self.cfg.noise.get("target_latents", "sample")) == "sample"
        target = self.latents.encode(batch["target"], sample=sample_target, generator=generator)[:, :, None]
        ref = self.latents.encode(batch["reference"])[:, None]  # (B, 1, 4, h, w): no motion frames
        noisy, v_target, t = self.noise_and_target(target, generator)
        inputs = dict(text_emb=self.encode_prompts(batch["prompt"], keep.text),
                      face_emb=to_device(batch["face_emb"], dev), face_region=to_device(batch["face_region"], dev),
                      ref_latents=ref, keep=keep_dict(keep, dev))
        return noisy, v_target, t, inputs

    def validate(self, module, step, out_dir):
        from .validation import render_stage1

        return render_stage1(self, module, step, out_dir)
