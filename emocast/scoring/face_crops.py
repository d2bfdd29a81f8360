"""Face crops for the metric models.

Two modes (evaluation config keys ``crop.syncnet`` / ``crop.emotion``): ``detect`` (the default) locates the
face per frame with the face detector bundled in mediapipe 0.10.21 (full-range BlazeFace; no download) and crops the
way each metric's reference pipeline does; ``full`` feeds the whole frame, for videos that are already tight face
crops: for SyncNet squeezed to 224x224 (bilinear) as the reference scripts that score face-crop videos directly do
(Wav2Lip's ``SyncNetInstance_calc_scores``: ``cv2.resize(img, (224, 224))``; EAT: ``ffmpeg -vf scale=224:224``), for
Emotion-FAN the centred square. The ``detect`` geometry:

- SyncNet (syncnet_python ``run_pipeline.py``): half box size ``s = max(w, h) / 2`` and the box centre, each
  median-filtered over 13 frames (``scipy.signal.medfilt``), frame padded by ``int(s * (1 + 2 * 0.4))`` pixels of
  value 110, crop rows ``cy - s .. cy + s * 1.8`` and columns ``cx - 1.4 s .. cx + 1.4 s`` (the mouth sits in
  the lower half), resized to 224x224. syncnet_python detects with S3FD; the detector differs, the geometry not.
- Emotion-FAN (EAT's evaluation): dlib's 5-landmark aligned chip ``get_face_chip(size=224, padding=0.25)``. We
  approximate it without landmarks: a square of side ``max(w, h) * (1 + 2 * 0.25)`` around the box centre, resized
  to 224 (no in-plane rotation); parts outside the frame are black, as in dlib's chips.

Frames without a detection take the box of the nearest detected frame (linear interpolation between detections,
as syncnet_python's tracker does); a video without any detection raises :class:`InputError`.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

SYNCNET_CROP_SCALE = 0.4
SYNCNET_PAD_VALUE = 110
SYNCNET_MEDFILT = 13
FAN_PADDING = 0.25


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def center_square(frames: np.ndarray, size: int) -> np.ndarray:
    """``(T, H, W, 3)`` -> ``(T, size, size, 3)``: the centred square of each frame, bilinear resize."""
    _, h, w, _ = frames.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = frames[:, y0:y0 + s, x0:x0 + s]
    if s == size:
        return np.ascontiguousarray(sq)
    return np.stack([_resize(f, size) for f in sq])


def interpolate_boxes(boxes: list) -> np.ndarray:
    """Fill ``None`` entries of a per-frame box list by linear interpolation (edges: nearest detection)."""
    known = [i for i, b in enumerate(boxes) if b is not None]
    if not known:
        raise InputError("no face detected in any frame")
    arr = np.array([boxes[i] for i in known], dtype=np.float64)
    idx = np.arange(len(boxes))
    return np.stack([np.interp(idx, known, arr[:, j]) for j in range(4)], 1)


def syncnet_crops(frames: np.ndarray, boxes: np.ndarray, size: int = 224,
                  crop_scale: float = SYNCNET_CROP_SCALE) -> np.ndarray:
    """syncnet_python's face-track crop for boxes ``(T, 4)`` (x1, y1, x2, y2)."""
    from scipy.signal import medfilt

    boxes = np.asarray(boxes, dtype=np.float64)
    s = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    if len(boxes) >= SYNCNET_MEDFILT:
        s, cy, cx = (medfilt(v, kernel_size=SYNCNET_MEDFILT) for v in (s, cy, cx))
    out = []
    for f, bs, my, mx in zip(frames, s, cy, cx):
        bsi = int(bs * (1 + 2 * crop_scale))
        padded = np.pad(f, ((bsi, bsi), (bsi, bsi), (0, 0)), mode="constant", constant_values=SYNCNET_PAD_VALUE)
        my, mx = my + bsi, mx + bsi
        face = padded[int(my - bs):int(my + bs * (1 + 2 * crop_scale)),
                      int(mx - bs * (1 + crop_scale)):int(mx + bs * (1 + crop_scale))]
        out.append(_resize(face, size))
    return np.stack(out)


def fan_crops(frames: np.ndarray, boxes: np.ndarray, size: int = 224, padding: float = FAN_PADDING) -> np.ndarray:
    """Square crops of side ``max(w, h) * (1 + 2 * padding)`` around each box centre; outside the frame is black
    (dlib's ``extract_image_chip`` sets pixels beyond the image to 0)."""
    out = []
    for f, (x1, y1, x2, y2) in zip(frames, np.asarray(boxes, dtype=np.float64)):
        side = max(x2 - x1, y2 - y1) * (1 + 2 * padding)
        half = max(1, int(round(side / 2)))
        cx, cy = int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2))
        padded = np.pad(f, ((half, half), (half, half), (0, 0)), mode="constant", constant_values=0)
        out.append(_resize(padded[cy:cy + 2 * half, cx:cx + 2 * half], size))
    return np.stack(out)


class FaceDetector:
    """Per-frame face boxes from mediapipe's bundled BlazeFace (full range,
    :class:`emocast.media.mediapipe_faces.FaceDetection`); the largest face of each frame."""

    def __init__(self, min_confidence: float = 0.5):
        from ..media.mediapipe_faces import FaceDetection

        try:
            self._det = FaceDetection(min_confidence)
        except ImportError as err:
            raise InputError("face detection for evaluation crops needs mediapipe 0.10.21 "
                             f"(`bash scripts/install.sh` installs it) ({err}); or use crop mode 'full'") from None

    def box(self, rgb: np.ndarray):
        found = self._det.boxes(rgb)
        return max(found, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if found else None

    def detect(self, frames: np.ndarray) -> list:
        """The largest face box of every frame, None where no face was detected."""
        return [self.box(f) for f in frames]

    def boxes(self, frames: np.ndarray, name: str = "video", detections: list | None = None) -> np.ndarray:
        """One box per frame: the detections (:meth:`detect`, or ``detections`` when given), gaps interpolated."""
        try:
            return interpolate_boxes(self.detect(frames) if detections is None else detections)
        except InputError:
            raise InputError(f"{name}: no face detected in any frame; use crop mode 'full' for face-crop videos") \
                from None

    def close(self):
        self._det.close()


def crops_for(frames: np.ndarray, mode: str, kind: str, detector: FaceDetector | None = None,
              name: str = "video", boxes: np.ndarray | None = None) -> np.ndarray:
    """Face crops for ``kind`` ("syncnet" -> 224 syncnet crop, "fan" -> 224 Emotion-FAN crop) in ``mode``
    ("full" = the whole frame: squeezed to 224x224 for SyncNet as the reference scripts do, the centred square for
    Emotion-FAN; "detect" = detected face box with the metric's crop geometry; ``boxes`` ``(T, 4)`` skips the
    detection when the caller already has them)."""
    if mode == "full":
        if kind == "syncnet":
            return np.stack([_resize(f, 224) for f in frames])
        return center_square(frames, 224)
    if mode != "detect":
        from ..errors import ConfigError

        raise ConfigError(f"crop mode {mode!r} is not 'full' or 'detect'")
    if boxes is None:
        boxes = (detector or FaceDetector()).boxes(frames, name)
    return syncnet_crops(frames, boxes) if kind == "syncnet" else fan_crops(frames, boxes)
