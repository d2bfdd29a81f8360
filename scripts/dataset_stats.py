#!/usr/bin/env python
"""Statistics of prepared datasets in the form of the paper's Table 1, plus emotion / intensity histograms.

Examples:
  python scripts/dataset_stats.py datasets/mead/mead_stage2.json datasets/hdtf/hdtf_stage2.json
  python scripts/dataset_stats.py datasets/mead --json stats.json

Each argument is a meta file (scripts/extract_meta_info.py) or a dataset root (every finished sample). Prints
markdown: one Table-1 row per dataset (IDs, hours, emotion labels, levels, text descriptions), then per dataset
the videos and hours per emotion and the videos per intensity level. A final "total" row sums all inputs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import run_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="meta JSON files and/or prepared dataset roots")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from emocast.data import layout, stats
    from emocast.errors import InputError

    all_stats = []
    everything = []
    for item in args.inputs:
        p = Path(item)
        if p.is_file():
            meta = layout.read_meta(p)
            entries, name = meta.videos, p.stem
        elif p.is_dir():
            if not layout.samples_dir(p).is_dir():
                raise InputError(f"{p} is neither a meta file nor a prepared dataset root (no samples/ folder)")
            entries, name = stats.entries_from_root(p), p.resolve().name
        else:
            raise InputError(f"{p} does not exist; pass meta JSON files or dataset roots")
        # identities are only comparable within one dataset
        everything.extend({**e, "identity": None if e.get("identity") is None else f"{name}/{e['identity']}"}
                          for e in entries)
        all_stats.append(stats.compute(name, entries))
    rows = list(all_stats)
    if len(all_stats) > 1:
        rows.append(stats.compute("total", everything))
    print(stats.table1(rows))
    for st in rows:
        print()
        print(stats.histograms(st))
    if args.json:
        Path(args.json).write_text(json.dumps([s.to_dict() for s in rows], indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
