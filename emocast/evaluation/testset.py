"""Test-set manifests for batch rendering (``scripts/inference.py --manifest``) plus the labels for Acc_emo.

A test set is a list of rows ``(image, audio, emotion and/or prompt[, output])``. Two ways to build it:

- **cross product** of an image folder and an audio folder (the paper's in-the-wild set: 7 images x 40 audios =
  280 videos). Each audio's emotion comes from ``--emotions`` (CSV ``audio,emotion[,intensity]``), from its file
  name (MEAD names or one emotion word in the name), or ``--emotion`` for all;
- explicit **rows** (CSV with a header naming ``image``, ``audio`` and ``emotion`` and/or ``prompt``, optional
  ``intensity``, ``output``).

A row with an emotion but no prompt gets one from the prompt bank (:func:`emocast.labels.prompts.sample_prompts`,
seeded per row so the set is reproducible); without the bank, the template ``"a person talking with a {emotion}
expression"``. The rendering manifest has the columns ``image,audio,prompt,output`` (the batch format of
:mod:`emocast.pipelines.batch`); the labels file has ``video,emotion,image,audio,prompt`` for
``scripts/evaluate.py --labels``.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..labels.emotions import normalize_emotion, normalize_intensity
from .acc_emo import label_from_name
from .clips import list_files

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg")
TEMPLATE = "a person talking with a {emotion} expression"


@dataclass
class Row:
    image: Path
    audio: Path
    emotion: str | None
    prompt: str
    output: str
    intensity: int | None = None


def make_prompt(emotion: str | None, intensity: int | None, seed: str, use_bank: bool = True) -> str:
    if emotion is None:
        raise InputError("a row needs an emotion or a prompt")
    if use_bank:
        try:
            from ..labels.prompts import sample_prompts
        except ImportError:
            sample_prompts = None
        if sample_prompts is not None:
            got = sample_prompts(emotion, intensity, n=1, seed=seed)
            if got:
                return got[0]
    return TEMPLATE.format(emotion=emotion)


def read_emotions_csv(path) -> dict[str, tuple[str, int | None]]:
    """``{audio stem: (emotion, intensity)}`` from a CSV with columns ``audio,emotion[,intensity]``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"emotions file not found: {path}; expected a CSV with columns audio,emotion[,intensity]")
    out = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not {"audio", "emotion"} <= {(f or "").strip().lower() for f in reader.fieldnames or []}:
            raise InputError(f"{path}: the header must name the columns audio and emotion")
        for line, r in enumerate(reader, start=2):
            r = {(k or "").strip().lower(): (v or "").strip() for k, v in r.items()}
            try:
                emo = normalize_emotion(r["emotion"])
                out[Path(r["audio"]).stem] = (emo, normalize_intensity(r.get("intensity") or None, emo))
            except InputError as err:
                raise InputError(f"{path}, line {line}: {err}") from None
    return out


def _audio_emotion(audio: Path, emotions: dict | None, fixed: str | None) -> tuple[str | None, int | None]:
    if emotions is not None and audio.stem in emotions:
        return emotions[audio.stem]
    if fixed:
        return normalize_emotion(fixed), None
    from ..labels.mead import parse_mead

    info = parse_mead(audio)
    if info is not None:
        return info.emotion, info.intensity
    return label_from_name(audio), None


def cross_product(images_dir, audios_dir, emotions_csv=None, emotion=None, intensity=None, seed: int = 0,
                  use_bank: bool = True) -> list[Row]:
    images = list_files(images_dir, IMAGE_EXTENSIONS, "image")
    audios = list_files(audios_dir, AUDIO_EXTENSIONS, "audio")
    emotions = read_emotions_csv(emotions_csv) if emotions_csv else None
    rows = []
    for audio in audios:
        emo, level = _audio_emotion(audio, emotions, emotion)
        if emo is None:
            raise InputError(f"no emotion for {audio.name}: name it with an emotion word (e.g. {audio.stem}_happy), "
                             "give --emotions CSV (audio,emotion) or --emotion for all")
        level = level if level is not None else normalize_intensity(intensity, emo) if intensity else level
        for image in images:
            prompt = make_prompt(emo, level, f"{seed}:{image.stem}:{audio.stem}", use_bank)
            rows.append(Row(image, audio, emo, prompt, f"{image.stem}_{audio.stem}.mp4", level))
    return rows


def from_rows_csv(path, seed: int = 0, use_bank: bool = True) -> list[Row]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"rows file not found: {path}")
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = {(f or "").strip().lower() for f in reader.fieldnames or []}
        if not {"image", "audio"} <= fields or not ({"emotion", "prompt"} & fields):
            raise InputError(f"{path}: the header must name image, audio and emotion and/or prompt")
        for line, r in enumerate(reader, start=2):
            r = {(k or "").strip().lower(): (v or "").strip() for k, v in r.items()}
            if not r.get("image"):
                continue
            image, audio = (Path(r[k]) if Path(r[k]).is_absolute() else path.parent / r[k] for k in ("image", "audio"))
            try:
                emo = normalize_emotion(r["emotion"]) if r.get("emotion") else None
                level = normalize_intensity(r.get("intensity") or None, emo) if emo else None
                prompt = r.get("prompt") or make_prompt(emo, level, f"{seed}:{image.stem}:{audio.stem}", use_bank)
            except InputError as err:
                raise InputError(f"{path}, line {line}: {err}") from None
            rows.append(Row(image, audio, emo, prompt, r.get("output") or f"{image.stem}_{audio.stem}.mp4", level))
    if not rows:
        raise InputError(f"{path} has no rows")
    return rows


def _rel(p: Path, base: Path) -> str:
    try:
        return str(p.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(p.resolve())


def write_manifest(rows: list[Row], manifest, outputs_dir=None) -> tuple[Path, Path]:
    """The rendering manifest (``.csv`` or ``.jsonl``) and ``<stem>_labels.csv`` beside it.

    Paths are written relative to the manifest's folder when they lie below it (else absolute); ``output`` is
    ``<outputs_dir>/<image>_<audio>.mp4`` (relative to the manifest too) when ``outputs_dir`` is given."""
    manifest = Path(manifest)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    base = manifest.parent
    names = [r.output for r in rows]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"two rows would render to the same file {dup[0]}; give distinct output names")
    records = []
    for r in rows:
        out = r.output if outputs_dir is None else _rel(Path(outputs_dir) / r.output, base)
        records.append({"image": _rel(r.image, base), "audio": _rel(r.audio, base), "prompt": r.prompt,
                        "output": out})
    if manifest.suffix.lower() == ".jsonl":
        manifest.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in records), encoding="utf-8")
    elif manifest.suffix.lower() == ".csv":
        with manifest.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["image", "audio", "prompt", "output"])
            w.writeheader()
            w.writerows(records)
    else:
        raise InputError(f"manifest {manifest}: use a .csv or .jsonl file name")
    labels = manifest.with_name(manifest.stem + "_labels.csv")
    with labels.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["video", "emotion", "intensity", "image", "audio", "prompt"])
        for r in rows:
            w.writerow([Path(r.output).name, r.emotion or "", r.intensity or "", r.image.name, r.audio.name, r.prompt])
    return manifest, labels


# ---- the paper's MEAD test set -------------------------------------------------------------------------------------
MEAD_EAT_CLIPS = 8  # clips per subject and emotion: 4 subjects x 8 emotions x 8 = 256 videos
MEAD_EAT_LEVEL = 3  # the strongest level (neutral has only level 1)


def mead_eat_rows(mead_root, out_dir, seed: int = 0, use_bank: bool = True) -> tuple[list[Row], dict[str, Path]]:
    """The paper's MEAD test set from a MEAD tree (``<id>/video/front/<emotion>/level_<n>/<clip>.mp4``):
    the four test subjects (:data:`emocast.labels.mead.TEST_IDENTITIES`), per subject and emotion the first
    :data:`MEAD_EAT_CLIPS` front-view clips of level 3 (neutral: level 1) in clip order; the reference image of a
    subject is the first frame of its first neutral front clip (written to ``<out_dir>/references/<id>.png``), the
    driving audio is the clip's own (MEAD's ``audio/`` file when present, else the video). Returns the rows and
    ``{output name: ground-truth video}``; outputs are named ``<id>_<emotion>_level_<n>_<clip>.mp4`` so that
    ``scripts/evaluate.py --gt`` pairs each with its ground truth by name."""
    from PIL import Image

    from ..labels.emotions import EMOTIONS, NEUTRAL
    from ..labels.mead import TEST_IDENTITIES, mead_audio_for, parse_mead
    from ..media.video import read_frames

    root, out_dir = Path(mead_root), Path(out_dir)
    rows, gts, missing = [], {}, []
    for ident in TEST_IDENTITIES:
        clips = {}
        for p in sorted((root / ident / "video" / "front").glob("*/level_*/*.mp4")):
            info = parse_mead(p.relative_to(root))
            if info is not None:
                clips.setdefault((info.emotion, info.intensity), []).append((p, info))
        neutral = clips.get((NEUTRAL, 1))
        if not neutral:
            missing.append(f"{ident}/video/front/neutral/level_1/*.mp4")
            continue
        ref = out_dir / "references" / f"{ident}.png"
        ref.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(read_frames(neutral[0][0], [0])[0]).save(ref)
        for emo in EMOTIONS:
            level = 1 if emo == NEUTRAL else MEAD_EAT_LEVEL
            chosen = clips.get((emo, level), [])[:MEAD_EAT_CLIPS]
            if len(chosen) < MEAD_EAT_CLIPS:
                missing.append(f"{ident}/video/front/{emo}/level_{level} ({len(chosen)} of {MEAD_EAT_CLIPS} clips)")
            for video, info in chosen:
                name = f"{ident}_{emo}_level_{level}_{info.clip}.mp4"
                prompt = make_prompt(emo, level, f"{seed}:{ident}:{name}", use_bank)
                rows.append(Row(ref, mead_audio_for(video) or video, emo, prompt, name, level))
                gts[name] = video
    if missing:
        raise InputError(f"{root} is not a complete MEAD tree for the test subjects; missing: {'; '.join(missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''}")
    return rows, gts


def link_ground_truth(gts: dict[str, Path], folder) -> Path:
    """``folder/<output name>`` -> the ground-truth video (symbolic links; copies where links are not allowed)."""
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, video in gts.items():
        dst = folder / name
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        try:
            dst.symlink_to(Path(video).resolve())
        except OSError:
            shutil.copyfile(video, dst)
    return folder
