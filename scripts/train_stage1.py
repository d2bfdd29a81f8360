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
    from emocast.training.cli import train

    return train("stage1", argv, "scripts/train_stage1.py", __doc__, str(DEFAULT_CONFIG))


if __name__ == "__main__":
    sys.exit(run_main(main))
