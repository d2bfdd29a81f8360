#!/usr/bin/env python
"""Distillation: train a few-step consistency student of an EmoCAST checkpoint (guidance folded in; docs/training.md §8)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import run_main  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "train" / "distill.yaml"


def main(argv=None) -> int:
    from emocast.training.cli import train

    return train("distill", argv, "scripts/train_distill.py", __doc__, str(DEFAULT_CONFIG))


if __name__ == "__main__":
    sys.exit(run_main(main))
