#!/usr/bin/env python
"""Regenerate the paper's Table 2 (Acc_emo, LSE-D, LSE-C, FID on MEAD and in the wild) for a folder of renders.

Examples:
  python scripts/table2.py --renders outputs --mead-gt testsets/mead_gt --mead-labels testsets/mead_labels.csv \
      --wild-labels testsets/wild_labels.csv --out eval/table2

--renders holds one folder per test set: mead/ (the 256 videos of make_testset_manifest.py --mead-eat) and wild/
(the 280 videos of the in-the-wild cross product); a missing one is skipped. MEAD is scored with every metric
(FID against --mead-gt, paired by name), the in-the-wild set with Acc_emo and LSE (no ground truth, as in the paper).
Writes <out>/table2.md and <out>/table2.json (our numbers, the paper's in a reference row, the protocol of each
number) and <out>/<set>/ (per_video.csv, metrics.json, table.md of each set).

Settings: the evaluation config (emocast.evaluation.config.EvalConfig; default: EAT's protocol for every metric,
which the paper follows); -c FILE and key=value overrides as for scripts/evaluate.py, e.g. lse.batch_size=50.
Unknown keys fail with one message naming the key; --print_config shows every key; docs/config-reference.md.
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

FLAG_KEYS = {"models_root": "models_root", "device": "device", "method": "method"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/table2.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--renders", help="folder holding mead/ and/or wild/ (rendered test sets)")
    p.add_argument("--mead-gt", help="ground-truth MEAD videos named like the renders (make_testset_manifest.py "
                                     "--mead-eat writes <manifest>_gt/)")
    p.add_argument("--mead-labels", help="labels CSV of the MEAD set (else MEAD names give the emotion)")
    p.add_argument("--wild-labels", help="labels CSV of the in-the-wild set (make_testset_manifest.py writes it)")
    p.add_argument("--out", default=None, help="output folder (default: <renders>/table2)")
    p.add_argument("--models-root", "--models", dest="models_root", metavar="DIR",
                   help="pretrained_models folder holding eval/ (default: $EMOCAST_MODELS, else ./pretrained_models)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--method", default=None, help="row name (default EmoCAST)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_arguments(p, what="evaluation settings")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from dataclasses import replace

    from emocast.errors import ConfigError
    from emocast.evaluation.config import EvalConfig

    cfg = config_from_args(EvalConfig, args, {k: getattr(args, f) for f, k in FLAG_KEYS.items()})
    if args.print_config:
        return print_config(cfg)
    if not args.renders:
        raise ConfigError("--renders is required (the folder holding mead/ and wild/)")
    from emocast.evaluation.report import PAPER_TABLE2, table2_markdown, write_per_video_csv, write_summary
    from emocast.evaluation.runner import evaluate_folder

    renders = Path(args.renders)
    out = Path(args.out) if args.out else renders / "table2"
    sets = {"mead": (args.mead_gt, args.mead_labels, ["acc_emo", "lse", "fid"]),
            "wild": (None, args.wild_labels, ["acc_emo", "lse"])}
    progress = (lambda it, **_: it) if args.no_progress else None  # noqa: E731
    results = {}
    for name, (gt, labels, metrics) in sets.items():
        if not (renders / name).is_dir():
            print(f"{name}: no folder {renders / name}; skipped", file=sys.stderr)
            continue
        if "fid" in metrics and not gt:
            metrics = [m for m in metrics if m != "fid"]
            print(f"{name}: no --mead-gt, FID skipped", file=sys.stderr)
        res = evaluate_folder(renders / name, replace(cfg, metrics=metrics), gt_dir=gt, labels_path=labels,
                              progress=progress)
        (out / name).mkdir(parents=True, exist_ok=True)
        write_per_video_csv(res.rows, out / name / "per_video.csv")
        write_summary(res.summary, out / name, title=name)
        results[name] = res.summary
    if not results:
        raise ConfigError(f"{renders} holds neither mead/ nor wild/")
    out.mkdir(parents=True, exist_ok=True)
    text = table2_markdown(results)
    (out / "table2.md").write_text(text, encoding="utf-8")
    (out / "table2.json").write_text(json.dumps({"ours": results, "paper": PAPER_TABLE2}, indent=2, default=str)
                                     + "\n", encoding="utf-8")
    print(text)
    print(f"wrote {out / 'table2.md'} and {out / 'table2.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
