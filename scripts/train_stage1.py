#!/usr/bin/env python
"""Stage 1: train ReferenceNet, the denoising UNet's spatial layers, FaceLocator, ImageProj and the decoupled text/face attention on emotion-aware image pairs."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import run_main  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "train" / "stage1.yaml"


def main(argv=None) -> int:
    from emocast.training.cli import build_parser, config_from_args, setup_logging

    args = build_parser("scripts/train_stage1.py", __doc__, str(DEFAULT_CONFIG)).parse_intermixed_args(argv)
    cfg = config_from_args(args, "stage1")
    setup_logging()
    from emocast.training.stage1 import Stage1Task as Task
    from emocast.training.trainer import Trainer

    result = Trainer(cfg, Task(cfg)).run()
    print(f"done: step {result['step']}" + (" (stopped early)" if result.get("stopped") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
