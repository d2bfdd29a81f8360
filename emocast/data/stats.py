"""Dataset statistics in the form of the paper's Table 1 (IDs, hours, emotion labels, levels, text descriptions),
plus emotion and intensity histograms.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from ..labels.emotions import EMOTIONS, INTENSITIES
from . import layout


@dataclass
class DatasetStats:
    name: str
    videos: int = 0
    frames: int = 0
    identities: set = field(default_factory=set)
    emotions: Counter = field(default_factory=Counter)  # label (or "unlabelled") -> videos
    intensities: Counter = field(default_factory=Counter)  # (label, level) -> videos
    seconds_by_emotion: Counter = field(default_factory=Counter)
    with_prompts: int = 0
    distinct_prompts: set = field(default_factory=set)
    with_sync: int = 0

    @property
    def hours(self) -> float:
        return self.frames / layout.FPS / 3600

    def add(self, entry: dict) -> None:
        n = int(entry.get("num_frames") or 0)
        emo = entry.get("emotion") or "unlabelled"
        self.videos += 1
        self.frames += n
        if entry.get("identity") is not None:
            self.identities.add(entry["identity"])
        self.emotions[emo] += 1
        self.seconds_by_emotion[emo] += n / layout.FPS
        if entry.get("intensity") is not None and emo != "unlabelled":
            self.intensities[(emo, int(entry["intensity"]))] += 1
        prompts = entry.get("prompts") or []
        self.with_prompts += bool(prompts)
        self.distinct_prompts.update(prompts)
        self.with_sync += bool(entry.get("sync"))

    def to_dict(self) -> dict:
        return {"name": self.name, "videos": self.videos, "identities": len(self.identities),
                "hours": round(self.hours, 4), "emotions": dict(self.emotions),
                "hours_by_emotion": {k: round(v / 3600, 4) for k, v in self.seconds_by_emotion.items()},
                "intensities": {f"{e}/{l}": c for (e, l), c in sorted(self.intensities.items())},
                "videos_with_prompts": self.with_prompts, "distinct_prompts": len(self.distinct_prompts),
                "videos_with_sync": self.with_sync}


def compute(name: str, entries: Iterable[dict]) -> DatasetStats:
    st = DatasetStats(name)
    for e in entries:
        st.add(e)
    return st


def entries_from_root(root) -> list[dict]:
    """Meta-style entries of every finished sample under a dataset root (info.json only)."""
    out = []
    for vid in layout.list_samples(root):
        try:
            out.append(layout.meta_entry(layout.read_info(layout.sample_dir(root, vid))))
        except Exception:  # noqa: BLE001 - statistics skip unreadable samples; extract_meta_info reports them
            continue
    return out


def _ids(n: int) -> str:
    if n >= 1000:
        return f"{n // 1000}k+"
    return str(n)


def _levels(st: DatasetStats) -> str:
    levels = {l for (_, l) in st.intensities}
    return str(len(levels)) if levels else "no"


def _hours(h: float) -> str:
    return f"{h:.1f}" if h >= 10 else (f"{h:.2f}" if h >= 1 else f"{h:.4f}")


def table1(stats: Iterable[DatasetStats]) -> str:
    """Markdown rows like the paper's Table 1 (IDs, hours, emotion label, emotion level, emotive text)."""
    lines = ["| Dataset | IDs | Hours | Emo Label | Emo Level | Emo Text Description |",
             "|---|---|---|---|---|---|"]
    for st in stats:
        labelled = st.videos - st.emotions.get("unlabelled", 0)
        lines.append(f"| {st.name} | {_ids(len(st.identities))} | {_hours(st.hours)} | "
                     f"{'yes' if labelled else 'no'} ({labelled}/{st.videos}) | {_levels(st)} | "
                     f"{'yes' if st.with_prompts else 'no'} ({len(st.distinct_prompts)} distinct) |")
    return "\n".join(lines)


def histograms(st: DatasetStats) -> str:
    """Emotion x intensity counts (videos) and hours per emotion, as a markdown table."""
    emos = [e for e in EMOTIONS if st.emotions.get(e)] + (["unlabelled"] if st.emotions.get("unlabelled") else [])
    lines = [f"**{st.name}**: {st.videos} videos, {len(st.identities)} identities, {_hours(st.hours)} h, "
             f"{st.with_sync} with SyncNet scores", "",
             "| Emotion | Videos | Hours | " + " | ".join(f"Level {l}" for l in INTENSITIES) + " |",
             "|---|---|---|" + "---|" * len(INTENSITIES)]
    for e in emos:
        lv = " | ".join(str(st.intensities.get((e, l), 0)) for l in INTENSITIES)
        lines.append(f"| {e} | {st.emotions[e]} | {st.seconds_by_emotion[e] / 3600:.3f} | {lv} |")
    return "\n".join(lines)
