"""The on-disk layout of a prepared dataset (written by data preparation, read by training).

A dataset root holds one folder per video, ``samples/<video_id>/``, with the files of :data:`FILES`
(see ``docs/architecture.md`` "Data layout" and ``docs/data.md``). Folders are written atomically: everything
goes to ``samples/.tmp-<video_id>/`` first and the folder is renamed into place only when complete
(:func:`staging`), so a killed run never leaves a half-written sample behind.

Meta files (``scripts/extract_meta_info.py``) list videos by their folder relative to the dataset root
(:func:`write_meta` / :func:`read_meta`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..errors import InputError, UnreadableMedia

FORMAT_VERSION = 1
FPS = 25
AUDIO_SR = 16000
SAMPLES = "samples"
TMP_PREFIX = ".tmp-"

FRAMES = "frames.mp4"
AUDIO = "audio.wav"
VOCALS = "vocals.wav"
FACE_REGION = "face_region.png"
MASK_FULL = "mask_full.png"
MASK_FACE = "mask_face.png"
MASK_LIP = "mask_lip.png"
FACE_EMB = "face_emb.npy"
AUDIO_EMB = "audio_emb.safetensors"
INFO = "info.json"
GOP = FPS  # keyframe interval of frames.mp4

#: files every finished sample folder holds (``vocals.wav`` is optional)
REQUIRED_FILES = (FRAMES, AUDIO, FACE_REGION, MASK_FULL, MASK_FACE, MASK_LIP, FACE_EMB, AUDIO_EMB, INFO)
FILES = REQUIRED_FILES + (VOCALS,)
MASK_FILES = {"full": MASK_FULL, "face": MASK_FACE, "lip": MASK_LIP}

_ID_BAD = re.compile(r"[^A-Za-z0-9._-]+")


# ---------------------------------------------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------------------------------------------

def video_id_for(path: str | os.PathLike, input_root: str | os.PathLike | None = None) -> str:
    """A stable, file-system-safe id for a source video: its path relative to ``input_root`` without the
    extension, with folder separators turned into ``__`` (``M003/video/front/angry/level_1/001.mp4`` ->
    ``M003__video__front__angry__level_1__001``). Two videos in different folders never collide."""
    p = Path(path)
    rel = p.relative_to(input_root) if input_root is not None else Path(p.name)
    parts = list(rel.with_suffix("").parts)
    vid = "__".join(_ID_BAD.sub("_", s) for s in parts).strip("._")
    if not vid:
        raise InputError(f"cannot derive a video id from {path!s}: rename the file to something with letters or digits")
    return vid


def samples_dir(root: str | os.PathLike) -> Path:
    return Path(root) / SAMPLES


def sample_dir(root: str | os.PathLike, video_id: str) -> Path:
    return samples_dir(root) / video_id


def relative_sample_dir(video_id: str) -> str:
    """The folder of a video relative to the dataset root, as stored in meta files (always ``/``)."""
    return f"{SAMPLES}/{video_id}"


def tmp_dir(root: str | os.PathLike, video_id: str) -> Path:
    return samples_dir(root) / f"{TMP_PREFIX}{video_id}"


def missing_files(folder: str | os.PathLike, required: Sequence[str] = REQUIRED_FILES) -> list[str]:
    """The required files absent or empty in ``folder``."""
    folder = Path(folder)
    return [f for f in required if not (folder / f).is_file() or (folder / f).stat().st_size == 0]


def is_complete(root: str | os.PathLike, video_id: str) -> bool:
    """True when ``samples/<video_id>`` exists with every required file (i.e. it was finalised)."""
    d = sample_dir(root, video_id)
    return d.is_dir() and not missing_files(d)


def list_samples(root: str | os.PathLike) -> list[str]:
    """Ids of the finished sample folders under ``root`` (staging folders excluded), sorted."""
    s = samples_dir(root)
    if not s.is_dir():
        return []
    return sorted(p.name for p in s.iterdir() if p.is_dir() and not p.name.startswith("."))


def clean_stale(root: str | os.PathLike) -> list[str]:
    """Remove staging folders left by killed runs (``samples/.tmp-*``, ``samples/.old-*``); returns their names.

    Only call this when no other worker writes to the same root (with sharding each worker only removes the
    staging folder of a video it is about to process; see :func:`staging`)."""
    s = samples_dir(root)
    removed = []
    if s.is_dir():
        for p in s.iterdir():
            if p.is_dir() and (p.name.startswith(TMP_PREFIX) or p.name.startswith(".old-")):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
    return removed


@contextlib.contextmanager
def staging(root: str | os.PathLike, video_id: str, overwrite: bool = False) -> Iterator[Path]:
    """Write a sample folder atomically.

    Yields an empty staging folder ``samples/.tmp-<video_id>``; when the block ends without an exception the
    folder is renamed to ``samples/<video_id>`` (one ``rename``, atomic on one file system). On an exception the
    staging folder is removed and the exception propagates; a killed process leaves only the staging folder,
    which the next run for that video deletes before starting again.
    """
    final = sample_dir(root, video_id)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists")
    tmp = tmp_dir(root, video_id)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finalize(tmp, final)


def finalize(tmp: Path, final: Path) -> None:
    """Rename a finished staging folder into place (replacing an existing folder when overwriting)."""
    _fsync_dir_files(tmp)
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir_files(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file via a temporary sibling and ``os.replace`` (readers never see a partial file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------------
# info.json
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class VideoRecord:
    """The content of ``info.json`` (one per prepared video)."""

    video_id: str
    source: str  # the source video path as given to the preprocessing script
    num_frames: int  # frames in frames.mp4
    num_audio_frames: int  # rows of audio_emb (25 fps) = ceil(len(audio) / 16000 * 25)
    size: int  # frames.mp4 is size x size
    crop_box: list[int]  # [x0, y0, x1, y1] of the square crop in source-frame pixels (may extend past borders)
    fps: int = FPS
    identity: str | None = None  # speaker identity (MEAD: "M003"), used by emotion-aware sampling
    emotion: str | None = None  # one of emocast.labels.emotions.EMOTIONS, or None when unknown
    intensity: int | None = None  # 1 (weak) .. 3 (strong); neutral is 1; None when unknown
    emotion_source: str | None = None  # "dataset" (MEAD names), "manual" (labels CSV), "classifier", "default"
    emotion_confidence: float | None = None  # classifier: mean probability of the label
    prompts: list[str] = field(default_factory=list)  # emotive text descriptions
    sync: dict | None = None  # {"offset": int, "confidence": float, "min_dist": float} (SyncNet) or None
    source_fps: float | None = None
    duration_s: float | None = None  # length of audio.wav in seconds
    has_vocals: bool = False
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop_box"] = [int(v) for v in self.crop_box]
        return d

    @classmethod
    def from_dict(cls, data: dict, where: str = "info.json") -> "VideoRecord":
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise InputError(f"{where}: format_version {version!r} is not supported (expected {FORMAT_VERSION}); "
                             f"re-run scripts/data_preprocess.py with --overwrite on that video")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("video_id", "source", "num_frames", "num_audio_frames", "size", "crop_box")
                   if k not in data]
        if missing:
            raise InputError(f"{where}: missing keys {missing}; re-run scripts/data_preprocess.py with --overwrite")
        return cls(**{k: v for k, v in data.items() if k in known})


def write_info(folder: str | os.PathLike, record: VideoRecord) -> Path:
    path = Path(folder) / INFO
    atomic_write_text(path, json.dumps(record.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return path


def read_info(folder: str | os.PathLike) -> VideoRecord:
    path = Path(folder) / INFO
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} not found: {folder} is not a prepared sample; run scripts/data_preprocess.py") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid JSON ({err}); delete the folder and re-run scripts/data_preprocess.py") from None
    return VideoRecord.from_dict(data, str(path))


def update_info(folder: str | os.PathLike, **changes) -> VideoRecord:
    """Change fields of an existing ``info.json`` atomically (e.g. add prompts or sync scores later)."""
    rec = read_info(folder)
    known = {f.name for f in fields(VideoRecord)}
    bad = set(changes) - known
    if bad:
        raise KeyError(f"unknown info.json fields: {sorted(bad)}")
    for k, v in changes.items():
        setattr(rec, k, v)
    write_info(folder, rec)
    return rec


# ---------------------------------------------------------------------------------------------------------------
# artifact writers
# ---------------------------------------------------------------------------------------------------------------

def write_frames(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = FPS, crf: int = 18) -> int:
    """Encode RGB uint8 frames (H, W, 3) to an H.264 mp4 without audio (a keyframe every :data:`GOP` frames, for
    fast random access by :func:`read_frames`); returns the number of frames written."""
    from ..media.video_writer import VideoWriter

    with VideoWriter(path, fps=fps, crf=crf, preset="veryfast", keyframe_interval=GOP) as writer:
        for frame in frames:
            writer.write(frame)
        return writer.frames_written


def write_wav(path: str | os.PathLike, wave: np.ndarray, sr: int = AUDIO_SR) -> None:
    """Write mono float audio in [-1, 1] as PCM16."""
    from ..media.audio import write_wav as write

    write(path, wave, sr, subtype="PCM_16")


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(str(path))


def write_face_emb(path: str | os.PathLike, emb: np.ndarray) -> None:
    emb = np.asarray(emb, dtype=np.float32).reshape(-1)
    if emb.shape != (512,):
        raise ValueError(f"face embedding must have 512 values, got {emb.shape}")
    with open(path, "wb") as fh:
        np.save(fh, emb)


def write_audio_emb(path: str | os.PathLike, features) -> None:
    """Store wav2vec2 features ``(N, 12, 768)`` as float16 under the key ``features``."""
    import torch
    from safetensors.torch import save_file

    t = torch.as_tensor(features).detach().to("cpu", torch.float16).contiguous()
    if t.ndim != 3:
        raise ValueError(f"audio features must be (N, layers, dim), got {tuple(t.shape)}")
    save_file({"features": t}, str(path), metadata={"format_version": str(FORMAT_VERSION), "fps": str(FPS)})


# ---------------------------------------------------------------------------------------------------------------
# artifact readers
# ---------------------------------------------------------------------------------------------------------------

def _damaged(path: Path, problem: str) -> InputError:
    return InputError(f"{path} cannot be read ({problem}). Fix: re-run scripts/data_preprocess.py --overwrite for that "
                      "video")


def _need(path: Path) -> Path:
    if not path.is_file():
        raise InputError(f"{path} is missing: the sample folder is incomplete; re-run scripts/data_preprocess.py "
                         f"--overwrite for that video")
    return path


def count_frames(folder: str | os.PathLike) -> int:
    """Frames in ``frames.mp4`` (the container's frame count; decoded and counted when the header lacks it)."""
    from ..media.video import count_frames as count

    path = _need(Path(folder) / FRAMES)
    try:
        return count(path)
    except UnreadableMedia as err:
        raise _damaged(path, err.problem) from None


def read_frames(folder: str | os.PathLike, indices: Sequence[int] | None = None) -> np.ndarray:
    """RGB uint8 frames ``(K, size, size, 3)`` of ``frames.mp4``: all of them, or those at ``indices``
    (in the order given; repeats allowed).

    With indices, the decoder seeks to the keyframe before each requested frame (one every :data:`GOP` frames)
    instead of decoding from the start, so a clip deep inside a long video costs at most a second of decoding.
    """
    from ..media.video import read_frames as read

    path = _need(Path(folder) / FRAMES)
    try:
        return read(path, indices, keyframe_interval=GOP)
    except UnreadableMedia as err:
        raise _damaged(path, err.problem) from None


def read_png(path: str | os.PathLike) -> np.ndarray:
    from PIL import Image

    path = _need(Path(path))
    try:
        with Image.open(path) as im:
            return np.array(im.convert("L"))
    except (OSError, ValueError, SyntaxError) as err:  # truncated, not an image (PIL.UnidentifiedImageError)
        raise _damaged(path, f"{type(err).__name__}: {err}") from None


def read_face_region(folder: str | os.PathLike) -> np.ndarray:
    """The hard face-region mask ``(size, size)`` uint8 (0/255)."""
    return read_png(Path(folder) / FACE_REGION)


def read_masks(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The soft masks ``{"full", "face", "lip"} -> (64, 64)`` uint8."""
    return {k: read_png(Path(folder) / f) for k, f in MASK_FILES.items()}


def read_face_emb(folder: str | os.PathLike) -> np.ndarray:
    """The raw insightface identity embedding ``(512,)`` float32."""
    path = _need(Path(folder) / FACE_EMB)
    try:
        return np.load(path, allow_pickle=False).astype(np.float32).reshape(512)
    except (OSError, ValueError, EOFError) as err:  # truncated, not .npy, pickled, wrong size
        raise _damaged(path, f"{type(err).__name__}: {err}") from None


def read_audio_emb(folder: str | os.PathLike, dtype=None):
    """The wav2vec2 features ``(N, 12, 768)`` as a torch tensor (float16 as stored unless ``dtype`` is given)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = _need(Path(folder) / AUDIO_EMB)
    try:
        t = load_file(str(path))["features"]
    except (SafetensorError, OSError, KeyError) as err:  # truncated, not safetensors, no 'features' tensor
        raise _damaged(path, f"{type(err).__name__}: {err}") from None
    return t if dtype is None else t.to(dtype)


def read_audio(folder: str | os.PathLike, vocals: bool = False) -> tuple[np.ndarray, int]:
    """``(wave float32 mono, sample_rate)`` of ``audio.wav`` (or ``vocals.wav``)."""
    from ..media.audio import decode_audio, to_mono

    path = _need(Path(folder) / (VOCALS if vocals else AUDIO))
    try:
        decoded = decode_audio(path)
    except UnreadableMedia as err:
        raise _damaged(path, err.problem) from None
    if decoded is None:
        raise _damaged(path, "no audio stream")
    wave, sr = decoded
    return to_mono(wave), sr


def num_audio_frames(num_samples: int, sr: int = AUDIO_SR, fps: int = FPS) -> int:
    """Video frames covered by ``num_samples`` of audio: ``ceil(num_samples / sr * fps)`` (spec §6 step 5)."""
    return -(-int(num_samples) * fps // sr)


# ---------------------------------------------------------------------------------------------------------------
# meta files
# ---------------------------------------------------------------------------------------------------------------

STAGES = ("stage1", "stage2")


@dataclass
class Meta:
    """A meta file: which prepared videos a training stage uses (paths relative to ``root``)."""

    stage: str
    root: Path  # the dataset root, resolved (see read_meta)
    videos: list[dict]
    format_version: int = FORMAT_VERSION

    def video_dir(self, entry: dict) -> Path:
        """The absolute sample folder of one entry of ``videos``."""
        return self.root / entry["dir"]


def meta_entry(record: VideoRecord) -> dict:
    """The meta-file entry of one prepared video."""
    return {"id": record.video_id, "dir": relative_sample_dir(record.video_id), "identity": record.identity,
            "emotion": record.emotion, "intensity": record.intensity, "prompts": list(record.prompts),
            "num_frames": record.num_frames, "sync": record.sync}


def write_meta(path: str | os.PathLike, stage: str, root: str | os.PathLike, videos: Sequence[dict]) -> Path:
    """Write a meta JSON. ``root`` is stored relative to the meta file's folder when both are on one drive
    (so a dataset moved together with its meta files keeps working), else absolute."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        stored_root = os.path.relpath(Path(root).resolve(), path.parent.resolve())
    except ValueError:  # different drives (Windows)
        stored_root = str(Path(root).resolve())
    data = {"format_version": FORMAT_VERSION, "stage": stage, "root": Path(stored_root).as_posix(),
            "videos": [dict(v) for v in videos]}
    for v in data["videos"]:
        if Path(v["dir"]).is_absolute():
            raise ValueError(f"meta entry dirs must be relative to the dataset root, got {v['dir']}")
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


def read_meta(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Meta:
    """Read a meta JSON. The dataset root is ``root`` when given, else the stored root (relative paths are
    resolved against the meta file's folder)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"meta file {path} not found; create it with scripts/extract_meta_info.py") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"meta file {path} is not valid JSON ({err}); re-create it with scripts/extract_meta_info.py") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION or "videos" not in data:
        raise InputError(f"meta file {path} is not an EmoCAST format-{FORMAT_VERSION} meta file (Hallo's list-style "
                         f"meta files are not supported); re-create it with scripts/extract_meta_info.py")
    if data.get("stage") not in STAGES:
        raise InputError(f"meta file {path}: stage {data.get('stage')!r} is not one of {STAGES}")
    if root is not None:
        base = Path(root)
    else:
        stored = Path(data.get("root", "."))
        base = stored if stored.is_absolute() else (path.parent / stored)
    return Meta(stage=data["stage"], root=base.resolve(), videos=list(data["videos"]),
                format_version=data["format_version"])
