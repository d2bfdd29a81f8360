"""Validation renders during training, from the examples listed in ``validation.examples``, sampled with the
inference sampler (:class:`emocast.pipelines.sampler.ClipSampler`: the shared step and denoising loop) around the
network being trained, with the run's noise schedule and reference pairing.

An example is either a prepared sample folder (``{sample: <root>/samples/<video_id>, prompt: "..."}``): its first
frame is the reference portrait; its face-region mask, soft masks, identity embedding and wav2vec2 features are the
conditioning (no face/audio models needed); the prompt defaults to the sample's first prompt — or, in stage 2,
a raw portrait and speech file (``{image: me.png, audio: hi.wav, prompt: "..."}``) rendered by the inference
pipeline (:class:`emocast.pipelines.inference.EmoCASTPipeline` around the network being trained; needs the
face models and wav2vec2 in ``models.root``, loaded once).

* stage 1: ``<out>/step-<step>/<video_id>.png`` = [reference | face region | generated frame] (one frame, the
  image stage's step: no audio or motion modules);
* stage 2: ``<out>/step-<step>/<video_id>.mp4`` = one clip of ``validation.num_frames`` frames driven by the
  sample's audio features, with the reference image as motion frames (like the first clip of a video) and the
  sample's audio muxed in.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import layout
from ..data.datasets import face_region_tensor, to_pixels
from ..pipelines.sampler import ClipSampler, SamplerSettings
from ..pipelines.scheduler import make_generator
from ..media.video_writer import VideoWriter
from ..preprocess.masks import level_masks, level_sizes


def _sampler(task, net, clip_length: int, motion_frames: int) -> ClipSampler:
    vcfg = task.cfg.validation
    settings = SamplerSettings(steps=vcfg.steps, cfg_scale=vcfg.cfg_scale, clip_length=clip_length,
                               motion_frames=motion_frames, reference_pairing=task.cfg.train.reference_pairing,
                               audio_margin=getattr(task.cfg.data, "audio_margin", 2), schedule=task.schedule)
    return ClipSampler(net, task.latents, settings)


def _prepared_examples(task):
    """``[(folder, info, prompt)]`` of the examples given as prepared sample folders."""
    out = []
    for ex in task.cfg.validation.examples:
        if ex.sample:
            folder = Path(ex.sample)
            info = layout.read_info(folder)
            out.append((folder, info, ex.prompt or (info.prompts[0] if info.prompts else "")))
    return out


def sample_conditioning(sampler: ClipSampler, text, folder, prompt, size, masks: bool):
    """The sampler's per-video conditioning of a prepared sample folder (text, identity, face region, soft masks);
    ``text``: a :class:`~emocast.training.encoders.PromptEncoder`."""
    dev = sampler.device
    per = None
    if masks:
        stored = layout.read_masks(folder)
        sides = level_sizes(size, sampler.net.config.num_levels)
        per = {k: [torch.from_numpy(m) for m in level_masks(stored[k], sides)] for k in ("full", "face", "lip")}
    return sampler.prepare_video(
        text_emb=text.encode([prompt]), uncond_text_emb=text.empty(),
        face_emb=torch.from_numpy(layout.read_face_emb(folder))[None].to(dev),
        face_region=face_region_tensor(layout.read_face_region(folder), size)[None].to(dev),
        full_masks=per and per["full"], face_masks=per and per["face"], lip_masks=per and per["lip"])


class _eval_mode:
    def __init__(self, net):
        self.net = net

    def __enter__(self):
        self.was_training = self.net.training
        self.net.eval()
        return self.net

    def __exit__(self, *exc):
        self.net.train(self.was_training)


@torch.no_grad()
def render_stage1(task, module, step, out_dir) -> list[Path]:
    from PIL import Image

    size = int(task.cfg.data.size)
    paths = []
    with _eval_mode(module.net) as net:
        sampler = _sampler(task, net, clip_length=1, motion_frames=0)
        for folder, info, prompt in _prepared_examples(task):
            video = sample_conditioning(sampler, task.text, folder, prompt, size, masks=False)
            (ref_frame,) = layout.read_frames(folder, [0])
            ref_latent = task.latents.encode(to_pixels(ref_frame, size)[None])
            latents = sampler.sample_clip(video, ref_latent, None, make_generator(task.cfg.validation.seed),
                                          progress=False, frames=1)
            img = sampler.decode(latents)[0].permute(1, 2, 0).numpy()
            region = face_region_tensor(layout.read_face_region(folder), size).permute(1, 2, 0).numpy() * 255
            ref_small = np.asarray(Image.fromarray(ref_frame).resize((size, size)))
            row = np.concatenate([ref_small, region.astype(np.uint8), (img * 255).astype(np.uint8)], axis=1)
            path = Path(out_dir) / f"step-{step:07d}" / f"{info.video_id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(row).save(path)
            paths.append(path)
    return paths


@torch.no_grad()
def render_stage2(task, module, step, out_dir) -> list[Path]:
    paths = render_stage2_pipeline(task, module, step, out_dir)
    vcfg, dcfg = task.cfg.validation, task.cfg.data
    size = int(dcfg.size)
    frames = int(vcfg.num_frames or dcfg.n_sample_frames)
    with _eval_mode(module.net) as net:
        sampler = _sampler(task, net, clip_length=frames, motion_frames=dcfg.n_motion_frames)
        for folder, info, prompt in _prepared_examples(task):
            video = sample_conditioning(sampler, task.text, folder, prompt, size, masks=True)
            (ref_frame,) = layout.read_frames(folder, [0])
            features = layout.read_audio_emb(folder, dtype=torch.float32)
            clips = sampler.frames(video, to_pixels(ref_frame, size)[None], features, frames,
                                   make_generator(vcfg.seed), progress=False)
            path = Path(out_dir) / f"step-{step:07d}" / f"{info.video_id}.mp4"
            audio_path = folder / layout.AUDIO
            with VideoWriter(path, fps=info.fps, audio_path=audio_path if audio_path.is_file() else None,
                             preset="veryfast") as writer:
                for clip in clips:
                    writer.write(clip)
            paths.append(path)
    return paths


def _pipeline(task, net):
    """An :class:`EmoCASTPipeline` around the training net (preprocessing models loaded once per run)."""
    from ..pipelines.inference import EmoCASTPipeline, PreprocessSettings
    from ..preprocess.audio import Wav2VecFeatures
    from ..preprocess.face import FaceAnalyzer
    from ..preprocess.landmarks import Landmarker

    cache = getattr(task, "_validation_models", None)
    if cache is None:
        root = task.cfg.models.root
        cache = (Wav2VecFeatures(root, task.device), FaceAnalyzer(root, task.device), Landmarker(root))
        task._validation_models = cache
    vcfg, dcfg = task.cfg.validation, task.cfg.data
    sampler = _sampler(task, net, clip_length=int(vcfg.num_frames or dcfg.n_sample_frames),
                       motion_frames=dcfg.n_motion_frames)
    audio, faces, landmarker = cache
    return EmoCASTPipeline(net, task.latents, task.text.text, audio, faces, landmarker, None, settings=sampler.settings,
                           preprocess=PreprocessSettings(separate_vocals=False), image_size=int(dcfg.size),
                           seed=vcfg.seed)


@torch.no_grad()
def render_stage2_pipeline(task, module, step, out_dir) -> list[Path]:
    """Stage-2 renders of raw (image, audio, prompt) examples through the inference pipeline."""
    examples = [ex for ex in task.cfg.validation.examples if ex.image]
    if not examples:
        return []
    paths = []
    with _eval_mode(module.net) as net:
        pipe = _pipeline(task, net)
        for ex in examples:
            image, audio = Path(ex.image), Path(ex.audio)
            path = Path(out_dir) / f"step-{step:07d}" / f"{image.stem}_{audio.stem}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            paths.append(pipe.render(image, audio, ex.prompt or "", path, progress=False))
    return paths
