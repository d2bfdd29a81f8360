"""Evaluation outputs: the per-video CSV and the Table-2-style summary (Markdown + JSON).

The table has one row per method and the paper's columns: ``Acc_emo ↑`` (percent), ``LSE-D ↓``, ``LSE-C ↑``,
``FID ↓``; metrics that were not computed show ``-``.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Sequence

PER_VIDEO_COLUMNS = ("video", "num_frames", "face_frames", "target_emotion", "predicted_emotion", "emotion_correct",
                     "emotion_confidence", "lse_d", "lse_c", "av_offset", "error")
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


def markdown_table(summaries: Sequence[dict], title: str = "") -> str:
    """``summaries``: dicts with ``method`` and the keys of :data:`TABLE_COLUMNS` (None = not computed)."""
    lines = [f"### {title}", ""] if title else []
    lines.append("| Method | " + " | ".join(h for _, h in TABLE_COLUMNS) + " |")
    lines.append("|---|" + "---:|" * len(TABLE_COLUMNS))
    for s in summaries:
        lines.append(f"| {s.get('method', '')} | " + " | ".join(_fmt(k, s.get(k)) for k, _ in TABLE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


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
