"""Running data preparation over a folder of videos: sharding, resuming, and the failure report.

- Sharding: video ``i`` of the sorted list belongs to worker ``i % world_size == rank``.
- Resuming: a video whose ``samples/<id>`` folder is complete is skipped; so is a video that failed before for
  a deterministic reason (no face, too short...) unless ``retry_failed``. A staging folder left by a killed
  run is deleted when that video is processed again.
- Failure report: ``<out>/reports/failures-rank<r>.jsonl``, one JSON object per failed video
  ``{"video", "video_id", "reason", "message", "time"}`` (one file per worker, so workers never write the
  same file). :func:`read_failures` merges them (the latest entry per video wins). A line cut by a kill is
  skipped with a warning, and the next entry starts on a new line (:func:`_append` ends the cut line first).
"""
from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from tqdm import tqdm

from ..runtime import shard  # the one sharding rule (rendering uses it too); prep_run.shard stays importable
from . import layout
from .config import DataPrepConfig
from .video_prep import (REASONS, Labels, PrepFailure, PrepModels, dataset_labels, llm_prompter,
                         prepare_video)

REPORTS = "reports"
log = logging.getLogger("emocast.data")


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # video id -> reason

    def line(self) -> str:
        by_reason: dict[str, int] = {}
        for r in self.failed.values():
            by_reason[r] = by_reason.get(r, 0) + 1
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items()))
        return (f"{len(self.done)} prepared, {len(self.skipped)} skipped (already done or failed before), "
                f"{len(self.failed)} failed" + (f" ({reasons})" if reasons else ""))


def report_path(out_root, rank: int) -> Path:
    return Path(out_root) / REPORTS / f"failures-rank{rank}.jsonl"


def read_failures(out_root) -> dict[str, dict]:
    """Latest failure entry per video id over all workers' reports."""
    folder = Path(out_root) / REPORTS
    entries: list[dict] = []
    if folder.is_dir():
        for p in sorted(folder.glob("failures-rank*.jsonl")):
            for number, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
                line = line.strip()
                if not line:
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    entry = None
                if not isinstance(entry, dict):
                    log.warning("%s, line %d: not a complete entry (cut by a kill?); ignored, so that video is "
                                "tried again", p, number)
                    continue
                entries.append(entry)
    entries.sort(key=lambda e: e.get("time", 0))
    return {e["video_id"]: e for e in entries if "video_id" in e}


def _append(path: Path, entry: dict) -> None:
    """Append one entry as one line; a last line cut by a kill (no newline at the end) is ended first, so the new
    entry never runs into it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:  # appends always go to the end; reading the last byte moves nothing
        if fh.seek(0, os.SEEK_END) > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write((json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def run(videos: Sequence[Path], input_root, out_root, cfg: DataPrepConfig, models: PrepModels | None = None,
        models_root=None, rank: int = 0, world_size: int = 1, overwrite: bool = False, retry_failed: bool = False,
        labels: Mapping[str, Labels] | None = None, progress: bool = True) -> RunSummary:
    """Prepare this worker's share of ``videos`` into ``out_root``. Models are loaded only if there is work."""
    input_root, out_root = Path(input_root), Path(out_root)
    layout.samples_dir(out_root).mkdir(parents=True, exist_ok=True)
    if world_size == 1:
        layout.clean_stale(out_root)
    failures = {} if retry_failed else read_failures(out_root)
    summary = RunSummary()
    todo = []
    for src in shard(list(videos), rank, world_size):
        vid = layout.video_id_for(src, input_root)
        prev = failures.get(vid)
        if not overwrite and (layout.is_complete(out_root, vid) or (prev and prev.get("reason") != "error")):
            summary.skipped.append(vid)
        else:
            todo.append((src, vid))
    report = report_path(out_root, rank)
    bar = tqdm(todo, desc=f"preprocess (rank {rank}/{world_size})", unit="video", disable=not progress)
    for src, vid in bar:
        bar.set_postfix_str(vid[-40:])
        if models is None:
            models = PrepModels(cfg, models_root)
        lab = dataset_labels(src, input_root, vid, cfg, labels)
        try:
            prepare_video(src, input_root, out_root, cfg, models, labels=lab, video_id=vid, overwrite=overwrite)
            summary.done.append(vid)
        except PrepFailure as err:
            reason, message = err.reason, str(err)
        except Exception as err:  # noqa: BLE001 - one broken video must not stop a long run; it is reported
            reason = "error"
            message = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=8)}"
        else:
            continue
        assert reason in REASONS
        summary.failed[vid] = reason
        _append(report, {"video": str(src), "video_id": vid, "reason": reason, "message": message,
                         "time": time.time()})
    return summary


def refresh_prompts(out_root, cfg: DataPrepConfig, rank: int = 0, world_size: int = 1,
                    progress: bool = True) -> int:
    """Re-write the emotive prompts of every finished sample (e.g. after configuring an LLM) from its
    ``info.json`` label, without touching any other artifact; returns the number of samples updated."""
    from ..labels.prompts import make_prompts

    llm = llm_prompter(cfg.prompts)
    ids = shard(layout.list_samples(out_root), rank, world_size)
    for vid in tqdm(ids, desc=f"prompts (rank {rank}/{world_size})", unit="video", disable=not progress):
        folder = layout.sample_dir(out_root, vid)
        rec = layout.read_info(folder)
        prompts = make_prompts(rec.emotion, rec.intensity, cfg.prompts.per_video, f"{cfg.prompts.seed}:{vid}", llm,
                               cfg.prompts.llm_fallback)
        layout.update_info(folder, prompts=prompts)
    return len(ids)
