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
MEAD_CLIP_RULES = ("paper", "all")


def eat_clip_key(name: str) -> tuple[str, str, str, str] | None:
    """``(identity, emotion[:3], level, clip)`` of an EAT test name: ``M003_M003_ang_3_026`` (EAT_code's
    ``rand_sample_ours_mead100.npy`` and its output names ``<reference id>_<clip name>``) or ``M003_ang_3_026``
    (the names of EAT's ``wav_16000`` / ground-truth files); None for anything else."""
    parts = Path(str(name).strip()).stem.split("_")
    if len(parts) == 5:
        parts = parts[1:]
    if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
        return None
    return parts[0].upper(), parts[1][:3].lower(), parts[2], parts[3]


def read_eat_names(path) -> set[tuple[str, str, str, str]]:
    """The clips of an EAT test list: a ``.npy`` array of names (EAT_code / evaluation_eat
    ``rand_sample_ours_mead100.npy``, read without pickle) or a text file with one name per line."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise InputError(f"clip list not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            names = [str(n) for n in np.load(path, allow_pickle=False).reshape(-1)]
        except ValueError as err:
            raise InputError(f"{path} is not an array of clip names ({err})") from None
    else:
        names = [n for n in path.read_text(encoding="utf-8").split() if n]
    keys, bad = set(), []
    for n in names:
        key = eat_clip_key(n)
        (bad.append(n) if key is None else keys.add(key))
    if bad or not keys:
        raise InputError(f"{path}: {len(bad)} of {len(names)} names are not EAT test names like M003_M003_ang_3_026 "
                         f"or M003_ang_3_026 (first: {bad[0] if bad else 'none'})")
    return keys


def mead_eat_rows(mead_root, out_dir, seed: int = 0, use_bank: bool = True, clips: str = "paper",
                  names=None, references=None) -> tuple[list[Row], dict[str, Path]]:
    """The MEAD test set from a MEAD tree (``<id>/video/front/<emotion>/level_<n>/<clip>.mp4``) for the four test
    subjects (:data:`emocast.labels.mead.TEST_IDENTITIES`), level 3 for the seven emotions and level 1 for neutral
    (EAT's test clips are exactly those, ``test_mead.py``):

    - ``clips="paper"``: per subject and emotion the first :data:`MEAD_EAT_CLIPS` clips in clip order (256 videos;
      the paper gives no clip list, so which 8 is ours);
    - ``clips="all"``: every such clip (EAT's full MEAD test, ``test_mead.py --mode 1``: 985 videos in EAT's data);
    - ``names``: a set of :func:`eat_clip_key` keys (e.g. EAT's 100-clip sample, ``--mode 0``) instead.

    The reference image of a subject is ``references/<id>.png|.jpg`` when ``references`` is given (EAT uses one
    fixed image per subject, ``mead_data/images_evp_25/new_neutral_2/<id>/<id>.png`` from its download), else the
    first frame of the subject's first neutral front clip (ours), written to ``<out_dir>/references/<id>.png``; the
    driving audio is the clip's own (MEAD's ``audio/`` file when present, else the video; EAT: the clip's 16 kHz
    wav). Returns the rows and ``{output name: ground-truth video}``; outputs are named
    ``<id>_<emotion>_level_<n>_<clip>.mp4`` so that ``scripts/evaluate.py --gt`` pairs each with its ground truth."""
    from PIL import Image

    from ..labels.emotions import EMOTIONS, NEUTRAL
    from ..labels.mead import TEST_IDENTITIES, mead_audio_for, parse_mead
    from ..media.video import read_frames

    if clips not in MEAD_CLIP_RULES:
        raise InputError(f"unknown MEAD clip rule {clips!r}; use one of {', '.join(MEAD_CLIP_RULES)}")
    root, out_dir = Path(mead_root), Path(out_dir)
    rows, gts, missing, found = [], {}, [], set()
    for ident in TEST_IDENTITIES:
        by_level = {}
        for p in sorted((root / ident / "video" / "front").glob("*/level_*/*.mp4")):
            info = parse_mead(p.relative_to(root))
            if info is not None:
                by_level.setdefault((info.emotion, info.intensity), []).append((p, info))
        ref = _reference_image(ident, references, by_level.get((NEUTRAL, 1)), out_dir, missing, read_frames, Image)
        for emo in EMOTIONS:
            level = 1 if emo == NEUTRAL else MEAD_EAT_LEVEL
            chosen = by_level.get((emo, level), [])
            if names is not None:
                chosen = [(v, i) for v, i in chosen if (ident, emo[:3], str(level), i.clip) in names]
            elif clips == "paper":
                chosen = chosen[:MEAD_EAT_CLIPS]
                if len(chosen) < MEAD_EAT_CLIPS:
                    missing.append(f"{ident}/video/front/{emo}/level_{level} ({len(chosen)} of {MEAD_EAT_CLIPS} "
                                   "clips)")
            for video, info in chosen:
                found.add((ident, emo[:3], str(level), info.clip))
                name = f"{ident}_{emo}_level_{level}_{info.clip}.mp4"
                prompt = make_prompt(emo, level, f"{seed}:{ident}:{name}", use_bank)
                if ref is not None:
                    rows.append(Row(ref, mead_audio_for(video) or video, emo, prompt, name, level))
                gts[name] = video
    if names is not None:
        missing += [f"{'_'.join(k)} (EAT name)" for k in sorted(set(names) - found)]
    if missing:
        raise InputError(f"{root} is not a complete MEAD tree for the test subjects; missing: {'; '.join(missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''} ({len(missing)} in all)")
    if not rows:
        raise InputError(f"{root}: no front-view test clips of {', '.join(TEST_IDENTITIES)} found")
    return rows, gts


def _reference_image(ident, references, neutral, out_dir, missing, read_frames, Image) -> Path | None:
    if references is not None:
        for ext in IMAGE_EXTENSIONS:
            cand = Path(references) / f"{ident}{ext}"
            if cand.is_file():
                return cand
        missing.append(f"{Path(references) / ident}.png (reference image)")
        return None
    if not neutral:
        missing.append(f"{ident}/video/front/neutral/level_1/*.mp4")
        return None
    ref = out_dir / "references" / f"{ident}.png"
    ref.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(read_frames(neutral[0][0], [0])[0]).save(ref)
    return ref


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
