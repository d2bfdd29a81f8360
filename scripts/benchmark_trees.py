#!/usr/bin/env python
"""Compare the per-step time of the release settings across source trees, side by side: one process per tree and
round, the trees alternating round after round (machine load hits every tree alike), median ratios at the end.

Each run executes the same harness (below) against a tree's own ``emocast`` package: the full-size networks with
random weights built by the tree's ``scripts/benchmark.py``, the same seeded inputs, the per-video and per-clip
conditioning through the tree's ``emocast.pipelines.conditioning``, then ``--steps`` denoising steps (the
network on the CFG batch, the guidance mix, the DDIM update), timed one by one in wall-clock and in CPU time of
the process (the latter is what a loaded machine distorts least). Trees from commit 566fb0c on have this API.

A variant is ``NAME=TREE`` or ``NAME=TREE:VAR=VALUE,VAR=VALUE`` (extra environment variables, e.g. glibc's
``MALLOC_TOP_PAD_``). Example (docs/benchmarks.md):

  git worktree add /tmp/emocast-base 566fb0c
  python scripts/benchmark_trees.py --rounds 5 --variant base=/tmp/emocast-base --variant new=. \\
      --resolution 128 --frames 4 --steps 3 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HARNESS = r'''
import importlib.util, json, sys, time
import torch
tree, res, frames, steps, threads, dtype_name = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
sys.path.insert(0, tree)
torch.set_num_threads(threads)
spec = importlib.util.spec_from_file_location("tree_benchmark", tree + "/scripts/benchmark.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
from emocast.models import resolve_config
from emocast.pipelines import conditioning
from emocast.pipelines.scheduler import make_scheduler
from emocast.preprocess.masks import level_sizes
dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
cfg = resolve_config("sd15")
net = bench.build_random(cfg, torch.device("cpu"), dtype).requires_grad_(False)
g = torch.Generator().manual_seed(0)
rnd = lambda *shape: torch.randn(*shape, generator=g)
D, lat = cfg.cross_attention_dim, res // 8
masks = [torch.rand(s * s, generator=g) for s in level_sizes(res, cfg.num_levels)]
clock = lambda: (time.perf_counter(), time.process_time())
with torch.inference_mode():
    video = conditioning.prepare_video(net, text_emb=rnd(1, 77, D), uncond_text_emb=rnd(1, 77, D),
                                       face_emb=rnd(1, cfg.face_embedding_dim), face_region=torch.rand(1, 3, res, res, generator=g),
                                       full_masks=masks, face_masks=masks, lip_masks=masks, guidance=True)
    windows = rnd(1, frames, cfg.audio_window, cfg.audio_layers, cfg.audio_feature_dim)
    w0, c0 = clock()
    clip = conditioning.prepare_clip(net, video, ref_latents=rnd(3, 4, lat, lat), audio_windows=windows)
    w1, c1 = clock()
    sched = make_scheduler()
    sched.set_timesteps(max(steps, 2))
    x = rnd(1, 4, frames, lat, lat).to(dtype)
    walls, cpus = [], []
    for t in sched.timesteps[:steps]:
        w, c = clock()
        v = conditioning.guide(conditioning.model_output(net, video, clip, x, t), 3.5)
        x = sched.step(v, t, x).prev_sample
        w2, c2 = clock()
        walls.append(w2 - w)
        cpus.append(c2 - c)
warm = slice(1, None) if steps > 1 else slice(None)
print(json.dumps({"s_per_step": sum(walls[warm]) / len(walls[warm]), "cpu_s_per_step": sum(cpus[warm]) / len(cpus[warm]),
                  "first_step_s": walls[0], "clip_prepare_s": w1 - w0, "clip_prepare_cpu_s": c1 - c0,
                  "steps_s": walls, "steps_cpu_s": cpus, "torch": torch.__version__, "threads": torch.get_num_threads()}))
'''


def parse_variant(text: str):
    name, _, rest = text.partition("=")
    tree, _, env = rest.partition(":")
    extra = dict(item.split("=", 1) for item in env.split(",") if item) if env else {}
    if not name or not tree:
        raise SystemExit(f"--variant must be NAME=TREE[:VAR=VALUE,...], got {text!r}")
    return name, Path(tree).resolve(), extra


def run(tree: Path, env: dict, args) -> dict:
    cmd = [sys.executable, "-c", HARNESS, str(tree), str(args.resolution), str(args.frames), str(args.steps),
           str(args.threads), args.dtype]
    proc = subprocess.run(cmd, cwd=tree, env={**os.environ, "OMP_NUM_THREADS": str(args.threads), **env},
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{tree}: the harness failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="scripts/benchmark_trees.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", required=True, help="NAME=TREE[:VAR=VALUE,...] (first = baseline)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--output", help="also write the JSON to this file")
    args = p.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    results = {name: [] for name, _, _ in variants}
    for r in range(args.rounds):
        for name, tree, env in variants:
            res = run(tree, env, args)
            results[name].append(res)
            print(f"round {r + 1} {name}: s/step {res['s_per_step']:.3f}, CPU s/step {res['cpu_s_per_step']:.3f}, "
                  f"clip prepare {res['clip_prepare_s']:.2f} s", flush=True)
    base = variants[0][0]
    summary = {}
    for key in ("s_per_step", "cpu_s_per_step", "clip_prepare_s"):
        med = {name: statistics.median(x[key] for x in runs) for name, runs in results.items()}
        summary[key] = {name: {"median": round(m, 4), f"speedup_vs_{base}": round(med[base] / m, 3)}
                        for name, m in med.items()}
    report = {"command": sys.argv, "settings": vars(args) | {"variant": args.variant},
              "variants": {n: {"tree": str(t), "env": e} for n, t, e in variants}, "runs": results, "summary": summary}
    print(json.dumps(summary, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
