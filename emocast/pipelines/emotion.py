"""Emotion control beyond one sentence: an emotion timeline and an intensity dial on the text conditioning.

**Timeline.** An emotive prompt may be a timeline, ``"0: A person is talking calmly. | 3.2: The person becomes
furious."`` (entries ``SECONDS: prompt`` separated by ``|``; a time may also be written ``m:ss.s``), or a small file
(:func:`read_timeline`: JSON, SRT subtitles, or ``SECONDS: prompt`` lines). A video is rendered clip by clip, so each
clip gets the text conditioning of its time, the centre of the clip (``(c + 1/2) * clip_length / 25`` s). Around each
change at time ``T`` a transition window of ``w`` seconds blends the CLIP text embeddings linearly: the new entry's
weight rises from 0 at ``T - w/2`` to 1 at ``T + w/2``. With entries ``e_0..e_n`` at ``t_1 < ... < t_n``::

    text(t) = e_0 + sum_i a_i(t) (e_i - e_{i-1}),   a_i(t) = clamp((t - t_i) / w + 1/2, 0, 1)   (w = 0: a step)

The first entry holds from the start of the video whatever its time. A clip whose text is one entry's gets that
entry's embedding itself (no arithmetic), so a one-entry timeline is exactly the plain prompt.

**Intensity.** ``strength s`` moves each entry's embedding from a neutral prompt's ``n`` towards and beyond it:
``n + s (e - n)`` (interpolation for s < 1, extrapolation for s > 1); ``s = 1`` returns ``e`` itself.

Both act on the text conditioning only (the emotive text in the cross-attention and as the queries of the emotive
audio attention); the step owner (:mod:`emocast.pipelines.conditioning`) takes the result as ``text_emb``.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import ConfigError, InputError

log = logging.getLogger("emocast.emotion")

DEFAULT_NEUTRAL_PROMPT = "A person is talking with neutral emotion."
DEFAULT_TRANSITION = 0.5  # seconds
SAFE_STRENGTH = (0.0, 2.0)  # the documented safe range of emotion_strength (docs/inference.md)
MAX_STRENGTH = 3.0  # beyond this the extrapolated embeddings leave CLIP's range: refused

_TIME = r"(\d+(?::\d{1,2})?(?:\.\d*)?)\s*s?"
_ENTRY = re.compile(r"^\s*" + _TIME + r"\s*:\s*(.*?)\s*$", re.S)
EXAMPLE = '"0: A person is talking calmly. | 3.2: The person becomes furious."'


@dataclass(frozen=True)
class TimelineEntry:
    start: float  # seconds
    prompt: str


@dataclass(frozen=True)
class EmotionTimeline:
    """Emotive prompts over time (sorted, the first from the start of the video)."""

    entries: tuple[TimelineEntry, ...]
    source: str = ""  # where it came from, for messages (a file, or "the prompt")

    @classmethod
    def single(cls, prompt: str) -> "EmotionTimeline":
        return cls((TimelineEntry(0.0, prompt),))

    @property
    def prompts(self) -> tuple[str, ...]:
        return tuple(e.prompt for e in self.entries)

    def __str__(self) -> str:
        if len(self.entries) == 1:
            return self.entries[0].prompt
        return " | ".join(f"{e.start:g}: {e.prompt}" for e in self.entries)

    def weights(self, t: float, transition: float) -> tuple[float, ...]:
        """The weight of every entry at time ``t`` (non-negative, summing to 1)."""
        alphas = [_ramp(t, e.start, transition) for e in self.entries[1:]] + [0.0]
        out, prev = [], 1.0
        for a in alphas:
            out.append(prev - a)
            prev = a
        return tuple(out)

    def check_duration(self, seconds: float, what: str = "the driving audio") -> None:
        """An entry at or past the end of the audio never shows: one message naming it and the fix."""
        late = [e for e in self.entries[1:] if e.start >= seconds]
        if late:
            e = late[0]
            raise InputError(f"emotion timeline{_where(self.source)}: the entry at {e.start:g} s ({e.prompt!r}) is past "
                             f"the end of {what} ({seconds:.2f} s). Fix: give it a time below {seconds:.2f} s, or "
                             "remove it")


def _ramp(t: float, start: float, window: float) -> float:
    if window <= 0:
        return 1.0 if t >= start else 0.0
    return min(1.0, max(0.0, (t - start) / window + 0.5))


def _where(source: str) -> str:
    return f" ({source})" if source else ""


def parse_time(text: str) -> float:
    """``"3.2"``, ``"3.2s"`` or ``"1:05.5"`` -> seconds."""
    text = text.strip().rstrip("s").strip()
    if ":" in text:
        minutes, seconds = text.split(":", 1)
        return int(minutes) * 60 + float(seconds)
    return float(text)


def is_timeline(text: str) -> bool:
    """Whether a prompt string is written as a timeline (an entry starts with ``SECONDS:``)."""
    return any(_ENTRY.match(part) for part in str(text).split("|"))


def parse_timeline(text: str, source: str = "") -> EmotionTimeline:
    """A prompt string -> its timeline: a plain prompt is a one-entry timeline (itself, untouched); ``"T: prompt |
    T: prompt"`` is parsed and checked (times increasing, every entry with a time and a prompt)."""
    text = str(text)
    if not is_timeline(text):
        return EmotionTimeline.single(text)
    entries = []
    for part in text.split("|"):
        m = _ENTRY.match(part)
        if not m:
            raise InputError(f"emotion timeline{_where(source)}: the entry {part.strip()!r} has no time. Fix: write "
                             f"every entry as 'SECONDS: prompt', entries separated by '|', e.g. {EXAMPLE}")
        entries.append((m.group(1), m.group(2), part.strip()))
    return build_timeline([(parse_time(t), p, raw) for t, p, raw in entries], source)


def build_timeline(entries: Sequence[tuple], source: str = "") -> EmotionTimeline:
    """``(seconds, prompt[, as written])`` entries -> a checked :class:`EmotionTimeline`."""
    out = []
    for item in entries:
        t, prompt = item[0], item[1]
        raw = item[2] if len(item) > 2 else f"{t}: {prompt}"
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise InputError(f"emotion timeline{_where(source)}: the time {t!r} of {raw!r} is not a number of "
                             f"seconds. Fix: e.g. {EXAMPLE}") from None
        if not math.isfinite(t) or t < 0:
            raise InputError(f"emotion timeline{_where(source)}: the time {t:g} of {raw!r} must be a number of seconds "
                             ">= 0")
        if not str(prompt or "").strip():
            raise InputError(f"emotion timeline{_where(source)}: the entry {raw!r} has no prompt. Fix: write "
                             f"'SECONDS: prompt', e.g. {EXAMPLE}")
        if out and t <= out[-1].start:
            raise InputError(f"emotion timeline{_where(source)}: the entry at {t:g} s ({str(prompt).strip()!r}) comes "
                             f"after the entry at {out[-1].start:g} s; the times must increase. Fix: sort the entries "
                             "by time (each time once)")
        out.append(TimelineEntry(t, str(prompt).strip()))
    if not out:
        raise InputError(f"emotion timeline{_where(source)} has no entries. Fix: e.g. {EXAMPLE}")
    return EmotionTimeline(tuple(out), source)


_SRT_TIME = re.compile(r"(\d+):(\d{2}):(\d{2})[,.](\d{1,3})\s*-->")


def read_timeline(path) -> EmotionTimeline:
    """A timeline file: ``.json`` (a list of ``{"time": seconds, "prompt": ...}``, or ``{"entries": [...]}``),
    ``.srt`` (subtitles: each cue's start time and text; end times are ignored: an entry holds until the next), or
    any other text file of ``SECONDS: prompt`` lines (blank lines and ``#`` comments skipped)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"emotion timeline file not found: {p}. Fix: check the path (a .json, .srt or .txt file of "
                         "'SECONDS: prompt' lines)")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the emotion timeline {p} ({err}). Fix: save it as UTF-8 text") from None
    source = str(p)
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"emotion timeline {p} is not valid JSON ({err.msg}, line {err.lineno}). Fix: write a "
                             'list like [{"time": 0, "prompt": "..."}, {"time": 3.2, "prompt": "..."}]') from None
        items = data.get("entries") if isinstance(data, dict) else data
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise InputError(f"emotion timeline {p}: expected a list of objects with time and prompt, e.g. "
                             '[{"time": 0, "prompt": "..."}, {"time": 3.2, "prompt": "..."}]')
        entries = []
        for i, item in enumerate(items):
            unknown = sorted(set(item) - {"time", "start", "prompt"})
            if unknown or "prompt" not in item or not ({"time", "start"} & set(item)):
                raise InputError(f"emotion timeline {p}: entry {i + 1} ({json.dumps(item)}) needs exactly the keys "
                                 "time (seconds) and prompt")
            t = item.get("time", item.get("start"))
            entries.append((parse_time(t) if isinstance(t, str) else t, item["prompt"], json.dumps(item)))
        return build_timeline(entries, source)
    if suffix == ".srt":
        entries = []
        for block in re.split(r"\n\s*\n", text.strip()):
            lines = [ln.strip() for ln in block.strip().splitlines() if ln.strip()]
            timing = next((i for i, ln in enumerate(lines) if "-->" in ln), None)
            m = _SRT_TIME.match(lines[timing]) if timing is not None else None
            if m is None:
                raise InputError(f"emotion timeline {p}: the cue {' / '.join(lines)!r} has no 'HH:MM:SS,mmm --> ...' "
                                 "line. Fix: write SRT cues (number, timing line, prompt)")
            h, mnt, s, ms = m.groups()
            start = int(h) * 3600 + int(mnt) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000
            entries.append((start, " ".join(lines[timing + 1:]), lines[timing]))
        return build_timeline(entries, source)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return parse_timeline(" | ".join(ln.replace("|", " ") for ln in lines), source) if lines else \
        build_timeline([], source)


def as_timeline(prompt) -> EmotionTimeline:
    """What the pipeline accepts as a prompt -> a timeline: a string (plain or timeline syntax), an
    :class:`EmotionTimeline`, or a list of ``(seconds, prompt)`` pairs."""
    if isinstance(prompt, EmotionTimeline):
        return prompt
    if prompt is None:
        return EmotionTimeline.single("")
    if isinstance(prompt, (str, Path)):
        return parse_timeline(str(prompt), "the prompt")
    return build_timeline(list(prompt), "the prompt")


@dataclass(frozen=True)
class EmotionSettings:
    """The text-side emotion controls of a render (the guidance scales are the sampler's)."""

    strength: float = 1.0
    neutral_prompt: str = DEFAULT_NEUTRAL_PROMPT
    transition: float = DEFAULT_TRANSITION  # seconds

    def __post_init__(self):
        check_strength(self.strength)
        if not math.isfinite(float(self.transition)) or float(self.transition) < 0:
            raise ConfigError(f"emotion_transition must be a number of seconds >= 0, got {self.transition}")


def check_strength(s) -> float:
    s = float(s)
    if not math.isfinite(s) or not 0.0 <= s <= MAX_STRENGTH:
        raise ConfigError(f"emotion_strength must be between 0 and {MAX_STRENGTH:g}, got {s:g}. Fix: 1 = the prompt "
                          f"as written, 0 = the neutral prompt, {SAFE_STRENGTH[0]:g}-{SAFE_STRENGTH[1]:g} is the safe "
                          "range (docs/inference.md)")
    return s


class EmotionText:
    """The text conditioning of every clip of one video: the timeline's prompts encoded once each (with the
    neutral prompt when ``strength != 1``), moved by the strength, blended by the clip's time.

    ``encode(prompt) -> (1, 77, D)`` is the pipeline's text encoder. :meth:`clip_key` names a clip's blend (the same
    key = the same embedding, so a caller can reuse per-clip work); :meth:`embedding` builds it.
    """

    def __init__(self, timeline: EmotionTimeline, settings: EmotionSettings, encode: Callable,
                 clip_length: int, fps: float):
        self.timeline, self.settings = timeline, settings
        self.clip_length, self.fps = int(clip_length), float(fps)
        strength = float(settings.strength)
        if not SAFE_STRENGTH[0] <= strength <= SAFE_STRENGTH[1]:
            log.warning("emotion_strength %g is outside the safe range %g-%g: expect exaggerated or unstable "
                        "expressions", strength, *SAFE_STRENGTH)
        embs = [encode(p) for p in timeline.prompts]
        if strength != 1.0:
            neutral = encode(settings.neutral_prompt)
            embs = [neutral + strength * (e - neutral) for e in embs]
        self.embeddings = embs

    def clip_time(self, clip: int) -> float:
        """Seconds at the centre of clip ``clip``."""
        return (clip + 0.5) * self.clip_length / self.fps

    def clip_key(self, clip: int) -> tuple[float, ...]:
        return self.timeline.weights(self.clip_time(clip), float(self.settings.transition))

    def embedding(self, key: Sequence[float]):
        """The text embedding of the blend ``key`` (entry weights): one entry's own embedding when one weight is 1."""
        for w, e in zip(key, self.embeddings):
            if w == 1.0:
                return e
        out = None
        for w, e in zip(key, self.embeddings):
            if w:
                out = w * e if out is None else out + w * e
        return out
