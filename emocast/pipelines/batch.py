"""Batch manifests: many (image, audio, prompt[, output]) jobs rendered with one model load.

Two formats, chosen by the file extension:

- ``.csv``: columns ``image,audio,prompt[,output]``; a header row with those names is optional (when present the
  columns may come in any order). Quote prompts that contain commas.
- ``.jsonl``: one JSON object per line with the keys ``image``, ``audio``, ``prompt`` and optionally ``output``.

Relative paths are resolved against the manifest's folder. Blank lines and lines starting with ``#`` are
skipped. Every row is validated before anything is rendered, so a typo in row 40 fails in a second, not
after 39 videos. :func:`output_paths` names the outputs (``<image-stem>_<audio-stem>.mp4``, ``_row<line>``
appended where default names would collide) and rejects clashing explicit outputs.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

COLUMNS = ("image", "audio", "prompt", "output")


@dataclass(frozen=True)
class Job:
    image: Path
    audio: Path
    prompt: str
    output: Path | None = None  # None: the default name in the output folder
    row: int = 0  # 1-based line number in the manifest, for messages


def default_output_name(image, audio) -> str:
    """``<image-stem>_<audio-stem>.mp4``, the release's naming."""
    return f"{Path(image).stem}_{Path(audio).stem}.mp4"


def _job(values: dict, base: Path, manifest: Path, line: int) -> Job:
    missing = [k for k in ("image", "audio", "prompt") if not str(values.get(k) or "").strip()]
    if missing:
        raise InputError(f"{manifest}, line {line}: missing {', '.join(missing)}; every row needs "
                         "image, audio and prompt (output is optional)")
    unknown = sorted(set(values) - set(COLUMNS))
    if unknown:
        raise InputError(f"{manifest}, line {line}: unknown field(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(COLUMNS)}")

    def path(v):
        p = Path(str(v).strip()).expanduser()
        return p if p.is_absolute() else base / p

    out = str(values.get("output") or "").strip()
    return Job(image=path(values["image"]), audio=path(values["audio"]), prompt=str(values["prompt"]).strip(),
               output=path(out) if out else None, row=line)


def _read_csv(path: Path) -> list[Job]:
    jobs = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = None
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in row]
            if header is None and not jobs and {c.lower() for c in cells} <= set(COLUMNS) and "image" in \
                    [c.lower() for c in cells]:
                header = [c.lower() for c in cells]
                continue
            names = header or list(COLUMNS)
            if len(cells) > len(names) or len(cells) < 3:
                raise InputError(f"{path}, line {line_no}: expected the columns {','.join(names)} "
                                 f"(output optional), got {len(cells)} value(s); quote prompts that contain commas")
            jobs.append(_job(dict(zip(names, cells)), path.parent, path, line_no))
    return jobs


def _read_jsonl(path: Path) -> list[Job]:
    jobs = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}, line {line_no}: not valid JSON ({err.msg}); each line must be an "
                                 'object like {"image": ..., "audio": ..., "prompt": ...}') from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}, line {line_no}: expected a JSON object with image, audio, prompt")
            jobs.append(_job(obj, path.parent, path, line_no))
    return jobs


def read_manifest(path) -> list[Job]:
    """Parse and validate a manifest; raises :class:`InputError` naming the file and line of any problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}; pass a .csv or .jsonl file with image,audio,prompt rows")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        jobs = _read_csv(path)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        jobs = _read_jsonl(path)
    else:
        raise InputError(f"manifest {path}: unknown format {suffix!r}; use a .csv or .jsonl file")
    if not jobs:
        raise InputError(f"manifest {path} has no rows; add lines of image,audio,prompt[,output]")
    for job in jobs:
        for kind, p in (("image", job.image), ("audio", job.audio)):
            if not p.is_file():
                raise InputError(f"{path}, line {job.row}: {kind} file not found: {p} "
                                 "(relative paths are resolved against the manifest's folder)")
    return jobs


def output_path(job: Job, outputs_dir) -> Path:
    return job.output if job.output is not None else Path(outputs_dir) / default_output_name(job.image, job.audio)


def _key(path: Path) -> str:
    return str(Path(path).expanduser().resolve())


def output_paths(jobs, outputs_dir) -> list[Path]:
    """The output file of every job, checked before anything is rendered.

    - Rows whose default names collide (the same image and audio with different prompts, or equal stems from
      different folders) get ``_row<line>`` appended, so no video silently overwrites another.
    - Two rows naming the same ``output`` explicitly, an output that is an existing folder, or an output that
      would overwrite one of the job's inputs is an :class:`InputError`.
    """
    jobs = list(jobs)
    paths = [output_path(job, outputs_dir) for job in jobs]
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(_key(p), []).append(i)
    for members in groups.values():
        explicit = [i for i in members if jobs[i].output is not None]
        if len(explicit) > 1:
            rows = ", ".join(str(jobs[i].row) for i in explicit)
            raise InputError(f"manifest lines {rows} all write {paths[explicit[0]]}; give each row its own output")
        if len(members) > 1:
            for i in members:
                if jobs[i].output is None:
                    p = paths[i]
                    paths[i] = p.with_name(f"{p.stem}_row{jobs[i].row}{p.suffix}")
    if len({_key(p) for p in paths}) < len(paths):
        raise InputError("some manifest rows would write the same output file; add an output column")
    for job, p in zip(jobs, paths):
        where = f"manifest line {job.row}: " if len(jobs) > 1 else ""
        if p.is_dir():
            raise InputError(f"{where}the output {p} is a folder. Fix: name an .mp4 file (--output) or pass the "
                             "folder with --outputs")
        blocker = next((d for d in p.parents if d.exists() and not d.is_dir()), None)
        if blocker is not None:
            raise InputError(f"{where}cannot write {p}: {blocker} is a file, not a folder. Fix: choose another "
                             "output folder (--outputs) or file (--output)")
        if _key(p) in (_key(job.image), _key(job.audio)):
            raise InputError(f"{where}the output {p} is one of the inputs and would be overwritten. Fix: choose "
                             "another output file")
    return paths
