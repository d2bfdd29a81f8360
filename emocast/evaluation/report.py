"""Evaluation outputs: the per-video CSV and the Table-2-style summary (Markdown + JSON).

The table has one row per method and the paper's columns: ``Acc_emo ↑`` (percent), ``LSE-D ↓``, ``LSE-C ↑``,
``FID ↓``; metrics that were not computed show ``-``; the line under it names the protocol of each number.
:func:`table2_markdown` lays out several test sets like the paper's Table 2 with the paper's numbers
(:data:`PAPER_TABLE2`) in a reference row.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Sequence

PER_VIDEO_COLUMNS = ("video", "num_frames", "face_frames", "target_emotion", "predicted_emotion", "emotion_correct",
                     "emotion_confidence", "acc_emo_frames", "acc_emo_faces", "acc_emo_dropped", "acc_emo_detector",
                     "lse_d", "lse_c", "av_offset", "lse_face_frames", "lse_audio", "fid_faces", "fid_frames",
                     "error")
TABLE_COLUMNS = (("acc_emo", "Acc_emo ↑"), ("lse_d", "LSE-D ↓"), ("lse_c", "LSE-C ↑"), ("fid", "FID ↓"))


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def write_per_video_csv(rows: Sequence[dict], path) -> Path:
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(PER_VIDEO_COLUMNS)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in PER_VIDEO_COLUMNS])
    return path


def _fmt(key: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if key == "acc_emo":
        return f"{100 * v:.2f}%"
    return f"{v:.2f}"


#: the paper's Table 2 (EmoCAST row), in this module's keys; FID is not reported for the in-the-wild set
PAPER_TABLE2 = {"mead": {"acc_emo": 0.8360, "lse_d": 8.67, "lse_c": 6.79, "fid": 35.89},
                "wild": {"acc_emo": 0.5643, "lse_d": 8.12, "lse_c": 6.94, "fid": None}}


def protocol_line(summaries: Sequence[dict]) -> str:
    """``Protocols: Acc_emo eat, LSE eat, FID eat`` (per method when they differ)."""
    names = {"acc_emo": "Acc_emo", "lse": "LSE", "fid": "FID"}
    seen = []
    for s in summaries:
        text = ", ".join(f"{names[m]} {p}" for m, p in (s.get("protocols") or {}).items())
        if text and text not in seen:
            seen.append(text)
    return ("Protocols: " + " | ".join(seen)) if seen else ""


def markdown_table(summaries: Sequence[dict], title: str = "") -> str:
    """``summaries``: dicts with ``method``, ``protocols`` and the keys of :data:`TABLE_COLUMNS` (None = not
    computed)."""
    lines = [f"### {title}", ""] if title else []
    lines.append("| Method | " + " | ".join(h for _, h in TABLE_COLUMNS) + " |")
    lines.append("|---|" + "---:|" * len(TABLE_COLUMNS))
    for s in summaries:
        lines.append(f"| {s.get('method', '')} | " + " | ".join(_fmt(k, s.get(k)) for k, _ in TABLE_COLUMNS) + " |")
    note = protocol_line(summaries)
    return "\n".join(lines + ([f"\n{note}"] if note else [])) + "\n"


def table2_markdown(results: dict[str, dict], paper: dict = PAPER_TABLE2) -> str:
    """Table 2: per test set (``mead``, ``wild``, ...) our summary and the paper's row, plus the protocols."""
    out = ["# Table 2 (reproduction)", ""]
    for name, summary in results.items():
        rows = [summary]
        if name in paper:
            rows.append({"method": "EmoCAST (paper)", **paper[name]})
        out += [markdown_table(rows, title=f"{name} ({summary.get('num_videos', 0)} videos)"), ""]
    out.append("The paper's numbers follow EAT's evaluation protocol (protocol `eat`); numbers computed with another "
               "protocol are not comparable with them.")
    return "\n".join(out) + "\n"


def write_summary(summary: dict, out_dir, title: str = "") -> tuple[Path, Path]:
    """``metrics.json`` (everything in ``summary``) and ``table.md`` (the Table-2 row) in ``out_dir``."""
    out_dir = Path(out_dir)
    js = out_dir / "metrics.json"
    js.write_text(json.dumps(summary, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")
    md = out_dir / "table.md"
    md.write_text(markdown_table([summary], title), encoding="utf-8")
    return js, md


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)
