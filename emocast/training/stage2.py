"""Stage 2 — the video stage, in three progressive phases (paper §3.4.2).

Each phase is one config (``configs/train/stage2_phase{1,2,3}.yaml``, small overrides of
:class:`emocast.training.config.Stage2Config`): its datasets and mixture weights, its trainable parameter groups
and steps, and ``models.init_checkpoint`` = the previous phase's export. The forward is the sampler's step
(:mod:`emocast.pipelines.conditioning`) with per-sample CFG dropout: ``F`` target frames + ``M`` motion frames; the
ReferenceNet runs at t = 0 on [reference, motion frames] with each sample's own conditioning
(``train.reference_pairing = matched``; ``release`` reproduces spec §5.3).
"""
from __future__ import annotations

import torch

from ..data.datasets import Stage2Dataset, build_index
from .common import DiffusionTask, to_device


class Stage2Task(DiffusionTask):
    def build_dataset(self):
        d = self.cfg.data
        return Stage2Dataset(build_index(d.datasets), d.size, self.cfg.seed, n_sample_frames=d.n_sample_frames,
                             n_motion_frames=d.n_motion_frames, audio_margin=d.audio_margin,
                             start_ratio=d.start_ratio, neutral_ref_rate=d.neutral_ref_rate,
                             max_retries=d.max_retries)

    def clip_inputs(self, batch, generator):
        """``(latents (B, 4, F, h, w), conditioning inputs of the step)`` of a batch of clips."""
        dev = self.device
        b, f = batch["frames"].shape[:2]
        m = batch["motion"].shape[1]
        frames = self.encode_latents(batch["frames"].flatten(0, 1), generator, target=True)
        target = frames.reshape(b, f, *frames.shape[1:]).transpose(1, 2)  # (B, 4, F, h, w)
        ref_pix = torch.cat([batch["reference"][:, None], batch["motion"]], dim=1)  # (B, 1+M, 3, H, W)
        ref = self.encode_latents(ref_pix.flatten(0, 1)).reshape(b, 1 + m, *frames.shape[1:])
        inputs = dict(self.text_inputs(batch["prompt"]), face_emb=to_device(batch["face_emb"], dev),
                      face_region=to_device(batch["face_region"], dev), ref_latents=ref,
                      audio=to_device(batch["audio"], dev), masks=to_device(batch["masks"], dev))
        return target, inputs

    def make_inputs(self, batch, generator):
        target, inputs = self.clip_inputs(batch, generator)
        noisy, v_target, t = self.noise_and_target(target, generator)
        return noisy, v_target, t, inputs

    def validate(self, module, step, out_dir):
        from .validation import render_stage2

        return render_stage2(self, module, step, out_dir)
