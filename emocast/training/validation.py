"""Validation renders during training, from the examples listed in ``validation.examples``.

An example is either a prepared sample folder (``{sample: <root>/samples/<video_id>, prompt: "..."}``): its first
frame is the reference portrait; its face-region mask, soft masks, identity embedding and wav2vec2 features are the
conditioning (no face/audio models needed); the prompt defaults to the sample's first prompt — or, in stage 2,
a raw portrait and speech file (``{image: me.png, audio: hi.wav, prompt: "..."}``) rendered by the inference
pipeline (:class:`emocast.pipelines.inference.EmoCASTPipeline` around the network being trained; needs the
face models and wav2vec2 in ``models.root``, loaded once).

* stage 1: ``<out>/step-<step>/<video_id>.png`` = [reference | face region | generated frame], sampled with
  DDIM (the training schedule's betas, zero-SNR, trailing, v-prediction) and CFG, spatial layers only;
* stage 2: ``<out>/step-<step>/<video_id>.mp4`` = one clip of ``validation.num_frames`` frames driven by the
  sample's audio features, through the sampler's conditioning (``emocast.pipelines.conditioning``), with the
  reference image as motion frames (like the first clip of a video) and the sample's audio muxed in.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import layout
from ..data.datasets import face_region_tensor, level_masks, to_pixels
from ..errors import ConfigError
from ..pipelines.scheduler import make_scheduler


def _raw_examples(task):
    """``[(image, audio, prompt)]`` of the examples given as raw files."""
    out = []
    for ex in task.cfg.validation.get("examples") or []:
        if isinstance(ex, str) or "sample" in ex:
            continue
        missing = [k for k in ("image", "audio") if not ex.get(k) or not Path(ex[k]).is_file()]
        if missing:
            raise ConfigError(f"validation example {dict(ex)}: {missing} missing; give existing files as "
                              "{image: <portrait>, audio: <speech>, prompt: ...} or a prepared {sample: <folder>}")
        out.append((Path(ex["image"]), Path(ex["audio"]), str(ex.get("prompt") or "")))
    return out


def _examples(task):
    vcfg = task.cfg.validation
    out = []
    for ex in vcfg.get("examples") or []:
        ex = dict(ex) if not isinstance(ex, str) else {"sample": ex}
        if "sample" not in ex:
            continue  # raw image/audio examples: stage 2 renders them with the inference pipeline
        folder = Path(ex["sample"])
        if not folder.is_dir():
            raise ConfigError(f"validation example {folder} is not a prepared sample folder (samples/<video_id>)")
        info = layout.read_info(folder)
        prompt = ex.get("prompt") or (info.prompts[0] if info.prompts else "")
        out.append((folder, info, prompt))
    return out


def _sampler(task):
    vcfg, ncfg = task.cfg.validation, task.cfg.noise
    sched = make_scheduler(beta_schedule=ncfg.get("beta_schedule", "linear"),
                           prediction_type=ncfg.get("prediction_type", "v_prediction"),
                           rescale_betas_zero_snr=bool(ncfg.get("zero_snr", True)))
    sched.set_timesteps(int(vcfg.get("steps", 20)), device=task.device)
    return sched


def _conditioning_inputs(task, folder, info, prompt, size):
    dev = task.device
    face_emb = torch.from_numpy(layout.read_face_emb(folder))[None].to(dev)
    face_region = face_region_tensor(layout.read_face_region(folder), size)[None].to(dev)
    text = task.text.encode(["", prompt])  # [uncond, cond]
    (ref_frame,) = layout.read_frames(folder, [0])
    ref_pix = to_pixels(ref_frame, size)[None]
    return face_emb, face_region, text, ref_frame, ref_pix


@torch.no_grad()
def render_stage1(task, module, step, out_dir) -> list[Path]:
    from PIL import Image

    from .stage1 import spatial_prediction

    examples = _examples(task)
    if not examples:
        return []
    vcfg = task.cfg.validation
    size = int(task.cfg.data.size)
    net = module.net
    was_training = net.training
    net.eval()
    paths = []
    try:
        for folder, info, prompt in examples:
            face_emb, face_region, text, ref_frame, ref_pix = _conditioning_inputs(task, folder, info, prompt, size)
            keep = {k: torch.tensor([False, True], device=task.device) for k in ("face", "face_region")}
            ehs, feature = module.conditioning(text, face_emb.expand(2, -1), face_region.expand(2, -1, -1, -1), keep)
            ref_lat = task.latents.encode(ref_pix)[:, None].expand(2, -1, -1, -1, -1)
            reference = net.reference_features(ref_lat, ehs, pairing=module.pairing)
            rows = torch.tensor([False, True], device=task.device)
            sched = _sampler(task)
            g = torch.Generator().manual_seed(int(vcfg.get("seed", 42)))
            lat = torch.randn((1, 4, 1, size // 8, size // 8), generator=g).to(task.device)
            for t in sched.timesteps:
                v = spatial_prediction(net.denoising_unet, lat.expand(2, -1, -1, -1, -1), t, ehs, feature, reference,
                                       rows).float()
                uncond, cond = v.chunk(2)
                lat = sched.step(uncond + float(vcfg.get("cfg_scale", 3.5)) * (cond - uncond), t, lat).prev_sample
            img = task.latents.decode(lat[:, :, 0])[0].permute(1, 2, 0).cpu().numpy()
            region = (face_region[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
            ref_small = np.asarray(Image.fromarray(ref_frame).resize((size, size)))
            row = np.concatenate([ref_small, region, (img * 255).astype(np.uint8)], axis=1)
            path = Path(out_dir) / f"step-{step:07d}" / f"{info.video_id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(row).save(path)
            paths.append(path)
    finally:
        net.train(was_training)
    return paths


def _audio_windows(features: torch.Tensor, frames: int, margin: int) -> torch.Tensor:
    """(N, L, D) → (1, frames, 2·margin+1, L, D) windows of the first ``frames`` frames, clamped at the ends."""
    n = features.shape[0]
    idx = (torch.arange(frames)[:, None] + torch.arange(-margin, margin + 1)[None]).clamp(0, n - 1)
    return features[idx][None]


@torch.no_grad()
def render_stage2(task, module, step, out_dir) -> list[Path]:
    from ..pipelines.conditioning import guide, model_output, prepare_clip, prepare_video
    from ..media.video_writer import VideoWriter

    examples = _examples(task)
    paths = render_stage2_pipeline(task, module, step, out_dir)
    if not examples:
        return paths
    vcfg, dcfg = task.cfg.validation, task.cfg.data
    size = int(dcfg.size)
    frames = int(vcfg.get("num_frames", dcfg.get("n_sample_frames", 14)))
    m = int(dcfg.get("n_motion_frames", 2))
    net = module.net
    was_training = net.training
    net.eval()
    try:
        for folder, info, prompt in examples:
            face_emb, face_region, text, _, ref_pix = _conditioning_inputs(task, folder, info, prompt, size)
            masks = layout.read_masks(folder)
            per = {k: level_masks(masks[k], size // 8) for k in ("full", "face", "lip")}
            video = prepare_video(net, text_emb=text[1:], uncond_text_emb=text[:1], face_emb=face_emb,
                                  face_region=face_region, full_masks=per["full"], face_masks=per["face"],
                                  lip_masks=per["lip"], guidance=True)
            ref_lat = task.latents.encode(ref_pix)
            audio = _audio_windows(layout.read_audio_emb(folder, dtype=torch.float32), frames,
                                   int(dcfg.get("audio_margin", 2))).to(task.device)
            clip = prepare_clip(net, video, ref_latents=ref_lat.repeat(1 + m, 1, 1, 1), audio_windows=audio,
                                pairing=module.pairing)
            sched = _sampler(task)
            g = torch.Generator().manual_seed(int(vcfg.get("seed", 42)))
            lat = torch.randn((1, 4, frames, size // 8, size // 8), generator=g).to(task.device)
            for t in sched.timesteps:
                v = guide(model_output(net, video, clip, lat, t).float(), float(vcfg.get("cfg_scale", 3.5)))
                lat = sched.step(v, t, lat).prev_sample
            video_frames = task.latents.decode(lat[0].transpose(0, 1))  # (F, 3, H, W) in [0, 1]
            path = Path(out_dir) / f"step-{step:07d}" / f"{info.video_id}.mp4"
            audio_path = folder / layout.AUDIO
            with VideoWriter(path, fps=info.fps, audio_path=audio_path if audio_path.is_file() else None,
                             preset="veryfast") as writer:
                writer.write(video_frames.cpu())
            paths.append(path)
    finally:
        net.train(was_training)
    return paths


def _pipeline(task, net):
    """An :class:`EmoCASTPipeline` around the training net (preprocessing models loaded once per run)."""
    from ..pipelines.inference import EmoCASTPipeline, PreprocessSettings
    from ..pipelines.sampler import SamplerSettings
    from ..preprocess.audio import Wav2VecFeatures
    from ..preprocess.face import FaceAnalyzer
    from ..preprocess.landmarks import Landmarker
    from ..preprocess.text import TextEncoder

    cache = getattr(task, "_validation_models", None)
    if cache is None:
        root = task.cfg.models.get("root")
        cache = (TextEncoder(root, task.device, task.weight_dtype), Wav2VecFeatures(root, task.device),
                 FaceAnalyzer(root, task.device), Landmarker(root))
        task._validation_models = cache
    vcfg, dcfg = task.cfg.validation, task.cfg.data
    settings = SamplerSettings(steps=int(vcfg.get("steps", 20)), cfg_scale=float(vcfg.get("cfg_scale", 3.5)),
                               clip_length=int(vcfg.get("num_frames", dcfg.get("n_sample_frames", 14))),
                               motion_frames=int(dcfg.get("n_motion_frames", 2)),
                               reference_pairing=task.cfg.train.get("reference_pairing", "matched"),
                               audio_margin=int(dcfg.get("audio_margin", 2)))
    text, audio, faces, landmarker = cache
    return EmoCASTPipeline(net, task.latents.vae, text, audio, faces, landmarker, None, settings=settings,
                           preprocess=PreprocessSettings(separate_vocals=False), image_size=int(dcfg.size),
                           seed=int(vcfg.get("seed", 42)))


@torch.no_grad()
def render_stage2_pipeline(task, module, step, out_dir) -> list[Path]:
    """Stage-2 renders of raw (image, audio, prompt) examples through the inference pipeline."""
    examples = _raw_examples(task)
    if not examples:
        return []
    net = module.net
    was_training = net.training
    net.eval()
    paths = []
    try:
        pipe = _pipeline(task, net)
        for image, audio, prompt in examples:
            path = Path(out_dir) / f"step-{step:07d}" / f"{image.stem}_{audio.stem}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            paths.append(pipe.render(image, audio, prompt, path, progress=False))
    finally:
        net.train(was_training)
    return paths
