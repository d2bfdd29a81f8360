"""One evaluation run over a folder of generated videos: per-video Acc_emo / LSE, folder-level FID.

:func:`evaluate_folder` is what ``scripts/evaluate.py`` calls; ``cfg`` is the OmegaConf config of
``configs/eval/default.yaml``. A video that cannot be evaluated (no audio track, too short, no face) gets its
error in the per-video CSV and is left out of the averages; the run fails only when no video could be evaluated.

With detected face crops, a video must show a face in at least ``crop.min_face_share`` of its frames
(:data:`MIN_FACE_SHARE`): a detector that fires on 2 of 60 frames of noise would otherwise spread those boxes over
every frame and the noise would be scored. The per-video CSV says in how many frames a face was found
(``face_frames``); a video below the share is failed there and counted in the summary (``num_face_failed``), and
left out of Acc_emo and LSE (FID, a distribution over all generated frames, still includes it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EmoCASTError, InputError
from . import acc_emo as acc
from ..scoring.face_crops import FaceDetector, center_square, crops_for
from .clips import list_videos, read_video

log = logging.getLogger(__name__)
METRICS = ("acc_emo", "lse", "fid")
#: the least share of a video's frames with a detected face for it to be scored (crop mode ``detect``)
MIN_FACE_SHARE = 0.9


def min_face_share(cfg) -> float:
    """``crop.min_face_share`` of the config (default :data:`MIN_FACE_SHARE`), checked to lie in [0, 1]."""
    value = cfg.crop.get("min_face_share", MIN_FACE_SHARE)
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"crop.min_face_share must be a number from 0 to 1 (the share of frames that must show a "
                          f"face), got {value!r}")
    return value


def check_face_share(found: int, total: int, share: float, name: str) -> None:
    """:class:`InputError` when a face was found in fewer than ``share`` of a video's ``total`` frames."""
    if total and found < share * total:
        raise InputError(f"{name}: a face was detected in only {found} of {total} frames ({found / total:.0%}, below "
                         f"crop.min_face_share={share:g}), so it is not scored as a talking face; check the video, "
                         "or use crop mode 'full' for videos that are tight face crops")


@dataclass
class Models:
    syncnet: object = None
    emotion: object = None
    inception: object = None
    detector: object = None
    device: str = "cpu"


def parse_metrics(value) -> list[str]:
    items = str(value).split(",") if isinstance(value, str) else list(value)
    items = [str(m).strip().lower().replace("-", "_") for m in items if str(m).strip()]
    items = ["lse" if m in ("lse_d", "lse_c", "sync") else m for m in items]
    bad = [m for m in items if m not in METRICS]
    if bad or not items:
        raise ConfigError(f"unknown metric(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(items))


def resolve_device(name: str) -> str:
    import torch

    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


def load_models(metrics, models_root, device, crop_cfg) -> Models:
    """Load exactly the metric models needed (each loader calls the registry first)."""
    from .. import registry

    needed = {"lse": "syncnet", "acc_emo": "emotion_fan", "fid": "inception_fid"}
    registry.require([needed[m] for m in metrics], models_root)  # one report for everything missing
    m = Models(device=device)
    if "lse" in metrics:
        from ..scoring.syncnet import load_syncnet
        m.syncnet = load_syncnet(models_root, device)
    if "acc_emo" in metrics:
        from ..scoring.emotion_fan import EmotionFAN
        m.emotion = EmotionFAN(models_root, device)
    if "fid" in metrics:
        from .inception import load_inception
        m.inception = load_inception(models_root, device)
    if "detect" in (crop_cfg.get("syncnet"), crop_cfg.get("emotion")):
        m.detector = FaceDetector()
    return m


@dataclass
class FolderResult:
    rows: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _subsample(n: int, max_frames: int) -> list[int]:
    if not max_frames or max_frames >= n:
        return list(range(n))
    return np.linspace(0, n, max_frames, endpoint=False).astype(np.int64).tolist()


def evaluate_video(path: Path, models: Models, metrics, cfg, labels,
                   face_share: float = MIN_FACE_SHARE) -> tuple[dict, np.ndarray | None]:
    """Per-video metrics; also returns the frames sampled for FID (or None). ``face_share``: the least share of
    frames with a detected face (detect crop mode), below which the video fails (row ``face_failed``)."""
    from ..scoring.lse import evaluate_sync

    row = {"video": path.name, "target_emotion": acc.target_label(path, labels)}
    clip = read_video(path, with_audio="lse" in metrics)
    row["num_frames"] = len(clip.frames)
    errors = []
    boxes = None  # detected once per video, shared by both metrics
    modes = ([cfg.crop.emotion] if "acc_emo" in metrics else []) + ([cfg.crop.syncnet] if "lse" in metrics else [])
    if "detect" in modes:
        try:
            found = models.detector.detect(clip.frames)
            row["face_frames"] = sum(b is not None for b in found)
            boxes = models.detector.boxes(clip.frames, path.name, found)  # none at all: "no face detected"
            check_face_share(row["face_frames"], len(clip.frames), face_share, path.name)
        except InputError as err:
            row["error"], row["face_failed"] = f"face detection: {err}", True
            return row, _fid_frames_for(clip, metrics, cfg)
    if "acc_emo" in metrics:
        try:
            sel = _subsample(len(clip.frames), int(cfg.acc_emo.max_frames))
            crops = crops_for(clip.frames[sel], cfg.crop.emotion, "fan", models.detector, path.name,
                              None if boxes is None else boxes[sel])
            probs = models.emotion.predict_video(crops)
            row["predicted_emotion"] = acc.predicted_label(probs, models.emotion.classes)
            row["emotion_confidence"] = float(np.max(probs))
            if row["target_emotion"] is not None:
                row["emotion_correct"] = int(row["predicted_emotion"] == row["target_emotion"])
        except InputError as err:
            errors.append(f"acc_emo: {err}")
    if "lse" in metrics:
        try:
            if clip.audio is None or len(clip.audio) == 0:
                raise InputError(f"{path.name} has no audio track; LSE needs the driving audio muxed into the video")
            crops = crops_for(clip.frames, cfg.crop.syncnet, "syncnet", models.detector, path.name, boxes)
            res = evaluate_sync(models.syncnet, crops[..., ::-1], clip.audio, vshift=int(cfg.lse.vshift),
                                batch_size=int(cfg.lse.batch_size), device=models.device, name=path.name)
            row.update(lse_d=res.min_dist, lse_c=res.confidence, av_offset=res.offset)
        except InputError as err:
            errors.append(f"lse: {err}")
    if errors:
        row["error"] = "; ".join(errors)
    return row, _fid_frames_for(clip, metrics, cfg)


def _fid_frames_for(clip, metrics, cfg) -> np.ndarray | None:
    from .fid import sample_indices

    if "fid" not in metrics:
        return None
    idx = sample_indices(len(clip.frames), cfg.fid.sampling, int(cfg.fid.frames_per_video), int(cfg.fid.every_k))
    return _fid_frames(clip.frames[idx], cfg)


def _fid_frames(frames: np.ndarray, cfg) -> np.ndarray:
    size = int(cfg.fid.get("resize", 0) or 0)
    return center_square(frames, size) if size else frames


def _mean(values):
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _folder_fid_features(folder, models: Models, cfg, progress) -> np.ndarray:
    from .fid import inception_features, sample_indices

    feats = []
    for p in progress(list_videos(folder), desc=f"FID features ({Path(folder).name})"):
        clip = read_video(p, with_audio=False)
        idx = sample_indices(len(clip.frames), cfg.fid.sampling, int(cfg.fid.frames_per_video), int(cfg.fid.every_k))
        feats.append(inception_features(models.inception, _fid_frames(clip.frames[idx], cfg),
                                        int(cfg.fid.batch_size), models.device))
    return np.concatenate(feats, 0)


def evaluate_folder(videos_dir, cfg, gt_dir=None, labels_path=None, models: Models | None = None,
                    progress=None) -> FolderResult:
    from .fid import fid_from_features, inception_features

    if progress is None:
        from tqdm.auto import tqdm as progress
    metrics = parse_metrics(cfg.metrics)
    if "fid" in metrics and not gt_dir:
        raise ConfigError("FID needs the ground-truth videos: pass --gt FOLDER (or drop fid from --metrics)")
    videos = list_videos(videos_dir)
    labels = acc.read_labels_csv(labels_path) if labels_path else None
    device = resolve_device(cfg.get("device", "auto"))
    if models is None:
        models = load_models(metrics, cfg.get("models_root"), device, cfg.crop)

    face_share = min_face_share(cfg)
    rows, gen_feats = [], []
    for p in progress(videos, desc="evaluating videos"):
        try:
            row, fid_frames = evaluate_video(p, models, metrics, cfg, labels, face_share)
        except EmoCASTError as err:
            row, fid_frames = {"video": p.name, "error": str(err)}, None
        if row.get("error"):
            log.warning("%s", row["error"])
        rows.append(row)
        if fid_frames is not None and len(fid_frames):
            gen_feats.append(inception_features(models.inception, fid_frames, int(cfg.fid.batch_size), device))

    summary = {"method": cfg.get("method", "EmoCAST"), "videos": str(videos_dir), "num_videos": len(videos),
               "metrics": metrics, "acc_emo": None, "lse_d": None, "lse_c": None, "fid": None}
    if "acc_emo" in metrics:
        a = acc.accuracy([r.get("predicted_emotion") for r in rows], [r.get("target_emotion") for r in rows])
        summary.update(acc_emo=a["acc_emo"], acc_emo_labelled=a["num_labelled"], acc_emo_per_class=a["per_class"])
        if a["num_labelled"] == 0:
            log.warning("Acc_emo: no video has a target emotion (name it like MEAD or pass --labels CSV)")
    if "lse" in metrics:
        summary.update(lse_d=_mean([r.get("lse_d") for r in rows]), lse_c=_mean([r.get("lse_c") for r in rows]),
                       lse_videos=sum(r.get("lse_d") is not None for r in rows), lse_vshift=int(cfg.lse.vshift))
    if "fid" in metrics:
        if not gen_feats:
            raise InputError(f"FID: no frames could be read from {videos_dir}")
        gen = np.concatenate(gen_feats, 0)
        ref = _folder_fid_features(gt_dir, models, cfg, progress)
        fid_method = str(cfg.fid.get("method", "auto"))
        summary.update(fid=fid_from_features(gen, ref, fid_method), fid_frames_generated=len(gen),
                       fid_frames_reference=len(ref),
                       fid_sampling={"sampling": cfg.fid.sampling, "frames_per_video": int(cfg.fid.frames_per_video),
                                     "every_k": int(cfg.fid.every_k),
                                     "method": fid_method}, gt=str(gt_dir))
    evaluated = [r for r in rows if not r.get("error") or any(r.get(k) is not None for k in
                                                               ("lse_d", "predicted_emotion"))]
    if not evaluated and "fid" not in metrics:
        raise InputError(f"no video in {videos_dir} could be evaluated; first error: {rows[0].get('error')}")
    summary["num_errors"] = sum(bool(r.get("error")) for r in rows)
    if "detect" in (cfg.crop.syncnet, cfg.crop.emotion):
        summary.update(min_face_share=face_share, num_face_failed=sum(bool(r.get("face_failed")) for r in rows),
                       face_failed=[r["video"] for r in rows if r.get("face_failed")])
    return FolderResult(rows=rows, summary=summary)
