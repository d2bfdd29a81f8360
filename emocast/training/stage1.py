"""Stage 1 — emotion-conditioned image-to-image (paper §3.4.1).

Trained (config ``train.trainable``): ReferenceNet, the denoising UNet's spatial layers (with the decoupled
text/face cross-attention), FaceLocator and ImageProj, on (reference image, target frame, face-region mask,
identity embedding, emotive prompt). The target is a one-frame "video"; the motion and audio modules of the
denoising UNet neither run nor train (the step without audio, :mod:`emocast.pipelines.conditioning`). References
come from :class:`emocast.data.datasets.Stage1Dataset` (emotion-aware sampling).
"""
from __future__ import annotations

from ..data.datasets import Stage1Dataset, build_index
from .common import DiffusionTask, to_device


class Stage1Task(DiffusionTask):
    def build_dataset(self):
        d = self.cfg.data
        return Stage1Dataset(build_index(d.datasets), d.size, self.cfg.seed, neutral_ref_rate=d.neutral_ref_rate,
                             sample_margin=d.sample_margin, max_retries=d.max_retries)

    def make_inputs(self, batch, generator):
        dev = self.device
        target = self.encode_latents(batch["target"], generator, target=True)[:, :, None]  # (B, 4, 1, h, w)
        ref = self.encode_latents(batch["reference"])[:, None]  # (B, 1, 4, h, w): no motion frames
        noisy, v_target, t = self.noise_and_target(target, generator)
        inputs = dict(self.text_inputs(batch["prompt"]), face_emb=to_device(batch["face_emb"], dev),
                      face_region=to_device(batch["face_region"], dev), ref_latents=ref)
        return noisy, v_target, t, inputs

    def validate(self, module, step, out_dir):
        from .validation import render_stage1

        return render_stage1(self, module, step, out_dir)
