"""Per-video data preparation: one source video -> one finished sample folder of :mod:`emocast.data.layout`.

Two streaming passes over the video resampled to 25 fps (never the whole video in memory):

1. landmarks on every frame (:class:`~emocast.data.face_track.FaceTracker`): the clip is rejected when too many
   frames show no face or several faces; the union of the per-frame face boxes, expanded by ``crop_scale``,
   gives ONE square crop box for the whole clip (stable framing, no jitter);
2. every frame is cropped with that box, resized to ``size`` and encoded to ``frames.mp4``; on the way the identity
   embedding is taken from the first frame where insightface finds a face, and the SyncNet / emotion crops are
   collected.

Then the union face-region mask and the soft full/face/lip masks (spec §9.3: union over frames, expand 1.0), the
16 kHz audio (trimmed/padded so that ``num_audio_frames == num_frames``), optional separated vocals, the wav2vec2
features of all layers, SyncNet scores, the emotion label and the emotive prompts. Everything is written into a
staging folder that is renamed into place only when complete (:func:`emocast.data.layout.staging`).

A clip that cannot be used raises :class:`PrepFailure` with one of :data:`REASONS`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import registry
from ..errors import ConfigError, EmoCASTError, InputError, UnreadableMedia
from ..labels.emotions import normalize_emotion, normalize_intensity
from ..labels.mead import mead_audio_for, parse_mead
from ..labels.prompts import LLMPrompter, make_prompts
from ..media.audio import decode_audio
from ..media.video import probe
from ..preprocess.audio import SILENCE_PEAK
from . import layout
from .config import DataPrepConfig, PromptsSection
from .emotion import EmotionLabel
from .face_track import FaceTracker, FrameFaces
from .video_io import frames_25fps

#: failure reasons written to the failure report
REASONS = {
    "unreadable": "the file cannot be opened or decoded",
    "no_audio": "no audio track (and no separate MEAD audio file), or silent audio",
    "too_short": "fewer frames than min_frames",
    "no_face": "no face in too many frames (or insightface found no face for the identity embedding)",
    "several_faces": "several faces in too many frames",
    "av_mismatch": "audio and video lengths differ by more than max_av_mismatch frames",
    "error": "an unexpected error (a bug or a broken model file); see the message",
}


class PrepFailure(EmoCASTError):
    """A video that cannot become a training sample; ``reason`` is a key of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Labels:
    """Known labels of one video (from MEAD names or a labels CSV); None = unknown."""

    identity: str | None = None
    emotion: str | None = None
    intensity: int | None = None
    prompts: list[str] = field(default_factory=list)
    source: str | None = None


def llm_prompter(cfg: PromptsSection) -> LLMPrompter | None:
    """The LLM prompt writer the ``prompts`` section configures, or None (template bank only)."""
    if not (cfg.llm_command or cfg.llm_endpoint):
        return None
    return LLMPrompter(command=cfg.llm_command, endpoint=cfg.llm_endpoint, model=cfg.llm_model,
                       api_key_env=cfg.llm_api_key_env)


class PrepModels:
    """The models of data preparation, loaded once (each through the registry) and shared by all videos."""

    def __init__(self, cfg: DataPrepConfig, models_root=None):
        from ..runtime import select_device

        self.cfg = cfg
        self.models_root = models_root
        self.device = select_device(None if cfg.prep.device == "auto" else cfg.prep.device)
        needed = ["face_analysis", "wav2vec"] + (["audio_separator"] if cfg.prep.vocals else []) + \
            (["syncnet"] if cfg.sync.enabled else [])
        registry.require(needed, models_root)  # one report for everything missing, before any video
        from ..preprocess.audio import Wav2VecFeatures
        from ..preprocess.face import FaceAnalyzer

        self.faces = FaceAnalyzer(models_root, device=str(self.device))
        self.wav2vec = Wav2VecFeatures(models_root, device=self.device,
                                       chunk_frames=cfg.prep.wav2vec_chunk_frames)
        self.separator = None
        if cfg.prep.vocals:
            try:
                from ..preprocess.separator import VocalSeparator
            except ImportError as err:
                raise ConfigError(f"prep.vocals needs emocast.preprocess.separator.VocalSeparator ({err})") from None
            self.separator = VocalSeparator(models_root, device=str(self.device))
        self.syncnet = None
        if cfg.sync.enabled:
            from ..scoring.syncnet import load_syncnet

            self.syncnet = load_syncnet(models_root, device=self.device)
        self.classifier = None
        if cfg.emotion.classifier:
            from .emotion import load_classifier

            self.classifier = load_classifier(cfg.emotion.classifier, models_root, str(self.device))
        self.llm = llm_prompter(cfg.prompts)


# ---------------------------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------------------------

def union_box(boxes: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    b = np.asarray(boxes, dtype=np.float64)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def clip_crop_box(face_union, image_hw, scale: float) -> tuple[int, int, int, int]:
    """One square crop ``(x0, y0, x1, y1)`` (integer source pixels, exclusive ends) for a whole clip.

    Side = ``scale`` x the longer side of the union face box, centred on it, shrunk towards the image's shorter
    side when larger (never below the face box) and shifted to stay inside the image along each axis where it
    fits. Parts outside the image (only when the face is too large or too close to a border) are edge-padded.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    x0, y0, x1, y1 = face_union
    face_side = max(x1 - x0, y1 - y0)
    side = face_side * scale
    side = max(min(side, min(h, w)), face_side)
    side = max(2, int(math.ceil(side)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2

    def place(c: float, length: int) -> int:
        start = int(round(c - side / 2))
        if side <= length:
            return min(max(start, 0), length - side)
        return start

    sx, sy = place(cx, w), place(cy, h)
    return sx, sy, sx + side, sy + side


def crop_frame(frame: np.ndarray, box: Sequence[int], size: int) -> np.ndarray:
    """Cut ``box`` out of ``frame`` (edge-replicating outside the image) and resize to ``size`` x ``size``."""
    import cv2

    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    pl, pt, pr, pb = max(0, -x0), max(0, -y0), max(0, x1 - w), max(0, y1 - h)
    src = frame
    if pl or pt or pr or pb:
        src = cv2.copyMakeBorder(frame, pt, pb, pl, pr, cv2.BORDER_REPLICATE)
    crop = src[y0 + pt:y1 + pt, x0 + pl:x1 + pl]
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp))


def to_crop_coords(points: np.ndarray, box: Sequence[int], size: int) -> np.ndarray:
    """Source-pixel points (or boxes as ``(x0, y0, x1, y1)`` rows reshaped to points) -> output-frame pixels."""
    scale = size / float(box[2] - box[0])
    return (np.asarray(points, np.float64) - np.array([box[0], box[1]], np.float64)) * scale


# ---------------------------------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------------------------------

def dataset_labels(src: Path, input_root: Path, video_id: str, cfg: DataPrepConfig,
                   table: Mapping[str, Labels] | None = None) -> Labels:
    """Labels from a labels table (relative path -> :class:`Labels`), else from MEAD naming, else identity only."""
    rel = src.relative_to(input_root).as_posix() if input_root in src.parents else src.name
    if table and rel in table:
        lab = table[rel]
        if lab.identity is None:
            lab.identity = _identity_default(src, input_root, video_id, cfg)
        return lab
    mead = parse_mead(rel)
    if mead is not None:
        return Labels(identity=mead.identity, emotion=mead.emotion, intensity=mead.intensity, source="dataset")
    return Labels(identity=_identity_default(src, input_root, video_id, cfg))


def _identity_default(src: Path, input_root: Path, video_id: str, cfg: DataPrepConfig) -> str:
    if cfg.prep.identity_from in ("auto", "parent") and src.parent != input_root and input_root in src.parents:
        return src.parent.relative_to(input_root).as_posix().replace("/", "__")
    return video_id


def read_labels_csv(path: str | os.PathLike) -> dict[str, Labels]:
    """A labels CSV: column ``video`` (path relative to the input folder) and any of ``identity``, ``emotion``,
    ``intensity`` (1-3), ``prompts`` (several separated by ``|``)."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file {path} not found; pass an existing CSV to --labels")
    out: dict[str, Labels] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "video" not in reader.fieldnames:
            raise InputError(f"labels file {path} needs a header with a 'video' column (and identity, emotion, "
                             f"intensity, prompts as available)")
        for i, row in enumerate(reader, start=2):
            try:
                emo = normalize_emotion(row.get("emotion") or None)
                lab = Labels(identity=(row.get("identity") or None), emotion=emo,
                             intensity=normalize_intensity(row.get("intensity") or None, emo),
                             prompts=[p.strip() for p in (row.get("prompts") or "").split("|") if p.strip()],
                             source="manual" if emo else None)
            except InputError as err:
                raise InputError(f"labels file {path}, line {i}: {err}") from None
            out[Path(row["video"]).as_posix()] = lab
    return out


# ---------------------------------------------------------------------------------------------------------------
# the two passes
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Track:
    num_frames: int
    faces: list[FrameFaces]
    image_hw: tuple[int, int]


def track_faces(src: Path, cfg: DataPrepConfig, models_root=None, expected_frames: int | None = None) -> Track:
    """Pass 1: landmarks on every 25 fps frame; :class:`PrepFailure` for no/several faces."""
    faces: list[FrameFaces] = []
    none = multi = 0
    budget = None if not expected_frames else cfg.prep.max_no_face_ratio * expected_frames
    hw = None
    with FaceTracker(models_root, second_face_ratio=cfg.prep.second_face_ratio) as tracker:
        for frame in frames_25fps(src):
            hw = frame.shape[:2]
            f = tracker(frame)
            faces.append(f)
            none += f.count == 0
            multi += f.count > 1
            if budget is not None and none > budget + 1 and none > 0.5 * len(faces):
                break  # clearly a clip without a face: stop decoding
    n = len(faces)
    if n == 0:
        raise PrepFailure("unreadable", f"{src}: no frames decoded")
    if none > cfg.prep.max_no_face_ratio * n:
        raise PrepFailure("no_face", f"{src}: no face found in {none} of {n} frames "
                                     f"(max_no_face_ratio {cfg.prep.max_no_face_ratio})")
    if multi > cfg.prep.max_multi_face_ratio * n:
        raise PrepFailure("several_faces", f"{src}: several faces in {multi} of {n} frames "
                                           f"(max_multi_face_ratio {cfg.prep.max_multi_face_ratio})")
    return Track(n, faces, tuple(hw))


def load_audio_track(src: Path) -> np.ndarray:
    """16 kHz mono speech of ``src`` (or of its separate MEAD audio file); :class:`PrepFailure` if none/silent."""
    decoded, origin = decode_audio(src, rate=layout.AUDIO_SR, layout="mono"), src
    if decoded is None:
        alt = mead_audio_for(src)
        if alt is not None:
            decoded, origin = decode_audio(alt, rate=layout.AUDIO_SR, layout="mono"), alt
    if decoded is None:
        raise PrepFailure("no_audio", f"{src} has no audio track (and no separate MEAD audio file was found)")
    wave = decoded[0][0]
    if len(wave) == 0 or float(np.abs(wave).max()) < SILENCE_PEAK:
        raise PrepFailure("no_audio", f"{origin}: the audio track is empty or silent")
    return wave


def prepare_video(src: str | os.PathLike, input_root: str | os.PathLike, out_root: str | os.PathLike,
                  cfg: DataPrepConfig, models: PrepModels, labels: Labels | None = None,
                  video_id: str | None = None, overwrite: bool = False) -> layout.VideoRecord:
    """Prepare one video into ``<out_root>/samples/<video_id>`` (atomically); returns its record."""
    try:
        return _prepare(Path(src), Path(input_root), out_root, cfg, models, labels, video_id, overwrite)
    except UnreadableMedia as err:  # a decoding error at any point (truncated file, corrupt stream)
        raise PrepFailure("unreadable", str(err)) from None


def _prepare(src: Path, input_root: Path, out_root, cfg: DataPrepConfig, models: PrepModels,
             labels: Labels | None, video_id: str | None, overwrite: bool) -> layout.VideoRecord:
    vid = video_id or layout.video_id_for(src, input_root)
    info = probe(src)
    expected = int(round(info.duration * layout.FPS)) if info.duration else None
    if expected is not None and expected < cfg.prep.min_frames:
        raise PrepFailure("too_short", f"{src}: {info.duration:.2f} s = about {expected} frames at 25 fps, "
                                       f"fewer than min_frames {cfg.prep.min_frames}")
    wave = load_audio_track(src)
    track = track_faces(src, cfg, models.models_root, expected)
    n_video, n_audio = track.num_frames, layout.num_audio_frames(len(wave))
    if abs(n_video - n_audio) > cfg.prep.max_av_mismatch:
        raise PrepFailure("av_mismatch", f"{src}: {n_video} video frames but {n_audio} frames of audio at 25 fps "
                                         f"(max_av_mismatch {cfg.prep.max_av_mismatch})")
    n = min(n_video, n_audio)
    if n < cfg.prep.min_frames:
        raise PrepFailure("too_short", f"{src}: {n} frames at 25 fps, fewer than min_frames {cfg.prep.min_frames}")
    spf = layout.AUDIO_SR // layout.FPS
    wave = np.pad(wave[:n * spf], (0, max(0, n * spf - len(wave))))

    seen = [i for i in range(n) if track.faces[i].count > 0]
    if not seen:
        raise PrepFailure("no_face", f"{src}: no face found in any of the {n} frames")
    crop = clip_crop_box(union_box([track.faces[i].face_box for i in seen]), track.image_hw, cfg.prep.crop_scale)
    labels = labels or Labels(identity=vid)

    with layout.staging(out_root, vid, overwrite=overwrite) as tmp:
        pass2 = _write_frames(src, tmp, crop, n, cfg, models, track)
        if pass2.embedding is None:
            raise PrepFailure("no_face", f"{src}: insightface found no face in any cropped frame (identity embedding)")
        layout.write_face_emb(tmp / layout.FACE_EMB, pass2.embedding)
        _write_masks(tmp, track, crop, n, cfg.prep.size)
        layout.write_wav(tmp / layout.AUDIO, wave)
        speech = wave
        if models.separator is not None:
            speech = _vocals(models, wave, src)
            layout.write_wav(tmp / layout.VOCALS, speech)
        feats = models.wav2vec.extract(speech).features
        if feats.shape[0] != n:
            raise PrepFailure("error", f"{src}: wav2vec2 gave {feats.shape[0]} frames for {n} video frames")
        layout.write_audio_emb(tmp / layout.AUDIO_EMB, feats)
        sync = _sync(models, pass2, wave, cfg, src) if models.syncnet is not None else None
        emotion, intensity, esrc, conf = labels.emotion, labels.intensity, labels.source, None
        if emotion is None and models.classifier is not None and pass2.emotion_crops:
            from .emotion import classify_video

            lab: EmotionLabel = classify_video(models.classifier, np.stack(pass2.emotion_crops),
                                               tuple(cfg.emotion.thresholds))
            emotion, intensity, esrc, conf = lab.emotion, lab.intensity, "classifier", round(lab.confidence, 4)
        if emotion is None and cfg.emotion.default is not None:
            emotion, intensity, esrc = cfg.emotion.default, cfg.emotion.default_intensity, "default"
        prompts = list(labels.prompts) or make_prompts(emotion, intensity, cfg.prompts.per_video,
                                                       f"{cfg.prompts.seed}:{vid}", models.llm,
                                                       cfg.prompts.llm_fallback)
        record = layout.VideoRecord(
            video_id=vid, source=str(src), num_frames=n, num_audio_frames=n, size=cfg.prep.size,
            crop_box=list(crop),
            identity=labels.identity, emotion=emotion, intensity=intensity, emotion_source=esrc,
            emotion_confidence=conf, prompts=prompts, sync=sync, source_fps=round(info.fps, 3),
            duration_s=round(n / layout.FPS, 3), has_vocals=models.separator is not None)
        layout.write_info(tmp, record)
    return record


@dataclass
class _Pass2:
    written: int = 0
    embedding: np.ndarray | None = None
    sync_frames: list = field(default_factory=list)
    emotion_crops: list = field(default_factory=list)
    boxes: list = field(default_factory=list)  # per output frame: face box in output pixels or None


def _write_frames(src: Path, tmp: Path, crop, n: int, cfg: DataPrepConfig, models: PrepModels,
                  track: Track) -> _Pass2:
    """Pass 2: crop + resize + encode ``n`` frames; identity embedding, SyncNet and emotion crops on the way."""
    from .emotion import sample_frames

    st = _Pass2()
    emo_idx = set(sample_frames(n, cfg.emotion.frames)) if models.classifier is not None else set()
    for i in range(n):
        fb = track.faces[i].face_box
        st.boxes.append(None if fb is None else
                        to_crop_coords(np.reshape(fb, (2, 2)), crop, cfg.prep.size).reshape(4))

    def frames():
        for i, frame in enumerate(frames_25fps(src)):
            if i >= n:
                break
            out = crop_frame(frame, crop, cfg.prep.size)
            if st.embedding is None:
                found = models.faces.faces(out)
                if found:
                    st.embedding = found[0].embedding
            if models.syncnet is not None and i < cfg.sync.max_frames:
                st.sync_frames.append(out)
            if i in emo_idx and st.boxes[i] is not None:
                from ..scoring.face_crops import fan_crops

                st.emotion_crops.append(fan_crops(out[None], st.boxes[i][None])[0])
            yield out

    st.written = layout.write_frames(tmp / layout.FRAMES, frames())
    if st.written != n:
        raise PrepFailure("unreadable", f"{src}: the second decoding pass gave {st.written} frames, expected {n}")
    return st


def _write_masks(tmp: Path, track: Track, crop, n: int, size: int) -> None:
    from ..preprocess.masks import union_masks

    meshes = [to_crop_coords(f.mesh, crop, size) for f in track.faces[:n] if f.mesh is not None]
    um = union_masks(meshes, (size, size), expand_ratio=1.0)
    layout.write_png(tmp / layout.FACE_REGION, um.face_hard)
    layout.write_png(tmp / layout.MASK_FULL, um.soft.full)
    layout.write_png(tmp / layout.MASK_FACE, um.soft.face)
    layout.write_png(tmp / layout.MASK_LIP, um.soft.lip)


def _vocals(models: PrepModels, wave: np.ndarray, src: Path) -> np.ndarray:
    out, _ = models.separator.separate(wave[None], layout.AUDIO_SR, source=str(src), out_rate=layout.AUDIO_SR,
                                       mono=True)
    voc = out[0]
    target = len(wave)
    return np.pad(voc[:target], (0, max(0, target - len(voc)))).astype(np.float32)


def _sync(models: PrepModels, st: _Pass2, wave: np.ndarray, cfg: DataPrepConfig, src: Path) -> dict:
    from ..scoring.face_crops import interpolate_boxes, syncnet_crops
    from ..scoring.lse import evaluate_sync

    k = len(st.sync_frames)
    boxes = interpolate_boxes(st.boxes[:k])
    crops = syncnet_crops(np.stack(st.sync_frames), boxes)[..., ::-1]  # RGB -> BGR like syncnet_python
    audio = np.clip(wave[:k * (layout.AUDIO_SR // layout.FPS)] * 32767, -32768, 32767).astype(np.int16)
    try:
        res = evaluate_sync(models.syncnet, np.ascontiguousarray(crops), audio, batch_size=cfg.sync.batch_size,
                            device=models.device, name=str(src))
    except InputError as err:
        raise PrepFailure("too_short", str(err)) from None
    return {"offset": int(res.offset), "confidence": round(float(res.confidence), 4),
            "min_dist": round(float(res.min_dist), 4), "frames": k}
