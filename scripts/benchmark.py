#!/usr/bin/env python
"""Time the EmoCAST denoising loop with the full-size architecture and random weights (nothing downloaded).

Builds the released network sizes (SD-1.5 UNets + motion/audio modules, 2.49 B parameters) and an SD-size VAE
with random weights, then runs one clip exactly as the sampler does (reference pass, DDIM steps with CFG, VAE
encode/decode) and prints a JSON report: seconds per step and per clip, device-seconds per second of video,
peak memory. Examples:

  python scripts/benchmark.py --device cuda --dtype fp16                 # released settings: 512², 16 frames, 40 steps
  python scripts/benchmark.py --device cpu --dtype fp32 --resolution 128 --frames 4 --steps 2 --threads 2
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import run_main  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(prog="scripts/benchmark.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=512, help="square image size, multiple of 64 (default 512)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--motion_frames", type=int, default=2, help="motion frames (default 2)")
    p.add_argument("--steps", type=int, default=40, help="denoising steps (default 40)")
    p.add_argument("--cfg_scale", type=float, default=3.5, help="<= 1 times the loop without the CFG branch")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="fp16 | bf16 | fp32 (default: fp16 on cuda, fp32 on cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-vae", dest="vae", action="store_false", help="skip the VAE encode/decode timing")
    p.add_argument("--preset", default="sd15", help="network size preset: sd15 (released, default) | tiny")
    p.add_argument("--output", help="also write the JSON report to this file")
    return p


def init_random_(module, seed: int = 0) -> None:
    """Fill every parameter/buffer in place: matrices ~ N(0, 1/fan_in), norm weights ~ 1, biases ~ 0 (sane
    activations; uninitialised memory could hold NaNs/denormals that distort timings)."""
    import torch

    device = next(module.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)  # drawn on the target device (fast on a GPU)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point():
                continue
            x = torch.randn(t.shape, generator=g, dtype=torch.float32, device=t.device)
            if t.ndim == 1:
                x = 1 + 0.1 * x if name.endswith("weight") else 0.02 * x
            else:
                x = x / math.sqrt(max(1, t[0].numel()))
            t.copy_(x.to(t.dtype))


def build_random(preset, device, dtype):
    """The networks built on the meta device, materialised directly in ``dtype`` on ``device`` (no fp32 copy)."""
    from emocast.models import build_net

    net = build_net(preset, device="meta").to(dtype=dtype).to_empty(device=device)
    init_random_(net)
    return net.eval()


def build_vae(device, dtype, tiny: bool):
    from diffusers import AutoencoderKL

    if tiny:
        vae = AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                            block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=4)
    else:  # sd-vae-ft-mse architecture
        vae = AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                            block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4,
                            norm_num_groups=32, sample_size=512)
    vae = vae.to(device=device, dtype=dtype)
    init_random_(vae, seed=1)
    return vae.eval()


def peak_memory_gb(device) -> dict:
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB -> GiB (Linux)
    out = {"peak_host_rss_gb": round(rss, 2)}
    if device.type == "cuda":
        out["peak_gpu_allocated_gb"] = round(torch.cuda.max_memory_allocated(device) / 1024 ** 3, 2)
        out["peak_gpu_reserved_gb"] = round(torch.cuda.max_memory_reserved(device) / 1024 ** 3, 2)
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from emocast.errors import ConfigError
    from emocast.models import resolve_config
    from emocast.models.vae import VaeCodec
    from emocast.pipelines import conditioning
    from emocast.pipelines.sampler import ClipSampler, SamplerSettings
    from emocast.pipelines.scheduler import make_generator
    from emocast.preprocess.masks import level_sizes
    from emocast.runtime import dtype_name, select_device, select_dtype, synchronize

    if args.resolution % 64 or args.resolution < 64:
        raise ConfigError(f"--resolution must be a multiple of 64, got {args.resolution}")
    if args.frames < 1 or args.steps < 1:
        raise ConfigError("--frames and --steps must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    dtype = select_dtype(args.dtype, device)
    cfg = resolve_config(args.preset)
    settings = SamplerSettings(steps=args.steps, cfg_scale=args.cfg_scale, clip_length=args.frames,
                               motion_frames=args.motion_frames)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    t0 = time.perf_counter()
    with torch.no_grad():  # a context, never the global switch: main() also runs in-process (tests)
        net = build_random(cfg, device, dtype).requires_grad_(False)
        vae = build_vae(device, dtype, tiny=args.preset == "tiny") if args.vae else None
    synchronize(device)
    build_s = time.perf_counter() - t0
    sampler = ClipSampler(net, VaeCodec(vae) if vae is not None else None, settings)

    s, lat = args.resolution, args.resolution // 8
    g = torch.Generator().manual_seed(0)
    rnd = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    D = cfg.cross_attention_dim
    masks = [torch.rand(side * side, generator=g) for side in level_sizes(s, cfg.num_levels)]
    with torch.inference_mode():
        video = sampler.prepare_video(
            text_emb=rnd(1, 77, D), uncond_text_emb=rnd(1, 77, D), face_emb=rnd(1, cfg.face_embedding_dim),
            face_region=torch.rand(1, 3, s, s, generator=g), full_masks=masks, face_masks=masks, lip_masks=masks)
        windows = rnd(1, args.frames, cfg.audio_window, cfg.audio_layers, cfg.audio_feature_dim)

        timings = {}
        synchronize(device)
        t = time.perf_counter()
        if vae is not None:
            pixels = torch.rand(1 + args.motion_frames, 3, s, s, generator=g) * 2 - 1
            ref_latents = sampler.codec.encode(pixels)
        else:
            ref_latents = rnd(1 + args.motion_frames, 4, lat, lat).to(device, dtype)
        synchronize(device)
        timings["vae_encode_s"] = time.perf_counter() - t if vae is not None else None

        t = time.perf_counter()  # the reference pass alone (sample_clip below runs it once more, before step 0)
        conditioning.prepare_clip(net, video, ref_latents=ref_latents, audio_windows=windows)
        synchronize(device)
        timings["reference_pass_s"] = time.perf_counter() - t

        marks = []

        def tick(state):
            synchronize(device)
            marks.append(time.perf_counter())

        synchronize(device)
        t_start = time.perf_counter()
        latents = sampler.sample_clip(video, ref_latents, windows, make_generator(42), callback=tick)
        # step i = mark i - mark i-1; the first one also holds the clip's reference pass, which is subtracted
        step_times = [b - a for a, b in zip([t_start] + marks[:-1], marks)]
        step_times[0] = max(step_times[0] - timings["reference_pass_s"], 0.0)

        t = time.perf_counter()
        if vae is not None:
            sampler.decode(latents)
            synchronize(device)
        timings["vae_decode_s"] = time.perf_counter() - t if vae is not None else None

    warm = step_times[1:] or step_times
    s_per_step = sum(warm) / len(warm)
    per_clip = timings["reference_pass_s"] + s_per_step * args.steps + (timings["vae_encode_s"] or 0) + \
        (timings["vae_decode_s"] or 0)
    video_seconds = args.frames / 25.0
    report = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or
        platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "dtype": dtype_name(dtype),
        "preset": args.preset,
        "parameters": sum(p.numel() for p in net.parameters()),
        "resolution": s,
        "frames": args.frames,
        "motion_frames": args.motion_frames,
        "steps": args.steps,
        "cfg": settings.guidance,
        "build_s": round(build_s, 2),
        "first_step_s": round(step_times[0], 3),
        "s_per_step": round(s_per_step, 3),
        "reference_pass_s": round(timings["reference_pass_s"], 3),
        "vae_encode_s": None if timings["vae_encode_s"] is None else round(timings["vae_encode_s"], 3),
        "vae_decode_s": None if timings["vae_decode_s"] is None else round(timings["vae_decode_s"], 3),
        "s_per_clip": round(per_clip, 2),
        "device_s_per_video_s": round(per_clip / video_seconds, 2),
        **peak_memory_gb(device),
        "torch": torch.__version__,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
