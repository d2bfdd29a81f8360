#!/usr/bin/env python
"""Write the stage-1 and stage-2 meta JSON files of a prepared dataset (scripts/data_preprocess.py output).

Examples:
  python scripts/extract_meta_info.py --root datasets/mead      # -> datasets/mead/mead_stage{1,2}.json
  python scripts/extract_meta_info.py --root datasets/wild --name wild --out data/ stage2.min_sync_confidence=3 \
      stage2.max_sync_dist=9 stage2.missing_sync=drop

Writes <out>/<name>_stage1.json and <out>/<name>_stage2.json (default: name = the root folder's name, out = the
root: datasets/<name>/<name>_<stage>.json, where the training configs look by default): format_version, stage, the
dataset root (relative to the meta file's folder) and per video its folder relative to the root, identity,
emotion, intensity, prompts, SyncNet scores and frame count. Videos with missing or broken artifacts, too few
frames, audio/video length mismatch, or outside the emotion / lip-sync filters are left out and listed in
<out>/<name>_rejected.json with the reason. Videos of held-out identities (--holdout, default: the four MEAD test
subjects M003, M030, W009, W015 of the paper's Table 2) never enter a meta file; the count is printed.

Settings: the filter defaults live in the schema (emocast.data.config.MetaConfig, one section per stage); -c FILE
applies a YAML file on top (configs/data/meta_lipsync.yaml is an example), key=value arguments override it, e.g.
  stage2.min_frames=50 stage1.emotions=[neutral,happy]
Unknown keys and wrong values fail with one message naming the key; --print_config shows every key.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import add_config_arguments, config_from_args, print_config, run_main  # noqa: E402

STAGES = ("stage1", "stage2")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="prepared dataset root (holds samples/), e.g. datasets/mead")
    p.add_argument("--name", default=None, help="file name prefix (default: the root folder's name)")
    p.add_argument("--out", default=None, help="folder for the meta files (default: the dataset root)")
    p.add_argument("--stages", default="stage1,stage2", help="which meta files to write (default: both)")
    p.add_argument("--holdout", default=None,
                   help="comma-separated identities kept out of training (overrides holdout; default: the MEAD test "
                        "subjects M003,M030,W009,W015); 'none' keeps everyone")
    add_config_arguments(p, what="meta-file filters")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from emocast.data.config import MetaConfig
    from emocast.data.meta import write_stage_meta
    from emocast.errors import ConfigError

    values = {}
    if args.holdout is not None:
        items = [h.strip() for h in args.holdout.split(",") if h.strip()]
        values["holdout"] = [] if [i.lower() for i in items] in ([], ["none"]) else items
    cfg = config_from_args(MetaConfig, args, values)
    if args.print_config:
        return print_config(cfg)
    if not args.root:
        raise ConfigError("--root is required (the prepared dataset root, e.g. datasets/mead)")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise ConfigError(f"--stages takes stage1 and/or stage2 (comma-separated), got {args.stages!r}")
    root = Path(args.root)
    name = args.name or root.resolve().name
    out = Path(args.out) if args.out else root
    rejected = {}
    for stage in stages:
        path = out / f"{name}_{stage}.json"
        res = write_stage_meta(root, stage, getattr(cfg, stage), path, cfg.holdout)
        rejected[stage] = res.rejected
        print(f"{stage}: {len(res.entries)} videos -> {path} ({len(res.rejected)} rejected, {len(res.held_out)} "
              f"held out: identities {', '.join(cfg.holdout) or 'none'})")
    if any(rejected.values()):
        rpath = out / f"{name}_rejected.json"
        rpath.write_text(json.dumps(rejected, indent=1) + "\n", encoding="utf-8")
        print(f"rejections with reasons: {rpath}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
