#!/usr/bin/env python
"""Evaluate a folder of generated talking-portrait videos with the paper's metrics (Acc_emo, LSE-D, LSE-C, FID).

Examples:
  python scripts/evaluate.py --videos outputs/mead --gt data/mead_test_gt --out eval/mead
  python scripts/evaluate.py --videos outputs/wild --labels testsets/wild_labels.csv --metrics acc_emo,lse
  python scripts/evaluate.py --videos outputs/mead --gt gt/ fid.sampling=all crop.syncnet=detect

Writes into --out: per_video.csv (one row per video: target/predicted emotion, LSE-D, LSE-C, AV offset, errors),
metrics.json (all numbers and settings) and table.md (a row laid out like the paper's Table 2).
Metric weights are read from <models root>/eval/ (python scripts/download_models.py --group eval; the Emotion-FAN
checkpoint is a manual download, see docs/evaluation.md). Target emotions come from --labels (columns video,emotion)
or from MEAD-style file names. LSE needs the audio track in each video (the inference script muxes it).

Settings: the defaults live in the schema (emocast.evaluation.config.EvalConfig); -c FILE applies a YAML file on
top, flags override it and key=value arguments override everything, e.g.
  fid.frames_per_video=10 crop.syncnet=full lse.vshift=15
Unknown keys and wrong values fail with one message naming the key; --print_config shows every key, and
docs/config-reference.md explains them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import add_config_arguments, config_from_args, print_config, run_main  # noqa: E402

# flag -> config key; the values are taken as typed by argparse (paths stay strings, never YAML)
FLAG_KEYS = {"models_root": "models_root", "device": "device", "method": "method"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", help="folder of generated videos (.mp4/.mov/.mkv/.avi/.webm)")
    p.add_argument("--gt", default=None, help="folder of ground-truth videos (needed for FID)")
    p.add_argument("--labels", default=None, help="CSV with columns video,emotion (else parsed from MEAD-style names)")
    p.add_argument("--metrics", default=None,
                   help="comma-separated subset of acc_emo,lse,fid (overrides metrics; default: all three)")
    p.add_argument("--protocol", default=None,
                   help="eat (default: EAT's protocol for every metric, as the paper's Table 2), or the older routes "
                        "per metric: syncnet_python (LSE), pytorch_fid (FID), blazeface (Acc_emo); comma-separated")
    p.add_argument("--out", default=None, help="output folder (default: <videos>/eval)")
    p.add_argument("--models-root", "--models", dest="models_root", metavar="DIR",
                   help="pretrained_models folder holding eval/ (overrides models_root; default: $EMOCAST_MODELS, "
                        "else ./pretrained_models)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (overrides device; default auto)")
    p.add_argument("--method", default=None, help="row name in the table (overrides method; default EmoCAST)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_arguments(p, what="evaluation settings")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from emocast.errors import ConfigError
    from emocast.evaluation.config import EvalConfig

    values = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items()}
    if args.metrics is not None:
        values["metrics"] = args.metrics.split(",")
    if args.protocol is not None:
        from emocast.evaluation.config import protocol_values

        values.update(protocol_values(args.protocol))
    cfg = config_from_args(EvalConfig, args, values)
    if args.print_config:
        return print_config(cfg)
    if not args.videos:
        raise ConfigError("--videos is required (the folder of generated videos)")

    from emocast.evaluation.report import markdown_table, write_per_video_csv, write_summary
    from emocast.evaluation.runner import evaluate_folder

    progress = (lambda it, **_: it) if args.no_progress else None  # noqa: E731
    result = evaluate_folder(args.videos, cfg, gt_dir=args.gt, labels_path=args.labels, progress=progress)
    out = Path(args.out) if args.out else Path(args.videos) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_per_video_csv(result.rows, out / "per_video.csv")
    js, md = write_summary(result.summary, out, title=f"{Path(args.videos).name}")
    print(markdown_table([result.summary]))
    if result.summary.get("num_errors"):
        print(f"{result.summary['num_errors']} video(s) had problems; see the error column of {csv_path}",
              file=sys.stderr)
    print(f"wrote {csv_path}, {js}, {md}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
