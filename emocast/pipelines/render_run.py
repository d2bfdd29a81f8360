"""A manifest render over one process or many: sharding, resume (complete outputs are skipped) and the merged report.

``accelerate launch --num_processes N scripts/inference.py --manifest jobs.csv`` (``--multi_gpu`` on a machine
without GPUs; ``torchrun`` and accelerate's multi-node flags work alike) starts N processes. Each:

- names every row's output over the whole manifest first (:func:`~emocast.pipelines.batch.output_paths`), so the
  names do not depend on the number of processes, then takes rows ``i % N == rank``
  (:func:`emocast.runtime.shard`, the rule data preparation uses), so every output is written by exactly one process;
- skips rows whose output already exists and is complete (:func:`is_complete`: a readable H.264 video with an audio
  track as long as its driving audio), so a re-launch after a crash resumes; ``--overwrite`` renders them again;
- loads the models once (on ``cuda:<local rank>`` when there are GPUs), and only when it has rows to render;
- renders its rows one by one through :func:`~emocast.pipelines.inference.render_jobs`, timing each.

Then rank 0 gathers every process's results (gloo, CPU objects; no GPU collective) and writes one report,
``<outputs>/render_report.json``: every row rendered, skipped or failed (with the reason), seconds per video,
and the number of processes. Rows that failed make the run exit non-zero with one message listing them.
"""
from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import EmoCASTError
from ..runtime import Launch, shard
from .batch import Job, RowProblem, failed_rows_error

log = logging.getLogger("emocast.render_run")

REPORT = "render_report.json"
#: how far a finished video's length may be from its driving audio's (the last frame covers up to 1/25 s)
LENGTH_TOLERANCE_S = 0.1


@dataclass
class RowResult:
    row: int  # manifest line
    output: str
    status: str  # rendered | skipped | failed
    seconds: float = 0.0  # rendering time (rendered rows)
    reason: str = ""  # why a row failed
    rank: int = 0
    files: str = ""  # "<image>, <audio>" names, for the message

    def problem(self) -> RowProblem:
        return RowProblem(self.row, self.reason, self.files)


def is_complete(output, audio) -> bool:
    """Whether ``output`` is a finished render of ``audio``: it opens, holds H.264 frames and an audio track, and
    lasts as long as the audio (within :data:`LENGTH_TOLERANCE_S`). Never raises."""
    from ..media.audio import decode_audio
    from ..media.video import probe

    path = Path(output)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        info = probe(path)
        decoded = decode_audio(audio, rate=16000, layout="mono")
    except Exception:  # an unreadable output (or audio) is not a finished render
        return False
    if decoded is None:
        return False
    seconds = decoded[0].shape[1] / decoded[1]
    return info.has_audio and info.frames > 0 and abs(info.duration - seconds) <= LENGTH_TOLERANCE_S


def split_rows(jobs: Sequence[Job], launch: Launch | None, overwrite: bool = False) \
        -> tuple[list[Job], list[RowResult]]:
    """This process's rows (outputs already named) -> (rows to render, rows skipped because complete)."""
    rank, world = (launch.rank, launch.world_size) if launch else (0, 1)
    todo, skipped = [], []
    for job in shard(list(jobs), rank, world):
        if not overwrite and is_complete(job.output, job.audio):
            skipped.append(RowResult(job.row, str(job.output), "skipped", rank=rank))
        else:
            todo.append(job)
    return todo, skipped


def render_rows(pipe, jobs: Sequence[Job], outputs_dir, rank: int = 0, progress: bool = True,
                on_written: Callable[[Path], None] | None = None, fail_fast: bool = False) \
        -> tuple[list[RowResult], bool]:
    """Render ``jobs`` (outputs named) one by one with ``render_jobs``; a failing row is recorded, not raised
    (``fail_fast``: and the rows after it are left). Returns the results and whether it stopped early."""
    from .inference import render_jobs

    results = []
    for job in jobs:
        files = f"{job.image.name}, {job.audio.name}"
        start = time.perf_counter()
        try:
            render_jobs(pipe, [job], outputs_dir, progress=progress, on_written=on_written)
        except EmoCASTError as err:
            log.error("manifest line %d failed: %s", job.row, err)
            results.append(RowResult(job.row, str(job.output), "failed", reason=str(err), rank=rank, files=files))
        except Exception as err:  # a bug or a resource problem: keep the traceback in the log, go on
            log.exception("manifest line %d failed", job.row)
            results.append(RowResult(job.row, str(job.output), "failed", reason=f"{type(err).__name__}: {err}",
                                     rank=rank, files=files))
        else:
            results.append(RowResult(job.row, str(job.output), "rendered", time.perf_counter() - start, rank=rank,
                                     files=files))
            continue
        if fail_fast:
            return results, True
    return results, False


def gather_results(results: list[RowResult], stopped: bool, launch: Launch | None) \
        -> tuple[list[RowResult], bool] | None:
    """Every process's results (and whether any stopped early) on rank 0; None on the other ranks."""
    if launch is None:
        return results, stopped
    import torch.distributed as dist

    if not dist.is_initialized():  # the launcher's MASTER_ADDR/PORT; a slow shard must not time the others out
        dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world_size,
                                timeout=datetime.timedelta(days=7))
    gathered = [None] * launch.world_size if launch.rank == 0 else None
    dist.gather_object({"results": [asdict(r) for r in results], "stopped": stopped}, gathered, dst=0)
    dist.destroy_process_group()
    if launch.rank != 0:
        return None
    return [RowResult(**r) for part in gathered for r in part["results"]], any(part["stopped"] for part in gathered)


def write_report(results: Sequence[RowResult], outputs_dir, world_size: int) -> tuple[Path, dict]:
    """``<outputs_dir>/render_report.json`` (written atomically) -> (its path, its content)."""
    from ..atomic import atomic_write_text

    rows = sorted(results, key=lambda r: r.row)
    rendered = [r for r in rows if r.status == "rendered"]
    report = {
        "processes": world_size,
        "rows": len(rows),
        "rendered": len(rendered),
        "skipped": sum(r.status == "skipped" for r in rows),
        "failed": sum(r.status == "failed" for r in rows),
        "seconds_per_video": round(sum(r.seconds for r in rendered) / len(rendered), 3) if rendered else None,
        "videos": [{k: v for k, v in asdict(r).items() if v not in ("",) and not (k == "seconds" and
                                                                              r.status != "rendered")}
                   for r in rows],
    }
    path = Path(outputs_dir) / REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return path, report


def summary_line(report: dict, path: Path) -> str:
    per = f"; {report['seconds_per_video']:.1f} s per video" if report["seconds_per_video"] is not None else ""
    return (f"{report['rendered']} rendered, {report['skipped']} skipped (already complete), {report['failed']} "
            f"failed of {report['rows']} rows on {report['processes']} process(es){per}; report: {path}")


def run_manifest(cfg, jobs: Sequence[Job], *, bad: Sequence[RowProblem] = (), overwrite: bool = False,
                 fail_fast: bool = False, progress: bool = True, on_written: Callable[[Path], None] | None = None,
                 launch: Launch | None = None) -> dict | None:
    """The whole manifest run of ``scripts/inference.py`` in this process (see the module docstring).

    ``jobs``: the manifest's good rows with their outputs named over the whole manifest
    (:func:`~emocast.pipelines.batch.output_paths`); ``bad``: the rows that did not parse (every process parsed the
    same manifest: rank 0 lists them); ``fail_fast``: a bad file refuses the batch before any model is loaded and a
    process stops at its first failing row; ``launch``: this process's rank (default: the launcher's environment).
    Returns the merged report on rank 0 (None elsewhere); on rank 0, rows that failed raise the batch's one
    :class:`InputError` (:func:`~emocast.pipelines.batch.failed_rows_error`)."""
    import dataclasses

    from ..runtime import launch_from_env, rank_device
    from .inference import EmoCASTPipeline, precheck_inputs

    launch = launch if launch is not None else launch_from_env()
    rank = launch.rank if launch else 0
    results = [RowResult(p.row, "", "failed", reason=p.reason, files=p.files) for p in bad] if rank == 0 else []
    todo, skipped = split_rows(jobs, launch, overwrite)
    results += skipped
    # a bad file fails in seconds, before minutes of model loading (its row is listed, the others are rendered)
    problems = {p.row: p for p in precheck_inputs(todo, progress=progress, fail_fast=fail_fast)}
    for job in todo:
        if job.row in problems:
            results.append(RowResult(job.row, str(job.output), "failed", reason=problems[job.row].reason, rank=rank,
                                     files=problems[job.row].files))
    todo = [job for job in todo if job.row not in problems]
    stopped = False
    if todo:
        pipe = EmoCASTPipeline.from_config(dataclasses.replace(cfg, device=rank_device(cfg.device, launch)),
                                           progress=progress and rank == 0)
        try:
            rendered, stopped = render_rows(pipe, todo, cfg.outputs, rank, progress=progress, on_written=on_written,
                                            fail_fast=fail_fast)
            results += rendered
        finally:
            pipe.close()
    merged = gather_results(results, stopped, launch)
    if merged is None:
        return None
    merged, stopped = merged
    path, report = write_report(merged, cfg.outputs, launch.world_size if launch else 1)
    log.info("%s", summary_line(report, path))  # stdout carries the written paths only
    failed = [r.problem() for r in merged if r.status == "failed"]
    if failed:
        written = [r.output for r in sorted(merged, key=lambda r: r.row) if r.status == "rendered"]
        raise failed_rows_error(failed, written, len(merged), stopped)
    return report
