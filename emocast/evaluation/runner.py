"""One evaluation run over a folder of generated videos: per-video Acc_emo / LSE, folder-level FID.

:func:`evaluate_folder` is what ``scripts/evaluate.py`` calls; ``cfg`` is its typed config
(:class:`emocast.evaluation.config.EvalConfig`). A video that cannot be evaluated (no audio track, too short, no face) gets its
error in the per-video CSV and is left out of the averages; the run fails only when no video could be evaluated.

A video must show a detected face in at least ``crop.min_face_share`` of its frames (default 0.9): a detector that
fires on 2 of 60 frames of noise would otherwise spread those boxes over every frame and the noise would be scored.
The per-video CSV says in how many frames a face was found (``face_frames`` for the box crops, ``acc_emo_faces`` for
EAT's chips; EAT's PC-AVS alignment already refuses any frame without one); a video below the share is failed there
and counted in the summary (``num_face_failed``), and left out of Acc_emo and LSE (FID, a distribution over all
generated frames, still includes it).
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
    inception: object = None  # pytorch-fid's (protocol pytorch_fid) or torchvision's ImageNet one (eat)
    detector: object = None  # BlazeFace boxes (syncnet_python / blazeface protocols)
    landmarker: object = None  # 68 landmarks for the PC-AVS crop (LSE, eat)
    chips: object = None  # Emotion-FAN's dlib chips (Acc_emo, eat)
    fid_crops: object = None  # dlib 128x128 crops (FID, eat)
    device: str = "cpu"


def resolve_device(name: str) -> str:
    import torch

    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


def check_face_share(found: int, total: int, share: float, name: str) -> None:
    """:class:`InputError` when a face was found in fewer than ``share`` of a video's ``total`` frames."""
    if total and found < share * total:
        raise InputError(f"{name}: a face was detected in only {found} of {total} frames ({found / total:.0%}, below "
                         f"crop.min_face_share={share:g}), so it is not scored as a talking face; check the video, "
                         "or use crop mode 'full' for videos that are tight face crops")


def protocols(cfg: EvalConfig, metrics) -> dict[str, str]:
    """The protocol of each computed metric (what every report states next to its number)."""
    return {m: getattr(cfg, m).protocol for m in metrics}


#: registry components each (metric, protocol) reads
NEEDS = {("lse", "syncnet_python"): ["syncnet"], ("lse", "eat"): ["syncnet", "face_alignment_fan",
                                                                    "face_alignment_s3fd"],
         ("acc_emo", "blazeface"): ["emotion_fan"], ("acc_emo", "eat"): ["emotion_fan", "dlib_shape_predictor_5"],
         ("fid", "pytorch_fid"): ["inception_fid"], ("fid", "eat"): ["inception_imagenet", "dlib_shape_predictor_68",
                                                                      "eat_face_templates"]}


def load_models(cfg: EvalConfig, metrics, device) -> Models:
    """Load exactly the metric models needed (one missing-model report for everything first)."""
    from .. import registry

    used = protocols(cfg, metrics)
    registry.require([c for m, p in used.items() for c in NEEDS[(m, p)]], cfg.models_root)
    root = cfg.models_root
    m = Models(device=device)
    if "lse" in metrics:
        from ..scoring.syncnet import load_syncnet
        m.syncnet = load_syncnet(root, device)
        if used["lse"] == "eat":
            from ..scoring.landmarks68 import Landmarks68
            m.landmarker = Landmarks68(root, device)
    if "acc_emo" in metrics:
        from ..scoring.emotion_fan import EmotionFAN
        m.emotion = EmotionFAN(root, device)
        if used["acc_emo"] == "eat":
            from ..scoring.dlib_faces import EmotionChips
            m.chips = EmotionChips(root)
    if "fid" in metrics:
        if used["fid"] == "eat":
            from ..scoring.dlib_faces import FidCrops
            from .inception_imagenet import load_imagenet_inception
            m.inception, m.fid_crops = load_imagenet_inception(root, device), FidCrops(root)
        else:
            from .inception import load_inception
            m.inception = load_inception(root, device)
    box_modes = ([cfg.crop.syncnet] if used.get("lse") == "syncnet_python" else []) + \
        ([cfg.crop.emotion] if used.get("acc_emo") == "blazeface" else [])
    if "detect" in box_modes:
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


def evaluate_video(path: Path, models: Models, metrics, cfg: EvalConfig, labels,
                   gt: Path | None = None) -> tuple[dict, np.ndarray | None]:
    """Per-video metrics; also returns the frames sampled for pytorch-fid's FID (or None). ``gt``: the ground
    truth of the same name (EAT's LSE muxes its audio in)."""
    used = protocols(cfg, metrics)
    row = {"video": path.name, "target_emotion": acc.target_label(path, labels)}
    box_metrics = [m for m in metrics if used[m] in ("blazeface", "syncnet_python", "pytorch_fid")]
    clip = read_video(path, with_audio=used.get("lse") == "syncnet_python") if box_metrics else None
    if clip is not None:
        row["num_frames"] = len(clip.frames)
    errors = []
    boxes = None  # detected once per video, shared by both box-crop metrics
    modes = ([cfg.crop.emotion] if used.get("acc_emo") == "blazeface" else []) + \
        ([cfg.crop.syncnet] if used.get("lse") == "syncnet_python" else [])
    face_failed = False  # too few frames with a face: the box-crop metrics are not computed
    if "detect" in modes:
        try:
            found = models.detector.detect(clip.frames)
            row["face_frames"] = sum(b is not None for b in found)
            boxes = models.detector.boxes(clip.frames, path.name, found)  # none at all: "no face detected"
            check_face_share(row["face_frames"], len(clip.frames), cfg.crop.min_face_share, path.name)
        except InputError as err:
            errors.append(f"face detection: {err}")
            row["face_failed"] = face_failed = True
    if "acc_emo" in metrics and (used["acc_emo"] == "eat" or not face_failed):
        try:
            probs = _emotion_probs(path, clip, models, cfg, boxes, row)
            row["predicted_emotion"] = acc.predicted_label(probs, models.emotion.classes)
            row["emotion_confidence"] = float(np.max(probs))
            if row["target_emotion"] is not None:
                row["emotion_correct"] = int(row["predicted_emotion"] == row["target_emotion"])
        except InputError as err:
            errors.append(f"acc_emo: {err}")
    if "lse" in metrics and (used["lse"] == "eat" or not face_failed):
        try:
            res = _sync(path, clip, models, cfg, boxes, gt, row)
            row.update(lse_d=res.min_dist, lse_c=res.confidence, av_offset=res.offset)
        except InputError as err:
            errors.append(f"lse: {err}")
    if errors:
        row["error"] = "; ".join(errors)
    return row, (_fid_frames_for(clip, metrics, cfg) if used.get("fid") == "pytorch_fid" else None)


def _emotion_probs(path: Path, clip, models: Models, cfg: EvalConfig, boxes, row: dict) -> np.ndarray:
    if cfg.acc_emo.protocol == "eat":
        from .eat import emotion_chips

        chips, counts = emotion_chips(path, models.chips)
        row.update(acc_emo_frames=counts["frames"], acc_emo_faces=counts["faces"], acc_emo_dropped=counts["dropped"],
                   acc_emo_detector=" ".join(f"{k}:{v}" for k, v in counts.items()
                                             if k not in ("frames", "faces", "dropped")))
        if not len(chips):
            raise InputError(f"{path.name}: no face in any of its {counts['frames']} frames (dlib cascade"
                             f"{'' if models.chips.has_cnn else ' without the CNN detector'})")
        try:
            check_face_share(counts["faces"], counts["frames"], cfg.crop.min_face_share, path.name)
        except InputError:
            row["face_failed"] = True
            raise
        return models.emotion.predict_video(chips)
    sel = _subsample(len(clip.frames), cfg.acc_emo.max_frames)
    crops = crops_for(clip.frames[sel], cfg.crop.emotion, "fan", models.detector, path.name,
                      None if boxes is None else boxes[sel])
    return models.emotion.predict_video(crops)


def _sync(path: Path, clip, models: Models, cfg: EvalConfig, boxes, gt: Path | None, row: dict):
    from ..scoring.lse import evaluate_sync

    if cfg.lse.protocol == "eat":
        from .eat import lse_inputs

        frames, audio, aligned = lse_inputs(path, models.landmarker, gt)
        row.update(lse_face_frames=aligned, lse_audio="ground truth" if gt is not None else "generated")
        return evaluate_sync(models.syncnet, frames, audio, vshift=cfg.lse.vshift, batch_size=cfg.lse.batch_size,
                             device=models.device, name=path.name)
    if clip.audio is None or len(clip.audio) == 0:
        raise InputError(f"{path.name} has no audio track; LSE needs the driving audio muxed into the video")
    crops = crops_for(clip.frames, cfg.crop.syncnet, "syncnet", models.detector, path.name, boxes)
    row["lse_audio"] = "generated"
    return evaluate_sync(models.syncnet, crops[..., ::-1], clip.audio, vshift=cfg.lse.vshift,
                         batch_size=cfg.lse.batch_size, device=models.device, name=path.name)


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


def ground_truth_index(gt_dir) -> dict[str, Path]:
    """``{stem: path}`` of the ground-truth videos (a generated video is paired with the one of the same stem)."""
    return {p.stem: p for p in list_videos(gt_dir)} if gt_dir else {}


def _eat_fid_features(path: Path, gt: Path | None, models: Models, cfg: EvalConfig, row: dict):
    """EAT's FID features of one generated video and its ground truth (``(gen, ref)``, or ``(None, None)``)."""
    from .eat import fid_crops, paired_samples
    from .inception_imagenet import eat_features

    if gt is None:
        row["error"] = "; ".join(filter(None, [row.get("error"), f"fid: no ground-truth video named {path.stem}.*"]))
        return None, None
    fake, real = fid_crops(path, models.fid_crops), fid_crops(gt, models.fid_crops)
    row["fid_faces"] = len(fake)
    fake, real = paired_samples(fake, real, cfg.fid.frames_per_video)
    row["fid_frames"] = len(fake)
    if not len(fake):
        return None, None
    return (eat_features(models.inception, fake, cfg.fid.batch_size, models.device),
            eat_features(models.inception, real, cfg.fid.batch_size, models.device))


def evaluate_folder(videos_dir, cfg: EvalConfig, gt_dir=None, labels_path=None, models: Models | None = None,
                    progress=None) -> FolderResult:
    from .fid import fid_from_features, inception_features

    if progress is None:
        from tqdm.auto import tqdm as progress
    metrics = parse_metrics(cfg.metrics)
    if "fid" in metrics and not gt_dir:
        raise ConfigError("FID needs the ground-truth videos: pass --gt FOLDER (or drop fid from --metrics)")
    used = protocols(cfg, metrics)
    videos = list_videos(videos_dir)
    gts = ground_truth_index(gt_dir)
    labels = acc.read_labels_csv(labels_path) if labels_path else None
    device = resolve_device(cfg.device)
    if models is None:
        models = load_models(cfg, metrics, device)

    rows, gen_feats, ref_feats = [], [], []
    for p in progress(videos, desc="evaluating videos"):
        gt = gts.get(p.stem)
        try:
            row, fid_frames = evaluate_video(p, models, metrics, cfg, labels, gt)
            if used.get("fid") == "eat":
                gen, ref = _eat_fid_features(p, gt, models, cfg, row)
                if gen is not None:
                    gen_feats.append(gen)
                    ref_feats.append(ref)
        except EmoCASTError as err:
            row, fid_frames = {"video": p.name, "error": str(err)}, None
        if row.get("error"):
            log.warning("%s", row["error"])
        rows.append(row)
        if fid_frames is not None and len(fid_frames):
            gen_feats.append(inception_features(models.inception, fid_frames, cfg.fid.batch_size, device))

    summary = {"method": cfg.method, "videos": str(videos_dir), "num_videos": len(videos),
               "metrics": metrics, "protocols": used, "acc_emo": None, "lse_d": None, "lse_c": None, "fid": None}
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
            raise InputError(f"FID: no frames could be used from {videos_dir}")
        gen = np.concatenate(gen_feats, 0)
        ref = np.concatenate(ref_feats, 0) if used["fid"] == "eat" else \
            _folder_fid_features(gt_dir, models, cfg, progress)
        summary.update(fid=fid_from_features(gen, ref, cfg.fid.method), fid_frames_generated=len(gen),
                       fid_frames_reference=len(ref),
                       fid_sampling={"sampling": "eat_pairs" if used["fid"] == "eat" else cfg.fid.sampling,
                                     "frames_per_video": cfg.fid.frames_per_video, "every_k": cfg.fid.every_k,
                                     "method": cfg.fid.method}, gt=str(gt_dir))
    evaluated = [r for r in rows if not r.get("error") or any(r.get(k) is not None for k in
                                                               ("lse_d", "predicted_emotion"))]
    if not evaluated and "fid" not in metrics:
        raise InputError(f"no video in {videos_dir} could be evaluated; first error: {rows[0].get('error')}")
    summary["num_errors"] = sum(bool(r.get("error")) for r in rows)
    summary.update(min_face_share=cfg.crop.min_face_share, num_face_failed=sum(bool(r.get("face_failed")) for r in rows),
                   face_failed=[r["video"] for r in rows if r.get("face_failed")])
    return FolderResult(rows=rows, summary=summary)
