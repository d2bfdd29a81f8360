#!/usr/bin/env python
"""Compare the release preset's per-step time of source trees side by side: run each tree's own
scripts/benchmark.py in turn, round after round (alternating, so that machine load hits every tree alike), and
report each run and the median ratios to the first variant.

A variant is ``NAME=TREE`` or ``NAME=TREE:VAR=VALUE,VAR=VALUE`` (extra environment variables). Arguments after
``--`` go to every tree's benchmark (it must print JSON with ``s_per_step`` at the top level, as before the preset
benchmark, or in ``runs[0]``; a preset benchmark also gets ``--presets release``). Example (docs/benchmarks.md):

  git worktree add /tmp/emocast-base 566fb0c
  python scripts/benchmark_trees.py --rounds 3 --variant base=/tmp/emocast-base --variant new=. -- \\
      --device cpu --dtype fp32 --resolution 128 --frames 4 --steps 3 --threads 1 --no-vae
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def parse_variant(text: str):
    name, _, rest = text.partition("=")
    tree, _, env = rest.partition(":")
    extra = dict(item.split("=", 1) for item in env.split(",") if item) if env else {}
    if not name or not tree:
        raise SystemExit(f"--variant must be NAME=TREE[:VAR=VALUE,...], got {text!r}")
    return name, Path(tree).resolve(), extra


def run(tree: Path, env: dict, args: list[str]) -> dict:
    script = tree / "scripts" / "benchmark.py"
    if "--presets" in script.read_text(encoding="utf-8"):  # a preset benchmark: time the release preset only
        args = [*args, "--presets", "release"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *args], cwd=tree,
                          env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{tree}: benchmark failed:\n{proc.stderr[-3000:]}")
    out = proc.stdout
    report = json.loads(out[out.index("{"):])
    run0 = report["runs"][0] if "runs" in report else report
    return {"s_per_step": run0["s_per_step"], "first_step_s": run0.get("first_step_s"),
            "process_wall_s": round(wall, 1),
            "process_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bench_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="scripts/benchmark_trees.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", required=True, help="NAME=TREE[:VAR=VALUE,...] (first = baseline)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--output", help="also write the JSON to this file")
    args = p.parse_args(own)
    variants = [parse_variant(v) for v in args.variant]
    results = {name: [] for name, _, _ in variants}
    for r in range(args.rounds):
        for name, tree, env in variants:
            res = run(tree, env, bench_args)
            results[name].append(res)
            print(f"round {r + 1} {name}: {res}", flush=True)
    base = variants[0][0]
    med = {name: statistics.median(x["s_per_step"] for x in runs) for name, runs in results.items()}
    summary = {name: {"median_s_per_step": m, "speedup_vs_" + base: round(med[base] / m, 3)} for name, m in med.items()}
    report = {"benchmark_args": bench_args, "variants": {n: {"tree": str(t), "env": e} for n, t, e in variants},
              "runs": results, "summary": summary}
    print(json.dumps(report, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
