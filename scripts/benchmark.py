#!/usr/bin/env python
"""Time every inference preset side by side: the full-size architecture with random (or golden) weights, nothing
downloaded, one process, the same weights, inputs and seed for every preset.

Builds the released network sizes (SD-1.5 UNets + motion/audio modules, 2.49 B parameters) and an SD-size VAE,
then renders one clip per preset exactly as the sampler does (VAE encode, reference pass, the preset's solver
steps and plan, VAE decode) and a second clip's preparation (a later clip reuses the reference image's share of
the reference pass). Prints a table and a JSON report: seconds per step and per clip, device-seconds per second
of video, network FLOPs per clip (counted with torch.utils.flop_counter on a shape-only copy), ratios to
``release``, peak memory (GPU allocator and host RSS, per preset) and the PSNR of each preset's decoded frames
against ``release``'s (a deviation, not a quality measure: random weights). Examples:

  python scripts/benchmark.py --device cuda --dtype fp16 --compile both     # 512², 16 frames, every preset
  python scripts/benchmark.py --device cpu --dtype fp32 --resolution 128 --frames 4 --threads 1
  python scripts/benchmark.py --presets release --steps 3 --no-vae          # release's per-step time only
  python scripts/benchmark.py --separate_guidance 4.5 2.0   # also every preset with separate audio/emotion guidance
                                                            # (three rows: the cost of the emotion control)
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


WARMUP_STEPS = 4


def build_parser():
    from emocast.pipelines.presets import presets_for

    ddim = ",".join(presets_for("ddim"))
    p = argparse.ArgumentParser(prog="scripts/benchmark.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=ddim,
                   help=f"comma-separated presets to run, release first (default and choices: {ddim}; the turbo "
                        "preset samples a distilled student, whose cost tests/test_distill.py counts)")
    p.add_argument("--resolution", type=int, default=512, help="square image size, multiple of 64 (default 512)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--motion_frames", type=int, default=2, help="motion frames (default 2)")
    p.add_argument("--steps", type=int, default=None, help="override every preset's step count (default: theirs)")
    p.add_argument("--cfg_scale", type=float, default=3.5, help="<= 1 times the loop without the CFG branch")
    p.add_argument("--separate_guidance", type=float, nargs=2, metavar=("AUDIO", "EMOTION"),
                   help="also run every preset with these separate audio/emotion guidance scales (rows named "
                        "<preset>+separate: three rows [nothing, no text, everything] instead of two)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="fp16 | bf16 | fp32 (default: fp16 on cuda, fp32 on cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--compile", choices=["off", "on", "both"], default="off",
                   help="torch.compile the denoising UNet's blocks: off, on, or both (every preset eager, then "
                        "compiled; default off)")
    p.add_argument("--weights", choices=["random", "golden"], default="random",
                   help="random (fast to build) or golden (tests/fixtures/parity's deterministic weights)")
    p.add_argument("--no-vae", dest="vae", action="store_false", help="skip the VAE (PSNR on latents instead)")
    p.add_argument("--net", default="sd15", help="network size: sd15 (released, default) | tiny")
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


def build_net(config, device, dtype, weights: str = "random"):
    """The networks built on the meta device, materialised directly in ``dtype`` on ``device`` (no fp32 copy)."""
    from emocast.models import build_net as build
    from emocast.models.golden import fill_golden

    net = build(config, device="meta").to(dtype=dtype).to_empty(device=device)
    if weights == "golden":
        fill_golden(net)
    else:
        init_random_(net)
    return net.eval().requires_grad_(False)


build_random = build_net  # the name older drivers use


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
    return vae.eval().requires_grad_(False)


class PeakMemory:
    """Peak memory since :meth:`reset`: the CUDA allocator's, and the host's resident set (Linux: VmHWM, reset
    through /proc/self/clear_refs; elsewhere the process-lifetime maximum)."""

    def __init__(self, device):
        self.device = device

    def reset(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def read(self) -> dict:
        import torch

        out = {}
        try:
            status = Path("/proc/self/status").read_text()
            kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            out["peak_host_rss_gb"] = round(kib / 1024 ** 2, 2)
        except (OSError, StopIteration):
            out["peak_host_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)
        if self.device.type == "cuda":
            out["peak_gpu_allocated_gb"] = round(torch.cuda.max_memory_allocated(self.device) / 1024 ** 3, 2)
            out["peak_gpu_reserved_gb"] = round(torch.cuda.max_memory_reserved(self.device) / 1024 ** 3, 2)
        return out


def psnr(a, b) -> float:
    """PSNR in dB of ``a`` against ``b`` for values in [0, 1]."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def preset_settings(name: str, args, separate: bool = False):
    """The sampler settings of preset ``name`` as the inference config resolves them (release card); ``separate``:
    with ``--separate_guidance``'s audio and emotion scales."""
    from emocast import config as config_mod
    from emocast.pipelines.card import RELEASE_CARD
    from emocast.pipelines.config import InferenceConfig
    from emocast.pipelines.inference import resolve_sampling

    values = {"preset": name, "cfg_scale": args.cfg_scale}
    if separate:
        values["audio_guidance"], values["emotion_guidance"] = args.separate_guidance
    if args.steps:
        values["inference_steps"] = args.steps
    cfg = config_mod.load(InferenceConfig, values=values)
    settings = resolve_sampling(cfg, RELEASE_CARD, found=False).settings
    settings.clip_length, settings.motion_frames = args.frames, args.motion_frames
    return settings


def run_preset(name, settings, net, codec, inputs, device, synchronize):
    """One clip with ``settings`` (timed piece by piece) and a later clip's preparation."""
    import torch

    from emocast.pipelines.sampler import ClipSampler
    from emocast.pipelines.scheduler import make_generator

    sampler = ClipSampler(net, codec, settings)
    times = {}

    def timed(key, fn):
        synchronize(device)
        t = time.perf_counter()
        out = fn()
        synchronize(device)
        times[key] = time.perf_counter() - t
        return out

    with torch.inference_mode():
        video = sampler.prepare_video(**inputs["video"])
        if codec is not None:
            ref_latent = timed("vae_encode_s", lambda: codec.encode(inputs["ref_pixels"]))
            motion = codec.encode(inputs["motion_pixels"])
        else:
            ref_latent, motion = inputs["ref_latent"], inputs["motion_latents"]
        ref_latents = torch.cat([ref_latent, ref_latent.expand(settings.motion_frames, -1, -1, -1)])
        clip = timed("first_clip_prepare_s", lambda: sampler.prepare_clip(video, ref_latents, inputs["windows"]))
        later = torch.cat([ref_latent, motion])
        times["clip_prepare_s"] = 0.0
        timed("clip_prepare_s", lambda: sampler.prepare_clip(video, later, inputs["windows"], clip.video_reference()))
        marks = []

        def tick(state):
            synchronize(device)
            marks.append(time.perf_counter())

        latents0 = sampler.initial_latents(make_generator(42), ref_latents, inputs["windows"])
        synchronize(device)
        start = time.perf_counter()
        latents = sampler.denoise_clip(video, clip, latents0, progress=False, callback=tick)
        steps = [b - a for a, b in zip([start] + marks[:-1], marks)]
        frames = timed("vae_decode_s", lambda: sampler.decode(latents)) if codec is not None else latents.float().cpu()
    warm = steps[1:] or steps
    return times, steps, sum(warm) / len(warm), frames


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from emocast.errors import ConfigError
    from emocast.models import build_net as build_meta, resolve_config
    from emocast.models.vae import VaeCodec
    from emocast.pipelines.flops import clip_flops
    from emocast.pipelines.presets import get_preset
    from emocast.preprocess.masks import level_sizes
    from emocast.runtime import dtype_name, select_device, select_dtype, synchronize, tune_cpu_allocator

    if args.resolution % 64 or args.resolution < 64:
        raise ConfigError(f"--resolution must be a multiple of 64, got {args.resolution}")
    if args.frames < 1 or (args.steps is not None and args.steps < 1):
        raise ConfigError("--frames and --steps must be at least 1")
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    for n in names:
        if get_preset(n).sampler != "ddim":
            raise ConfigError(f"--presets {n}: the benchmark times the presets of one (DDIM-trained) network; {n} "
                              "samples a consistency-distilled student (its FLOPs per clip are counted in "
                              "tests/test_distill.py and docs/training.md §8). Fix: leave it out of --presets")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    dtype = select_dtype(args.dtype, device)
    allocator = tune_cpu_allocator() if device.type == "cpu" else False
    cfg = resolve_config(args.net)
    memory = PeakMemory(device)

    t0 = time.perf_counter()
    with torch.no_grad():  # a context, never the global switch: main() also runs in-process (tests)
        net = build_net(cfg, device, dtype, args.weights)
        vae = build_vae(device, dtype, tiny=args.net == "tiny") if args.vae else None
    synchronize(device)
    build_s = time.perf_counter() - t0
    codec = VaeCodec(vae) if vae is not None else None

    s, lat = args.resolution, args.resolution // 8
    g = torch.Generator().manual_seed(0)
    rnd = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    D = cfg.cross_attention_dim
    masks = [torch.rand(side * side, generator=g) for side in level_sizes(s, cfg.num_levels)]
    inputs = {
        "video": dict(text_emb=rnd(1, 77, D), uncond_text_emb=rnd(1, 77, D), face_emb=rnd(1, cfg.face_embedding_dim),
                      face_region=torch.rand(1, 3, s, s, generator=g), full_masks=masks, face_masks=masks,
                      lip_masks=masks),
        "windows": rnd(1, args.frames, cfg.audio_window, cfg.audio_layers, cfg.audio_feature_dim),
        "ref_pixels": torch.rand(1, 3, s, s, generator=g) * 2 - 1,
        "motion_pixels": torch.rand(args.motion_frames, 3, s, s, generator=g) * 2 - 1,
        "ref_latent": rnd(1, 4, lat, lat).to(device, dtype),
        "motion_latents": rnd(args.motion_frames, 4, lat, lat).to(device, dtype),
    }
    meta = build_meta(cfg, device="meta").to(dtype).eval()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    runs, reference_frames = [], None
    for compiled in modes:
        compile_s = None
        if compiled:
            t = time.perf_counter()
            net.denoising_unet.compile_blocks()
            compile_s = time.perf_counter() - t  # wrapping only; the compilation happens in the first calls
        variants = [(n, False) for n in names] + ([(n, True) for n in names] if args.separate_guidance else [])
        for name, separate in variants:
            settings = preset_settings(name, args, separate)
            # allocations, kernel choice, compilation: 4 steps hold every kind of step of the presets' plans
            # (guided and unguided rows, full and DeepCache passes), so no step of the timed clip compiles
            warmup = settings.__class__(**{**vars(settings), "steps": min(settings.steps, WARMUP_STEPS)})
            memory.reset()
            t = time.perf_counter()
            run_preset(name, warmup, net, codec, inputs, device, synchronize)
            warmup_s = time.perf_counter() - t
            memory.reset()
            times, steps, s_per_step, frames = run_preset(name, settings, net, codec, inputs, device, synchronize)
            peaks = memory.read()
            flops = clip_flops(meta, settings, s)
            if reference_frames is None:
                reference_frames = frames
            per_clip = times["clip_prepare_s"] + sum(steps) + (times.get("vae_encode_s") or 0) + \
                (times.get("vae_decode_s") or 0)
            runs.append({
                "preset": name + ("+separate" if separate else ""), "compile": compiled, "solver": settings.solver,
                "steps": settings.steps, "rows": len(settings.row_names()),
                "guidance_scales": list(settings.guidance_scales),
                "guidance_interval": list(settings.guidance_interval),
                "deep_cache_interval": settings.deep_cache_interval,
                "s_per_step": round(s_per_step, 4), "first_step_s": round(steps[0], 4),
                "denoise_s": round(sum(steps), 3),
                "first_clip_prepare_s": round(times["first_clip_prepare_s"], 3),
                "clip_prepare_s": round(times["clip_prepare_s"], 3),
                "vae_encode_s": None if codec is None else round(times["vae_encode_s"], 3),
                "vae_decode_s": None if codec is None else round(times["vae_decode_s"], 3),
                "s_per_clip": round(per_clip, 3),
                "device_s_per_video_s": round(per_clip / (args.frames / 25.0), 2),
                "warmup_s": round(warmup_s, 2), "compile_wrap_s": None if compile_s is None else round(compile_s, 2),
                "unet_tflop_per_clip": round(flops["total"] / 1e12, 4),
                "flops": flops,
                f"psnr_vs_release_{'frames' if codec is not None else 'latents'}_db":
                    round(psnr(frames, reference_frames), 2) if codec is not None else
                    round(psnr((frames.clamp(-4, 4) + 4) / 8, (reference_frames.clamp(-4, 4) + 4) / 8), 2),
                **peaks,
            })
    base = {r["compile"]: r for r in runs if r["preset"] == names[0]}
    for r in runs:
        ref = base.get(False) or base[r["compile"]]
        r["flop_ratio"] = round(r["flops"]["total"] / ref["flops"]["total"], 4)
        r["time_ratio_per_clip"] = round(r["s_per_clip"] / ref["s_per_clip"], 4)
    report = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or
        platform.machine(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "torch_threads": torch.get_num_threads(),
        "cpu_allocator_tuned": allocator, "dtype": dtype_name(dtype), "net": args.net, "weights": args.weights,
        "parameters": sum(p.numel() for p in net.parameters()), "resolution": s, "frames": args.frames,
        "motion_frames": args.motion_frames, "cfg_scale": args.cfg_scale, "build_s": round(build_s, 2),
        "relative_to": names[0], "runs": runs,
    }
    print(table(report))
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


def table(report) -> str:
    cols = [("preset", "preset"), ("compile", "compile"), ("steps", "steps"), ("rows", "rows"), ("s/step", "s_per_step"),
            ("s/clip", "s_per_clip"), ("dev-s/video-s", "device_s_per_video_s"), ("TFLOP/clip", "unet_tflop_per_clip"),
            ("FLOP ratio", "flop_ratio"), ("time ratio", "time_ratio_per_clip")]
    psnr_key = next((k for k in report["runs"][0] if k.startswith("psnr_vs_release")), None)
    cols += [("PSNR vs release", psnr_key), ("peak GPU GB", "peak_gpu_allocated_gb"), ("peak RSS GB", "peak_host_rss_gb")]
    rows = [[str(r.get(key, "-")) for _, key in cols] for r in report["runs"]]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, (h, _) in enumerate(cols)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line([h for h, _ in cols]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(row) for row in rows])


if __name__ == "__main__":
    sys.exit(run_main(main))
