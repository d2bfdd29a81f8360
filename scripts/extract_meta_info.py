#!/usr/bin/env python
"""Write the stage-1 and stage-2 meta JSON files of a prepared dataset (scripts/data_preprocess.py output).

Examples:
  python scripts/extract_meta_info.py --root datasets/mead --name mead
  python scripts/extract_meta_info.py --root datasets/wild --name wild --out data/ stage2.min_sync_confidence=3 \
      stage2.max_sync_dist=9 stage2.missing_sync=drop

Writes <out>/<name>_stage1.json and <out>/<name>_stage2.json: format_version, stage, the dataset root (relative to
the meta file's folder) and per video its folder relative to the root, identity, emotion, intensity, prompts,
SyncNet scores and frame count. Videos with missing or broken artifacts, too few frames, audio/video length
mismatch, or outside the emotion / lip-sync filters of configs/data/meta.yaml are left out and listed in
<out>/<name>_rejected.json with the reason.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import load_config, run_main  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "data" / "meta.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="prepared dataset root (holds samples/)")
    p.add_argument("--name", default=None, help="file name prefix (default: the root folder's name)")
    p.add_argument("--out", default=None, help="folder for the meta files (default: the dataset root)")
    p.add_argument("--stages", default="stage1,stage2", help="which meta files to write (default: both)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML filters (default: configs/data/meta.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="filter overrides, e.g. stage2.min_frames=50")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from emocast.data.meta import MetaFilter, write_stage_meta
    from emocast.errors import ConfigError

    cfg = load_config(args.config, args.overrides)
    root = Path(args.root)
    name = args.name or root.resolve().name
    out = Path(args.out) if args.out else root
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    rejected = {}
    for stage in stages:
        if stage not in ("stage1", "stage2"):
            raise ConfigError(f"--stages takes stage1 and/or stage2, got {stage!r}")
        from omegaconf import OmegaConf

        section = cfg.get(stage)
        filt = MetaFilter.from_cfg(OmegaConf.to_container(section) if section is not None else None)
        path = out / f"{name}_{stage}.json"
        res = write_stage_meta(root, stage, filt, path)
        rejected[stage] = res.rejected
        print(f"{stage}: {len(res.entries)} videos -> {path} ({len(res.rejected)} rejected)")
    if any(rejected.values()):
        rpath = out / f"{name}_rejected.json"
        rpath.write_text(json.dumps(rejected, indent=1) + "\n", encoding="utf-8")
        print(f"rejections with reasons: {rpath}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
