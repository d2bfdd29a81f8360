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


def tracker_init_kwargs(tracker: str | None, resume_step: int | None) -> dict:
    """``init_kwargs`` of ``accelerator.init_trackers``: a run (re)starting at ``resume_step`` has TensorBoard purge
    the events of the steps after it, which the run logs again."""
    if tracker == "tensorboard" and resume_step is not None:
        return {"tensorboard": {"purge_step": int(resume_step) + 1}}
    return {}


class MetricsLogger:
    """Writes scalars to the accelerate trackers and to ``<output_dir>/metrics.jsonl`` (main process only).

    ``resume_step``: the step the run (re)starts from (0 for a fresh start); rows of later steps, logged before the
    run was stopped and about to be logged again, are removed from the file first (with a line cut by a kill)."""

    def __init__(self, accelerator, output_dir, use_trackers: bool, resume_step: int | None = None):
        self.accelerator = accelerator
        self.use_trackers = use_trackers
        self.path = Path(output_dir) / "metrics.jsonl"
        self._t0 = None
        if resume_step is not None and accelerator.is_main_process and self.path.is_file():
            self._truncate(int(resume_step))

    def _truncate(self, step: int) -> None:
        from ..atomic import atomic_write_text

        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # cut by a kill
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
                keep.append(line + "\n")
        atomic_write_text(self.path, "".join(keep))

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
