"""One evaluation run over a folder of generated videos: per-video Acc_emo / LSE, folder-level FID.

:func:`evaluate_folder` is what ``scripts/evaluate.py`` calls; ``cfg`` is its typed config
(:class:`emocast.evaluation.config.EvalConfig`). A video that cannot be evaluated (no audio track, too short, no face) gets its
error in the per-video CSV and is left out of the averages; the run fails only when no video could be evaluated.
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
from .config import EvalConfig, parse_metrics

log = logging.getLogger(__name__)


@dataclass
class Models:
    syncnet: object = None
    emotion: object = None
    inception: object = None
    detector: object = None
    device: str = "cpu"


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
    if "detect" in (crop_cfg.syncnet, crop_cfg.emotion):
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


def evaluate_video(path: Path, models: Models, metrics, cfg: EvalConfig, labels) -> tuple[dict, np.ndarray | None]:
    """Per-video metrics; also returns the frames sampled for FID (or None)."""
    from ..scoring.lse import evaluate_sync

    row = {"video": path.name, "target_emotion": acc.target_label(path, labels)}
    clip = read_video(path, with_audio="lse" in metrics)
    row["num_frames"] = len(clip.frames)
    errors = []
    boxes = None  # detected once per video, shared by both metrics
    modes = ([cfg.crop.emotion] if "acc_emo" in metrics else []) + ([cfg.crop.syncnet] if "lse" in metrics else [])
    if "detect" in modes:
        try:
            boxes = models.detector.boxes(clip.frames, path.name)
        except InputError as err:
            row["error"] = f"face detection: {err}"
            return row, _fid_frames_for(clip, metrics, cfg)
    if "acc_emo" in metrics:
        try:
            sel = _subsample(len(clip.frames), cfg.acc_emo.max_frames)
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
            res = evaluate_sync(models.syncnet, crops[..., ::-1], clip.audio, vshift=cfg.lse.vshift,
                                batch_size=cfg.lse.batch_size, device=models.device, name=path.name)
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
    idx = sample_indices(len(clip.frames), cfg.fid.sampling, cfg.fid.frames_per_video, cfg.fid.every_k)
    return _fid_frames(clip.frames[idx], cfg)


def _fid_frames(frames: np.ndarray, cfg) -> np.ndarray:
    size = cfg.fid.resize
    return center_square(frames, size) if size else frames


def _mean(values):
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _folder_fid_features(folder, models: Models, cfg, progress) -> np.ndarray:
    from .fid import inception_features, sample_indices

    feats = []
    for p in progress(list_videos(folder), desc=f"FID features ({Path(folder).name})"):
        clip = read_video(p, with_audio=False)
        idx = sample_indices(len(clip.frames), cfg.fid.sampling, cfg.fid.frames_per_video, cfg.fid.every_k)
        feats.append(inception_features(models.inception, _fid_frames(clip.frames[idx], cfg),
                                        cfg.fid.batch_size, models.device))
    return np.concatenate(feats, 0)


def evaluate_folder(videos_dir, cfg: EvalConfig, gt_dir=None, labels_path=None, models: Models | None = None,
                    progress=None) -> FolderResult:
    from .fid import fid_from_features, inception_features

    if progress is None:
        from tqdm.auto import tqdm as progress
    metrics = parse_metrics(cfg.metrics)
    if "fid" in metrics and not gt_dir:
        raise ConfigError("FID needs the ground-truth videos: pass --gt FOLDER (or drop fid from --metrics)")
    videos = list_videos(videos_dir)
    labels = acc.read_labels_csv(labels_path) if labels_path else None
    device = resolve_device(cfg.device)
    if models is None:
        models = load_models(metrics, cfg.models_root, device, cfg.crop)

    rows, gen_feats = [], []
    for p in progress(videos, desc="evaluating videos"):
        try:
            row, fid_frames = evaluate_video(p, models, metrics, cfg, labels)
        except EmoCASTError as err:
            row, fid_frames = {"video": p.name, "error": str(err)}, None
        if row.get("error"):
            log.warning("%s", row["error"])
        rows.append(row)
        if fid_frames is not None and len(fid_frames):
            gen_feats.append(inception_features(models.inception, fid_frames, cfg.fid.batch_size, device))

    summary = {"method": cfg.method, "videos": str(videos_dir), "num_videos": len(videos),
               "metrics": metrics, "acc_emo": None, "lse_d": None, "lse_c": None, "fid": None}
    if "acc_emo" in metrics:
        a = acc.accuracy([r.get("predicted_emotion") for r in rows], [r.get("target_emotion") for r in rows])
        summary.update(acc_emo=a["acc_emo"], acc_emo_labelled=a["num_labelled"], acc_emo_per_class=a["per_class"])
        if a["num_labelled"] == 0:
            log.warning("Acc_emo: no video has a target emotion (name it like MEAD or pass --labels CSV)")
    if "lse" in metrics:
        summary.update(lse_d=_mean([r.get("lse_d") for r in rows]), lse_c=_mean([r.get("lse_c") for r in rows]),
                       lse_videos=sum(r.get("lse_d") is not None for r in rows), lse_vshift=cfg.lse.vshift)
    if "fid" in metrics:
        if not gen_feats:
            raise InputError(f"FID: no frames could be read from {videos_dir}")
        gen = np.concatenate(gen_feats, 0)
        ref = _folder_fid_features(gt_dir, models, cfg, progress)
        fid_method = cfg.fid.method
        summary.update(fid=fid_from_features(gen, ref, fid_method), fid_frames_generated=len(gen),
                       fid_frames_reference=len(ref),
                       fid_sampling={"sampling": cfg.fid.sampling, "frames_per_video": cfg.fid.frames_per_video,
                                     "every_k": cfg.fid.every_k,
                                     "method": fid_method}, gt=str(gt_dir))
    evaluated = [r for r in rows if not r.get("error") or any(r.get(k) is not None for k in
                                                               ("lse_d", "predicted_emotion"))]
    if not evaluated and "fid" not in metrics:
        raise InputError(f"no video in {videos_dir} could be evaluated; first error: {rows[0].get('error')}")
    summary["num_errors"] = sum(bool(r.get("error")) for r in rows)
    return FolderResult(rows=rows, summary=summary)
