"""Training datasets over prepared sample folders (``emocast.data.layout``).

* :class:`Stage1Dataset` — (reference image, target frame) pairs with **emotion-aware sampling** (paper
  §3.4.1): for an emotional target frame the reference comes, at rate ``neutral_ref_rate``, from a neutral
  video of the same identity; when the identity has no neutral video it falls back to the target's own video
  and the sample says so (``ref_source = "fallback"``) so the trainer can count and log it.
* :class:`Stage2Dataset` — ``F`` target frames + ``M`` motion frames, audio windows of ``2·margin+1`` wav2vec2
  rows taken from *real* neighbours (the clip start is drawn so that every window lies inside the audio), a
  reference frame, masks, identity embedding and an emotive prompt.
* Several meta files are mixed with weights (:class:`DatasetSpec`): each draw first picks a dataset with
  probability ∝ weight, then a video uniformly.
* Items are addressed by a global integer key from :class:`StreamSampler`; all randomness of an item is
  derived from ``(seed, key)``, so a resumed run that restarts the sampler at the saved position sees exactly
  the same samples, whatever the number of loader workers.
* A bad or missing sample (unreadable file, too short, wrong shapes) is skipped with a warning and replaced by
  a fresh draw; the replacement item carries ``skipped`` (count) and ``skipped_ids`` so the trainer counts them.
  Nothing ever ends an epoch (the stream is infinite).
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from torch.utils.data import Dataset, Sampler

from ..config import option
from ..errors import ConfigError, EmoCASTError, InputError
from ..labels.emotions import NEUTRAL
from ..preprocess.audio import audio_windows
from . import layout

log = logging.getLogger("emocast.data")

#: where a stage-1 reference frame came from
REF_SOURCES = ("neutral", "same_video", "fallback")


#: what reading a damaged or missing sample raises: the artifact readers' InputError naming the file
#: (emocast.data.layout), and what a reader may still raise for a file it cannot parse (EOFError: a cut .npy;
#: SafetensorError: a cut .safetensors); such a sample is skipped with a warning and counted
SAMPLE_ERRORS = (EmoCASTError, OSError, ValueError, EOFError, IndexError, KeyError, RuntimeError, SafetensorError)


class DatasetExhaustedError(EmoCASTError):
    """Too many consecutive bad samples: the dataset itself is broken."""


@dataclass
class DatasetSpec:
    """One meta file in a training mixture (an entry of the training configs' ``data.datasets``)."""

    meta: str = option("", "meta JSON written by scripts/extract_meta_info.py")
    weight: float = option(1.0, "mixture weight (probability of drawing from this dataset, normalised)", ge=0)
    name: str | None = option(None, "name in logs and for identity namespacing (default: the meta file's stem)")
    root: str | None = option(None, "dataset root (default: the one stored in the meta file)")

    @classmethod
    def __config_coerce__(cls, value):
        return {"meta": value} if isinstance(value, str) else value

    def check(self) -> None:
        if not self.meta:
            raise ConfigError("data.datasets: every entry needs a 'meta' path (scripts/extract_meta_info.py output)")


@dataclass
class VideoEntry:
    dataset: int  # index in the mixture
    video_id: str
    dir: Path
    identity: str | None
    emotion: str | None
    prompts: list[str]
    num_frames: int


class VideoIndex:
    """All videos of a weighted mixture of meta files, plus the neutral videos of each identity."""

    def __init__(self, specs: Sequence[DatasetSpec]):
        if not specs:
            raise ConfigError("data.datasets is empty: list at least one meta file (scripts/extract_meta_info.py)")
        self.specs = list(specs)
        self.names: list[str] = []
        self.videos: list[list[VideoEntry]] = []
        weights = []
        for i, spec in enumerate(self.specs):
            meta = layout.read_meta(spec.meta, spec.root)
            name = spec.name or Path(spec.meta).stem
            entries = [VideoEntry(i, str(v["id"]), meta.video_dir(v), v.get("identity"), v.get("emotion"),
                                  list(v.get("prompts") or []), int(v.get("num_frames") or 0))
                       for v in meta.videos]
            if not entries:
                raise ConfigError(f"meta file {spec.meta} lists no videos: prepare data with scripts/data_preprocess.py "
                                  "and re-run scripts/extract_meta_info.py, or drop it from data.datasets")
            if not (spec.weight >= 0 and math.isfinite(spec.weight)):
                raise ConfigError(f"dataset {name}: weight {spec.weight} must be a finite number >= 0")
            self.names.append(name)
            self.videos.append(entries)
            weights.append(float(spec.weight))
        total = sum(weights)
        if total <= 0:
            raise ConfigError("data.datasets: all mixture weights are 0; give at least one dataset a positive weight")
        self.weights = np.asarray(weights) / total
        # neutral videos per (dataset name, identity): identities are only comparable within one dataset
        self.neutral: dict[tuple[str, str], list[VideoEntry]] = defaultdict(list)
        for name, entries in zip(self.names, self.videos):
            for e in entries:
                if e.identity is not None and e.emotion == NEUTRAL:
                    self.neutral[(name, e.identity)].append(e)

    def __len__(self) -> int:
        return sum(len(v) for v in self.videos)

    def draw(self, rng: np.random.Generator) -> VideoEntry:
        d = int(rng.choice(len(self.videos), p=self.weights))
        entries = self.videos[d]
        return entries[int(rng.integers(len(entries)))]

    def neutral_videos(self, entry: VideoEntry) -> list[VideoEntry]:
        if entry.identity is None:
            return []
        pool = self.neutral.get((self.names[entry.dataset], entry.identity), [])
        return [e for e in pool if e.video_id != entry.video_id]


class StreamSampler(Sampler[int]):
    """An infinite stream of item keys for one process: ``position·world_size + rank`` for position = start, …

    Restarting it at a saved ``start`` (items already consumed by this process) restores the data position.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, start: int = 0):
        self.rank, self.world_size, self.start = int(rank), int(world_size), int(start)

    def __iter__(self):
        pos = self.start
        while True:
            yield pos * self.world_size + self.rank
            pos += 1

    def __len__(self):  # the stream is endless; DataLoader only needs a number when asked for len()
        return 2 ** 62


# ----------------------------------------------------------------------------------------------------------------
# image helpers
# ----------------------------------------------------------------------------------------------------------------

def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    from PIL import Image

    resample = Image.LANCZOS if img.shape[0] > size else Image.BICUBIC
    return np.asarray(Image.fromarray(img).resize((size, size), resample))


def to_pixels(frames: np.ndarray, size: int) -> torch.Tensor:
    """RGB uint8 ``(..., H, W, 3)`` → float ``(..., 3, size, size)`` in [-1, 1]."""
    flat = frames.reshape((-1,) + frames.shape[-3:])
    flat = np.stack([_resize(f, size) for f in flat])
    t = torch.from_numpy(flat).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    return t.reshape(frames.shape[:-3] + t.shape[1:])


def face_region_tensor(mask: np.ndarray, size: int) -> torch.Tensor:
    """Hard face-region mask ``(H, W)`` 0/255 → ``(3, size, size)`` in [0, 1] (the FaceLocator input), resized
    exactly as inference resizes its face region (Pillow bilinear, :func:`emocast.preprocess.masks.face_region_from_mask`)."""
    from ..preprocess.masks import face_region_from_mask

    return torch.from_numpy(face_region_from_mask(np.asarray(mask, dtype=np.uint8), int(size)))


def masks_by_level(folder: Path, latent_size: int, levels: int = 4) -> dict[int, tuple]:
    """``{level: (full, face, lip)}`` flattened float masks of a sample folder."""
    from ..preprocess.masks import level_masks

    m = layout.read_masks(folder)
    sides = [max(1, latent_size >> lvl) for lvl in range(levels)]
    per = {k: [torch.from_numpy(x) for x in level_masks(m[k], sides)] for k in ("full", "face", "lip")}
    return {lvl: (per["full"][lvl], per["face"][lvl], per["lip"][lvl]) for lvl in range(levels)}


def pick_prompt(entry: VideoEntry, rng: np.random.Generator) -> str:
    """A random emotive description of the video; a plain template from the label when it has none."""
    if entry.prompts:
        return str(entry.prompts[int(rng.integers(len(entry.prompts)))])
    if entry.emotion:
        return f"a person talking with a {entry.emotion} expression"
    return ""


# ----------------------------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------------------------

class _StreamDataset(Dataset):
    """Shared draw/skip machinery: ``__getitem__(key)`` draws deterministically from ``(seed, key)``."""

    def __init__(self, index: VideoIndex, size: int, seed: int, max_retries: int = 50):
        if size % 8:
            raise ConfigError(f"data.size={size} must be a multiple of 8 (the VAE downsamples by 8)")
        self.index, self.size, self.seed, self.max_retries = index, int(size), int(seed), int(max_retries)
        self.latent_size = self.size // 8

    def __len__(self):
        return len(self.index)

    def __getitem__(self, key: int) -> dict:
        rng = np.random.default_rng([self.seed, int(key)])
        skipped = []
        for _ in range(self.max_retries):
            entry = self.index.draw(rng)
            try:
                item = self.load(entry, rng)
            except SAMPLE_ERRORS as err:
                log.warning("skipping bad sample %s (%s): %s", entry.video_id, entry.dir, err)
                skipped.append(entry.video_id)
                continue
            item["skipped"] = len(skipped)
            item["skipped_ids"] = skipped
            item["key"] = int(key)
            return item
        raise DatasetExhaustedError(
            f"{self.max_retries} consecutive samples failed to load (last: {skipped[-3:]}); check the dataset with "
            "scripts/dataset_stats.py and re-run scripts/data_preprocess.py on the broken folders")

    def load(self, entry: VideoEntry, rng: np.random.Generator) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _common(self, entry: VideoEntry, rng) -> dict:
        emb = layout.read_face_emb(entry.dir)
        if not np.all(np.isfinite(emb)):
            raise InputError(f"{entry.dir}/{layout.FACE_EMB} contains NaN/inf")
        return {
            "face_region": face_region_tensor(layout.read_face_region(entry.dir), self.size),
            "face_emb": torch.from_numpy(emb),
            "masks": masks_by_level(entry.dir, self.latent_size),
            "prompt": pick_prompt(entry, rng),
            "emotion": entry.emotion or "",
            "video_id": entry.video_id,
        }


class Stage1Dataset(_StreamDataset):
    """Image pairs for stage 1 with emotion-aware reference sampling.

    Args:
        neutral_ref_rate: probability that an emotional target takes its reference from a neutral video of the
            same identity (paper: always; 1.0). Targets that are neutral or unlabelled use their own video.
        sample_margin: minimum frame distance between reference and target within one video (Hallo: 30); a
            shorter video uses any frame.
    """

    def __init__(self, index: VideoIndex, size: int, seed: int, neutral_ref_rate: float = 1.0,
                 sample_margin: int = 30, max_retries: int = 50):
        super().__init__(index, size, seed, max_retries)
        if not 0.0 <= neutral_ref_rate <= 1.0:
            raise ConfigError(f"data.neutral_ref_rate={neutral_ref_rate} must be in [0, 1]")
        self.neutral_ref_rate, self.sample_margin = float(neutral_ref_rate), int(sample_margin)
        lonely = self.identities_without_neutral()
        if lonely and self.neutral_ref_rate > 0:
            log.warning("emotion-aware sampling: %d identities have emotional videos but no neutral one (e.g. %s); "
                        "their references fall back to the same video (counted as data/ref_fallback)",
                        len(lonely), ", ".join(f"{d}:{i}" for d, i in lonely[:5]))

    def identities_without_neutral(self) -> list[tuple[str, str]]:
        """``[(dataset name, identity)]`` with emotional videos but no neutral video."""
        out = set()
        for name, entries in zip(self.index.names, self.index.videos):
            for e in entries:
                if e.identity is not None and e.emotion not in (None, NEUTRAL) and (name, e.identity) not in \
                        self.index.neutral:
                    out.add((name, e.identity))
        return sorted(out)

    def choose_reference(self, entry: VideoEntry, rng) -> tuple[VideoEntry, str]:
        """``(video to take the reference from, source)`` with source in :data:`REF_SOURCES`."""
        emotional = entry.emotion is not None and entry.emotion != NEUTRAL
        if emotional and rng.random() < self.neutral_ref_rate:
            pool = self.index.neutral_videos(entry)
            if pool:
                return pool[int(rng.integers(len(pool)))], "neutral"
            return entry, "fallback"
        return entry, "same_video"

    def load(self, entry: VideoEntry, rng) -> dict:
        n = entry.num_frames or layout.count_frames(entry.dir)
        if n < 1:
            raise InputError(f"{entry.dir}/{layout.FRAMES} has no frames")
        tgt = int(rng.integers(n))
        ref_entry, source = self.choose_reference(entry, rng)
        if ref_entry is entry:
            far = [i for i in (range(n)) if abs(i - tgt) >= self.sample_margin]
            ref = int(far[int(rng.integers(len(far)))]) if far else int(rng.integers(n))
            ref_frame, tgt_frame = layout.read_frames(entry.dir, [ref, tgt])
        else:
            rn = ref_entry.num_frames or layout.count_frames(ref_entry.dir)
            ref = int(rng.integers(rn))
            (ref_frame,) = layout.read_frames(ref_entry.dir, [ref])
            (tgt_frame,) = layout.read_frames(entry.dir, [tgt])
        item = self._common(entry, rng)
        item.update({
            "target": to_pixels(tgt_frame, self.size),
            "reference": to_pixels(ref_frame, self.size),
            "ref_source": source,
            "sample_id": f"{entry.video_id}@{tgt}<-{ref_entry.video_id}@{ref}",
        })
        return item


class Stage2Dataset(_StreamDataset):
    """Video clips for stage 2: ``n_sample_frames`` targets, ``n_motion_frames`` previous frames, audio windows.

    The clip start ``s`` is drawn from ``[max(M, margin), min(L − F, N_audio − F − margin)]`` so the motion
    frames are real previous frames and every audio window ``[s+j−margin, s+j+margin]`` lies inside the audio
    (no clamping; inference clamps only at the ends of the driving audio). With probability ``start_ratio``
    the motion frames are copies of the reference frame, which is what the sampler feeds the first clip of a
    video (Hallo used black frames here, spec §11 item 13).
    """

    def __init__(self, index: VideoIndex, size: int, seed: int, n_sample_frames: int = 14, n_motion_frames: int = 2,
                 audio_margin: int = 2, start_ratio: float = 0.05, neutral_ref_rate: float = 0.0,
                 max_retries: int = 50):
        super().__init__(index, size, seed, max_retries)
        self.F, self.M, self.margin = int(n_sample_frames), int(n_motion_frames), int(audio_margin)
        self.start_ratio, self.neutral_ref_rate = float(start_ratio), float(neutral_ref_rate)

    def clip_start_range(self, num_frames: int, num_audio: int) -> tuple[int, int]:
        lo = max(self.M, self.margin)
        hi = min(num_frames - self.F, num_audio - self.F - self.margin)
        return lo, hi

    def load(self, entry: VideoEntry, rng) -> dict:
        audio = layout.read_audio_emb(entry.dir, dtype=torch.float32)
        n = entry.num_frames or layout.count_frames(entry.dir)
        lo, hi = self.clip_start_range(n, int(audio.shape[0]))
        if hi < lo:
            raise InputError(f"{entry.video_id}: {n} frames / {audio.shape[0]} audio rows are too short for "
                             f"{self.F}+{self.M} frames with audio margin {self.margin}")
        if not torch.isfinite(audio).all():
            raise InputError(f"{entry.dir}/{layout.AUDIO_EMB} contains NaN/inf")
        s = int(rng.integers(lo, hi + 1))
        ref_entry, source = entry, "same_video"
        if entry.emotion not in (None, NEUTRAL) and self.neutral_ref_rate > 0 and rng.random() < self.neutral_ref_rate:
            pool = self.index.neutral_videos(entry)
            if pool:
                ref_entry, source = pool[int(rng.integers(len(pool)))], "neutral"
            else:  # counted like stage 1's fallbacks (data/ref_fallback)
                source = "fallback"
        ref_n = n if ref_entry is entry else (ref_entry.num_frames or layout.count_frames(ref_entry.dir))
        ref = int(rng.integers(ref_n))
        clip_start = rng.random() < self.start_ratio
        idx = list(range(s - self.M, s + self.F))
        if ref_entry is entry:
            frames = layout.read_frames(entry.dir, idx + [ref])
            ref_frame, frames = frames[-1], frames[:-1]
        else:
            frames = layout.read_frames(entry.dir, idx)
            (ref_frame,) = layout.read_frames(ref_entry.dir, [ref])
        pix = to_pixels(frames, self.size)
        ref_pix = to_pixels(ref_frame, self.size)
        motion = ref_pix[None].repeat(self.M, 1, 1, 1) if clip_start else pix[: self.M]
        item = self._common(entry, rng)
        item.update({
            "frames": pix[self.M:],
            "motion": motion,
            "reference": ref_pix,
            "audio": audio_windows(audio, s, s + self.F, self.margin),  # (F, 2·margin+1, layers, dim)
            "clip_start": bool(clip_start),
            "ref_source": source,
            "sample_id": f"{entry.video_id}@{s}",
        })
        return item


def collate(items: list[dict]) -> dict:
    """Stack tensors (recursively through dicts/tuples), keep strings and id lists as Python lists."""
    first = items[0]
    out = {}
    for k, v in first.items():
        vals = [it[k] for it in items]
        out[k] = _collate_values(vals)
    return out


def _collate_values(vals):
    v = vals[0]
    if isinstance(v, torch.Tensor):
        return torch.stack(vals)
    if isinstance(v, dict):
        return {k: _collate_values([x[k] for x in vals]) for k in v}
    if isinstance(v, tuple):
        return tuple(_collate_values([x[i] for x in vals]) for i in range(len(v)))
    if isinstance(v, bool):
        return torch.tensor(vals, dtype=torch.bool)
    if isinstance(v, int):
        return torch.tensor(vals, dtype=torch.long)
    return list(vals)


def build_index(datasets) -> VideoIndex:
    """A :class:`VideoIndex` from the ``data.datasets`` config list (:class:`DatasetSpec` entries, or mappings /
    meta paths checked like the config's)."""
    from .. import config

    specs = [d if isinstance(d, DatasetSpec) else config.load(DatasetSpec, [DatasetSpec.__config_coerce__(d)])
             for d in (datasets or [])]
    return VideoIndex(specs)
