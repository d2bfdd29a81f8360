"""Metric logging: TensorBoard through accelerate by default, plus a ``metrics.jsonl`` file on the main process.

``logging.tracker`` = ``tensorboard`` (default) | ``jsonl`` (file only) | ``none``. When TensorBoard is asked
for but not installed, training continues with the JSONL file and says so once.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import time
from pathlib import Path

log = logging.getLogger("emocast.training")


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def resolve_tracker(name: str | None) -> str | None:
    """The accelerate ``log_with`` value for ``logging.tracker`` (``None`` = no accelerate tracker)."""
    name = (name or "none").lower()
    if name == "tensorboard":
        if tensorboard_available():
            return "tensorboard"
        log.warning("tensorboard is not installed: logging to metrics.jsonl only (pip install tensorboard)")
        return None
    return None


class MetricsLogger:
    """Writes scalars to the accelerate trackers and to ``<output_dir>/metrics.jsonl`` (main process only)."""

    def __init__(self, accelerator, output_dir, use_trackers: bool):
        self.accelerator = accelerator
        self.use_trackers = use_trackers
        self.path = Path(output_dir) / "metrics.jsonl"
        self._t0 = None

    def log(self, step: int, values: dict) -> None:
        clean = {k: (float(v) if not isinstance(v, (int, str)) else v) for k, v in values.items()}
        if self.use_trackers:
            self.accelerator.log({k: v for k, v in clean.items() if not isinstance(v, str)}, step=step)
        if self.accelerator.is_main_process:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, "time": time.time(),
                                    **{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                       for k, v in clean.items()}}) + "\n")


def read_metrics(output_dir) -> list[dict]:
    """The rows of ``metrics.jsonl`` (for tests and quick inspection)."""
    path = Path(output_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
