#!/usr/bin/env python
"""Prepare a folder of talking videos (any fps and resolution) as an EmoCAST training set.

Examples:
  python scripts/data_preprocess.py --input data/MEAD --output datasets/mead
  python scripts/data_preprocess.py --input data/hdtf --output datasets/hdtf emotion.default=neutral sync.enabled=true
  python scripts/data_preprocess.py --input data/wild --output datasets/wild --rank 0 --world-size 4 \
      emotion.classifier=emotion_fan prep.vocals=true
  accelerate launch --num_processes 4 scripts/data_preprocess.py --input data/wild --output datasets/wild
      (rank and world size from the launcher, on one node or many; the flags override them)

Per video, samples/<id>/ gets frames.mp4 (25 fps, one stable square face crop, --size), audio.wav (16 kHz mono),
face_region.png + mask_{full,face,lip}.png (union over frames, expand 1.0), face_emb.npy, audio_emb.safetensors
(wav2vec2, all layers), optionally vocals.wav, and info.json (labels, prompts, SyncNet scores); see docs/data.md.
Folders appear only when complete, finished videos are skipped on the next run, and every rejected video is listed
with its reason in <output>/reports/failures-rank<R>.jsonl. Emotion labels come from MEAD file names
(M003/video/front/angry/level_1/001.mp4 or M003_front_angry_level_1_001.mp4), from --labels, from a classifier
(emotion.classifier) or from emotion.default. Model files come from the models root (scripts/download_models.py).

Settings: the defaults live in the schema (emocast.data.config.DataPrepConfig); -c FILE applies a YAML file on top
(configs/data/hdtf.yaml is an example), flags override it and key=value arguments override everything, e.g.
  prep.crop_scale=1.8 emotion.default=neutral sync.enabled=true prompts.per_video=5
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
FLAG_KEYS = {"models_root": "models_root", "size": "prep.size"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=None, help="folder of source videos (searched recursively); required unless "
                                                 "--prompts-only")
    p.add_argument("--output", help="dataset root to write (samples/, reports/), e.g. datasets/mead")
    p.add_argument("--models-root", "--models", dest="models_root", metavar="DIR",
                   help="pretrained_models folder (overrides models_root; default: $EMOCAST_MODELS, else "
                        "./pretrained_models)")
    p.add_argument("--rank", type=int, default=None, help="this worker's index (video i goes to worker i %% "
                                                           "world-size; default: the launcher's RANK, else 0)")
    p.add_argument("--world-size", type=int, default=None, help="number of workers sharing the input (default: the "
                                                                "launcher's WORLD_SIZE, else 1)")
    p.add_argument("--labels", default=None, help="CSV with columns video (path relative to --input), identity, "
                                                  "emotion, intensity, prompts (|-separated); any subset")
    p.add_argument("--size", type=int, default=None, help="output frame size (overrides prep.size; default 512)")
    p.add_argument("--overwrite", action="store_true", help="re-process videos that are already finished")
    p.add_argument("--retry-failed", action="store_true", help="re-process videos listed in the failure reports")
    p.add_argument("--limit", type=int, default=None, help="only the first N videos of the sorted list (a trial run)")
    p.add_argument("--prompts-only", action="store_true",
                   help="only re-write the prompts of finished samples in --output from their labels (e.g. after "
                        "setting prompts.llm_endpoint); --input is then not read")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(p, what="data preparation settings")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from emocast.data.config import DataPrepConfig
    from emocast.errors import ConfigError

    cfg = config_from_args(DataPrepConfig, args, {key: getattr(args, flag) for flag, key in FLAG_KEYS.items()})
    if args.print_config:
        return print_config(cfg)
    from emocast.runtime import launch_from_env

    launch = launch_from_env()  # accelerate launch --num_processes N / torchrun: one worker per process
    if args.rank is None:
        args.rank = launch.rank if launch else 0
    if args.world_size is None:
        args.world_size = launch.world_size if launch else 1
    if args.world_size < 1 or not 0 <= args.rank < args.world_size:
        raise ConfigError(f"--rank must be in [0, --world-size), got --rank {args.rank} --world-size {args.world_size}")
    if args.output is None:
        raise ConfigError("--output is required (the dataset root to write, e.g. datasets/mead)")

    from emocast.data import prep_run
    from emocast.data.video_io import list_videos
    from emocast.data.video_prep import read_labels_csv

    if args.prompts_only:
        n = prep_run.refresh_prompts(args.output, cfg, args.rank, args.world_size, not args.no_progress)
        print(f"rank {args.rank}/{args.world_size}: prompts re-written for {n} samples")
        return 0
    if args.input is None:
        raise ConfigError("--input is required (the folder of source videos)")
    labels = read_labels_csv(args.labels) if args.labels else None
    videos = list_videos(args.input)
    if args.limit is not None:
        videos = videos[:args.limit]
    if not videos:
        raise ConfigError(f"no videos (.mp4/.mov/.mkv/.avi/.webm/.m4v/.flv) found under {args.input}")
    summary = prep_run.run(videos, args.input, args.output, cfg, models_root=cfg.models_root, rank=args.rank,
                           world_size=args.world_size, overwrite=args.overwrite, retry_failed=args.retry_failed,
                           labels=labels, progress=not args.no_progress)
    print(f"rank {args.rank}/{args.world_size}: {summary.line()}")
    if summary.failed:
        print(f"failure reasons: {prep_run.report_path(args.output, args.rank)}", file=sys.stderr)
    errors = [v for v, r in summary.failed.items() if r == "error"]
    if errors:
        print(f"{len(errors)} video(s) failed with an unexpected error (reason 'error'); see the report",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
