"""Batch manifests: many (image, audio, prompt[, output]) jobs rendered with one model load.

Two formats, chosen by the file extension:

- ``.csv``: columns ``image,audio,prompt[,output]``; a header row with those names is optional (when present the
  columns may come in any order, and the emotion columns below may be added). Quote prompts that contain commas.
- ``.jsonl``: one JSON object per line with the keys ``image``, ``audio``, ``prompt`` and optionally ``output``
  and the emotion keys.

Emotion control per row (docs/inference.md#emotion-control): ``prompt`` may be a timeline
(``0: calm. | 3.2: furious.``); ``timeline`` names a timeline file (.json/.srt/.txt, relative to the manifest) or
holds one inline, in place of ``prompt``; ``emotion_strength``, ``audio_guidance`` and ``emotion_guidance`` set
those controls for the row (empty: the run's).

Relative paths are resolved against the manifest's folder. Blank lines and lines starting with ``#`` are
skipped. The file must be UTF-8 (with or without a BOM); one row per line (a quote must close on its own line).
Every row is validated before anything is rendered: :func:`parse_manifest` returns the good jobs and the bad rows
(:class:`RowProblem`: a missing field, a quote left open, a missing file...) so that the good rows can be rendered
and the bad ones listed; :func:`read_manifest` refuses the manifest at its first bad row (``--fail-fast``).
:func:`output_paths` names the outputs (``<image-stem>_<audio-stem>.mp4``, ``_row<line>`` appended where default
names would collide), rejects clashing explicit outputs and checks that every output folder is writable.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EmoCASTError, InputError
from .emotion import EmotionTimeline, check_strength, is_timeline, parse_timeline, read_timeline

BASIC_COLUMNS = ("image", "audio", "prompt", "output")  # the columns of a manifest without header, in order
EMOTION_COLUMNS = ("emotion_strength", "audio_guidance", "emotion_guidance")  # numbers: one render's controls
COLUMNS = BASIC_COLUMNS + ("timeline",) + EMOTION_COLUMNS
VIDEO_SUFFIX = ".mp4"  # every video is written as MP4


@dataclass(frozen=True)
class Job:
    image: Path
    audio: Path
    prompt: "str | EmotionTimeline"  # an emotive sentence, inline timeline syntax, or a timeline (from a file)
    output: Path | None = None  # None: the default name in the output folder
    row: int = 0  # 1-based line number in the manifest, for messages
    emotion: tuple[tuple[str, float], ...] = ()  # the row's emotion controls (EMOTION_COLUMNS), as (key, value)


def default_output_name(image, audio) -> str:
    """``<image-stem>_<audio-stem>.mp4``, the release's naming."""
    return f"{Path(image).stem}_{Path(audio).stem}.mp4"


@dataclass(frozen=True)
class RowProblem:
    """A manifest row that cannot be rendered: its line, why (naming the field or file) and, once it has a job, the
    names of its image and audio files."""

    row: int
    reason: str
    files: str = ""

    def line(self) -> str:
        return f"line {self.row}" + (f" ({self.files})" if self.files else "") + f": {self.reason}"


@dataclass
class Manifest:
    """A parsed manifest: the jobs of its good rows and the problems of its bad ones (in line order)."""

    path: Path
    jobs: list[Job] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)


class _BadRow(Exception):
    pass


def _job(values: dict, base: Path, line: int) -> Job:
    has_timeline = bool(str(values.get("timeline") or "").strip())
    missing = [k for k in ("image", "audio", "prompt") if not str(values.get(k) or "").strip()
               and not (k == "prompt" and has_timeline)]
    if missing:
        raise _BadRow(f"missing {', '.join(missing)}; every row needs image, audio and prompt (or timeline; output "
                      "is optional)")
    unknown = sorted(set(values) - set(COLUMNS))
    if unknown:
        raise _BadRow(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(COLUMNS)}")

    def path(v):
        p = Path(str(v).strip()).expanduser()
        return p if p.is_absolute() else base / p

    emotion = []
    for key in EMOTION_COLUMNS:
        raw = values.get(key)
        if raw is None or str(raw).strip() == "":
            continue
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise _BadRow(f"{key} {raw!r} is not a number. Fix: e.g. {key}=1.5, or leave it empty") from None
        try:
            if key == "emotion_strength":
                check_strength(number)
            elif number != number or number in (float("inf"), float("-inf")):
                raise _BadRow(f"{key} {raw!r} is not a finite number")
        except EmoCASTError as err:
            raise _BadRow(str(err)) from None
        emotion.append((key, number))
    try:
        if has_timeline:
            spec = str(values["timeline"]).strip()
            prompt = parse_timeline(spec, "the timeline column") if is_timeline(spec) else read_timeline(path(spec))
        else:
            prompt = str(values["prompt"]).strip()
            parse_timeline(prompt, "the prompt column")  # a malformed inline timeline is this row's problem
    except EmoCASTError as err:
        raise _BadRow(str(err)) from None

    out = str(values.get("output") or "").strip()
    if out and Path(out).suffix.lower() != VIDEO_SUFFIX:
        raise _BadRow(f"the output {out!r} is not an {VIDEO_SUFFIX} file name; a prompt that contains commas must be "
                      'in quotes ("happy, very happy"), else its rest is read as the output column')
    return Job(image=path(values["image"]), audio=path(values["audio"]), prompt=prompt,
               output=path(out) if out else None, row=line, emotion=tuple(emotion))


def _lines(path: Path):
    """``(line number, text)`` of every line that is not blank or a ``#`` comment. The file must be UTF-8 (a BOM is
    allowed); otherwise one message names the first line that is not."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise InputError(f"{path}, line {line} is not UTF-8 text (byte 0x{data[err.start]:02x}; the file looks "
                         "saved as Latin-1/Windows-1252). Fix: save the manifest as UTF-8 (a spreadsheet's 'CSV UTF-8', "
                         f"or iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix})") from None
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


def _read_csv(path: Path, manifest: Manifest) -> None:
    header = None
    for line_no, line in _lines(path):
        try:  # each line on its own: a quote left open is this row's problem and never swallows the next rows
            (row,) = csv.reader([line], strict=True)
        except csv.Error as err:
            manifest.problems.append(RowProblem(line_no, f"a quote is not closed on this line or is followed by "
                                                         f"more text ({err}). Fix: close the quote (\"a prompt, with "
                                                         "commas\"), or remove the stray \""))
            continue
        cells = [c.strip() for c in row]
        if header is None and not manifest.jobs and not manifest.problems and \
                {c.lower() for c in cells} <= set(COLUMNS) and "image" in [c.lower() for c in cells]:
            header = [c.lower() for c in cells]
            continue
        names = header or list(BASIC_COLUMNS)
        try:
            if len(cells) > len(names) or len(cells) < 3:
                raise _BadRow(f"expected the columns {','.join(names)} (output optional), got {len(cells)} "
                              "value(s); quote prompts that contain commas")
            manifest.jobs.append(_job(dict(zip(names, cells)), path.parent, line_no))
        except _BadRow as err:
            manifest.problems.append(RowProblem(line_no, str(err)))


def _read_jsonl(path: Path, manifest: Manifest) -> None:
    for line_no, line in _lines(path):
        try:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise _BadRow(f"not valid JSON ({err.msg}); each line must be an object like "
                              '{"image": ..., "audio": ..., "prompt": ...}') from None
            if not isinstance(obj, dict):
                raise _BadRow("expected a JSON object with image, audio, prompt")
            manifest.jobs.append(_job(obj, path.parent, line_no))
        except _BadRow as err:
            manifest.problems.append(RowProblem(line_no, str(err)))


def parse_manifest(path) -> Manifest:
    """Parse a manifest into its good jobs and its bad rows (a missing field, an open quote, a missing file...).
    A problem of the whole file (missing, unknown format, not UTF-8, no rows) raises :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}; pass a .csv or .jsonl file with image,audio,prompt rows")
    manifest = Manifest(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        _read_csv(path, manifest)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        _read_jsonl(path, manifest)
    else:
        raise InputError(f"manifest {path}: unknown format {suffix!r}; use a .csv or .jsonl file")
    if not manifest.jobs and not manifest.problems:
        raise InputError(f"manifest {path} has no rows; add lines of image,audio,prompt[,output]")
    good = []
    for job in manifest.jobs:
        missing = [f"{kind} file not found: {p} (relative paths are resolved against the manifest's folder)"
                   for kind, p in (("image", job.image), ("audio", job.audio)) if not p.is_file()]
        if missing:
            manifest.problems.append(RowProblem(job.row, missing[0]))
        else:
            good.append(job)
    manifest.jobs = good
    manifest.problems.sort(key=lambda p: p.row)
    return manifest


def read_manifest(path) -> list[Job]:
    """Parse and validate a manifest; raises :class:`InputError` naming the file and line of the first problem."""
    manifest = parse_manifest(path)
    if manifest.problems:
        first = manifest.problems[0]
        raise InputError(f"{manifest.path}, line {first.row}: {first.reason}")
    return manifest.jobs


def failed_rows_error(problems, written, total: int, stopped: bool = False) -> InputError:
    """The one message of a batch with bad rows: how many failed of ``total``, the videos that were written, and
    every bad row with its reason (``stopped``: ``--fail-fast`` ended the run at the first failure)."""
    problems = sorted(problems, key=lambda p: p.row)
    return InputError(f"{len(problems)} of {total} manifest rows failed ({len(written)} videos written"
                      + (": " + ", ".join(map(str, written)) if written else "") + ")"
                      + ("; stopped at the first failure (--fail-fast): later rows were not rendered" if stopped
                         else "") + ":\n  " + "\n  ".join(p.line() for p in problems))


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
    - An output folder where no file can be created (read-only, protected) is an
      :class:`~emocast.errors.OutputError`, found here before any model is loaded.
    """
    from ..atomic import check_writable

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
        if p.suffix.lower() != VIDEO_SUFFIX:
            raise InputError(f"{where}the output {p} does not end in {VIDEO_SUFFIX} (the video is written as MP4). "
                             f"Fix: name an {VIDEO_SUFFIX} file (--output)")
    for folder in dict.fromkeys(p.parent for p in paths):
        check_writable(folder)
    return paths
