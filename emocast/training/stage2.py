"""Stage 2 — the video stage, in three progressive phases (paper §3.4.2).

Each phase is one config (``configs/train/stage2_phase{1,2,3}.yaml``): its datasets and mixture weights, its
trainable parameter groups and steps, and ``models.init_checkpoint`` = the previous phase's export. The forward
is the sampler's (``emocast.pipelines.conditioning``) with per-sample CFG dropout:

* ``F`` target frames + ``M`` motion frames; the ReferenceNet runs at t = 0 on [reference, motion frames] with
  each sample's own conditioning (``train.reference_pairing = matched``; ``release`` reproduces spec §5.3);
* dropped reference → that row does not attend to the reference tokens (motion tokens kept, as the sampler's
  unconditional row); dropped audio → zero audio tokens after AudioProj; dropped text → the empty prompt;
  dropped face → ``imageproj(0)``; dropped face region → zero FaceLocator feature;
* the emotive audio attention queries with the (possibly dropped) text embedding.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.datasets import Stage2Dataset, build_index
from .common import DiffusionTask, keep_dict, to_device
from .dropout import zero_rows


class Stage2Module(nn.Module):
    def __init__(self, net, pairing: str = "matched"):
        super().__init__()
        self.net = net
        self.pairing = pairing

    def forward(self, noisy, timesteps, *, text_emb, face_emb, face_region, ref_latents, audio, masks, keep):
        net = self.net
        face_tokens = net.imageproj(zero_rows(face_emb, keep["face"]))
        text = text_emb.to(face_tokens.dtype)
        ehs = torch.cat([text, face_tokens], dim=1)
        feature = zero_rows(net.face_locator(face_region), keep["face_region"]).unsqueeze(2)
        audio_tokens = zero_rows(net.audioproj(audio), keep["audio"])
        # no graph for a frozen ReferenceNet, unless its conditioning (face tokens of a trainable ImageProj)
        # needs the gradient that flows back through it
        needs_grad = ehs.requires_grad or any(p.requires_grad for p in net.reference_unet.parameters())
        with torch.set_grad_enabled(needs_grad and torch.is_grad_enabled()):
            reference = net.reference_features(ref_latents, ehs, pairing=self.pairing)
        rows = None if bool(keep["reference"].all()) else keep["reference"]
        return net.denoising_unet(noisy, timesteps, ehs, audio_tokens, text, masks, face_locator_feature=feature,
                                  reference=reference, reference_rows=rows)


class Stage2Task(DiffusionTask):
    name = "stage2"

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.get("phase") is not None:
            self.name = f"stage2_phase{cfg.phase}"

    def build_module(self, net):
        return Stage2Module(net, self.cfg.train.get("reference_pairing", "matched"))

    def build_dataset(self):
        d = self.cfg.data
        return Stage2Dataset(build_index(d.datasets), int(d.size), int(self.cfg.seed),
                             n_sample_frames=int(d.get("n_sample_frames", 14)),
                             n_motion_frames=int(d.get("n_motion_frames", 2)),
                             audio_margin=int(d.get("audio_margin", 2)), start_ratio=float(d.get("start_ratio", 0.05)),
                             neutral_ref_rate=float(d.get("neutral_ref_rate", 0.0)),
                             max_retries=int(d.get("max_retries", 50)))

    def make_inputs(self, batch, keep, generator):
        dev = self.device
        b, f = batch["frames"].shape[:2]
        m = batch["motion"].shape[1]
        sample_target = str(self.cfg.noise.get("target_latents", "sample")) == "sample"
        frames = self.latents.encode(batch["frames"].flatten(0, 1), sample=sample_target, generator=generator)
        target = frames.reshape(b, f, *frames.shape[1:]).transpose(1, 2)  # (B, 4, F, h, w)
        ref_pix = torch.cat([batch["reference"][:, None], batch["motion"]], dim=1)  # (B, 1+M, 3, H, W)
        ref = self.latents.encode(ref_pix.flatten(0, 1)).reshape(b, 1 + m, *frames.shape[1:])
        noisy, v_target, t = self.noise_and_target(target, generator)
        inputs = dict(text_emb=self.encode_prompts(batch["prompt"], keep.text),
                      face_emb=to_device(batch["face_emb"], dev), face_region=to_device(batch["face_region"], dev),
                      ref_latents=ref, audio=to_device(batch["audio"], dev), masks=to_device(batch["masks"], dev),
                      keep=keep_dict(keep, dev))
        return noisy, v_target, t, inputs

    def validate(self, module, step, out_dir):
        from .validation import render_stage2

        return render_stage2(self, module, step, out_dir)
