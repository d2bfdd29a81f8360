"""Exact network FLOPs of one clip, counted with ``torch.utils.flop_counter`` (matmuls, convolutions and attention:
2 x multiply-accumulates; normalisations and elementwise work are not counted, as in spec §12).

The count runs the sampler's own calls — the clip's conditioning (:func:`~emocast.pipelines.conditioning
.prepare_clip`: audio projection, reference pass, step cache) and every step of its plan
(:class:`~emocast.pipelines.denoise.GuidedPrediction`) — so it counts what a render does, preset by preset.
On a network built on the ``meta`` device (``build_net(config, device="meta")``) nothing is computed, only
shapes: the full-size network at 512x512 and 16 frames is counted in seconds on any machine.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..preprocess.masks import level_sizes
from . import conditioning
from .denoise import GuidedPrediction
from .sampler import SamplerSettings
from .scheduler import make_scheduler


def _inputs(net, size: int, frames: int, motion_frames: int, device):
    cfg = net.config
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        x = torch.randn(*shape, generator=g) if str(device) != "meta" else torch.empty(*shape)
        return x.to(device)

    masks = [rnd(side * side) for side in level_sizes(size, cfg.num_levels)]
    lat = size // 8
    return dict(text=rnd(1, 77, cfg.cross_attention_dim), uncond=rnd(1, 77, cfg.cross_attention_dim),
                face=rnd(1, cfg.face_embedding_dim), region=rnd(1, cfg.face_locator_in_channels, size, size),
                masks=masks, ref=rnd(1 + motion_frames, cfg.in_channels, lat, lat),
                windows=rnd(1, frames, cfg.audio_window, cfg.audio_layers, cfg.audio_feature_dim),
                latents=rnd(1, cfg.in_channels, frames, lat, lat))


@torch.inference_mode()
def clip_flops(net, settings: SamplerSettings, size: int) -> dict[str, int]:
    """FLOPs of one clip of ``settings.clip_length`` frames at ``size`` x ``size`` pixels with the sampler
    ``settings`` (solver steps, guidance, plan): ``reference_pass`` (ReferenceNet and audio projection of a later
    clip, whose reference image's share comes from the first clip), ``step_cache`` (the UNet's step-invariant work),
    ``denoising`` (every step of the plan), ``first_clip_extra`` (what the first clip adds: the reference image in
    the ReferenceNet and its keys/values) and ``total`` (a later clip's sum)."""
    device = net.device
    x = _inputs(net, size, settings.clip_length, settings.motion_frames, device)
    video = conditioning.prepare_video(net, text_emb=x["text"], uncond_text_emb=x["uncond"], face_emb=x["face"],
                                       face_region=x["region"], full_masks=x["masks"], face_masks=x["masks"],
                                       lip_masks=x["masks"], keep=settings.keep())
    kw = dict(ref_latents=x["ref"], audio_windows=x["windows"], pairing=settings.reference_pairing,
              bank_dtype=settings.bank_dtype)
    counts = {}
    with FlopCounterMode(display=False) as fc:
        first = conditioning.prepare_clip(net, video, **kw)
    first_total = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        clip = conditioning.prepare_clip(net, video, cache=False, reference=first.video_reference(), **kw)
    counts["reference_pass"] = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        clip = conditioning.prepare_clip(net, video, reference=first.video_reference(), **kw)
    counts["step_cache"] = fc.get_total_flops() - counts["reference_pass"]
    counts["first_clip_extra"] = first_total - counts["reference_pass"] - counts["step_cache"]
    scheduler = make_scheduler(settings.schedule, settings.solver)
    scheduler.set_timesteps(settings.steps)
    predict = GuidedPrediction(net, video, clip, settings.cfg_scale, settings.audio_weights, plan=settings.plan(),
                               deep_cache_depth=settings.deep_cache_depth)
    # a step's FLOPs depend only on its rows and whether it reuses the deep features: count each kind once (a full
    # step whose rows differ from the last one run is run again, so that the next reusing step finds its features)
    seen, last_full, total = {}, None, 0
    for i, t in enumerate(scheduler.timesteps):
        step = predict.step(i)
        kind = (step.rows, step.reuse_deep)
        if kind not in seen or (not step.reuse_deep and step.rows != last_full):
            with FlopCounterMode(display=False) as fc:
                predict(x["latents"], int(t), i)
            seen[kind] = fc.get_total_flops()
            last_full = step.rows if not step.reuse_deep else last_full
        total += seen[kind]
    counts["denoising"] = total
    counts["total"] = counts["reference_pass"] + counts["step_cache"] + counts["denoising"]
    return counts
