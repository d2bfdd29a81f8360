"""Face/lip boxes and the masks of spec §7.4-7.7 (and the per-video union variant of §9.3), all in memory.

Boxes are ``(x0, y0, x1, y1)`` integer pixels with exclusive ends: the hard mask is ``mask[y0:y1, x0:x1] = 255``.

- :func:`expand_box` (the release's ``expand_region``): min/max of the landmark subset; centre = floor of the
  average; side = extent x ratio (per axis); the box is shifted back inside the image if it crosses a border;
  coordinates are then rounded (Python/NumPy round-half-to-even) and clipped to the image.
- :func:`soft_masks`: hard masks -> 64x64 (``cv2.resize`` bilinear) -> Gaussian blur (face 51x51, lip 31x31,
  OpenCV's automatic sigma) -> min-max normalised to 0..255 uint8. ``full`` (background/pose) =
  ``uint8((1 - face/255) * 255)`` (float64, truncated, as the release computes it); ``face`` = blurred face -
  blurred lip (saturating at 0); ``lip`` = blurred lip.
- :func:`level_masks`: a 64x64 mask -> per UNet level Pillow bilinear resize to ``s x s`` (64, 32, 16, 8 for a
  512 image; generally ``size/8 / 2**i``), flattened row-major, float32 in [0, 1].
- :func:`face_region`: the FaceLocator input, the hard face mask as a 3-channel image resized to the model
  size with Pillow bilinear, float32 ``(3, size, size)`` in [0, 1].
- :func:`union_masks`: the training-data variant (expand 1.0, union over frames).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .landmarks import FACE_OVAL_IDS, LIP_IDS

FACE_EXPAND_RATIO = 1.2
LIP_EXPAND_RATIO = 2.0
SOFT_SIZE = 64
FACE_KERNEL = 51
LIP_KERNEL = 31
NUM_LEVELS = 4


def expand_box(points: np.ndarray, image_hw, ratio: float) -> tuple[int, int, int, int]:
    """The release's ``expand_region`` over ``points`` ``(K, 2)`` pixel (x, y); see the module docstring."""
    h, w = int(image_hw[0]), int(image_hw[1])
    pts = np.asarray(points, dtype=np.float64)
    min_x, max_x = float(pts[:, 0].min()), float(pts[:, 0].max())
    min_y, max_y = float(pts[:, 1].min()), float(pts[:, 1].max())
    cx, cy = math.floor((min_x + max_x) / 2), math.floor((min_y + max_y) / 2)
    half_w, half_h = (max_x - min_x) * ratio / 2, (max_y - min_y) * ratio / 2
    x0, x1, y0, y1 = cx - half_w, cx + half_w, cy - half_h, cy + half_h
    if x0 < 0:
        x1, x0 = x1 - x0, 0.0
    if x1 > w:
        x0, x1 = x0 - (x1 - w), float(w)
    if y0 < 0:
        y1, y0 = y1 - y0, 0.0
    if y1 > h:
        y0, y1 = y0 - (y1 - h), float(h)
    box = [round(x0), round(y0), round(x1), round(y1)]
    return (min(max(box[0], 0), w), min(max(box[1], 0), h), min(max(box[2], 0), w), min(max(box[3], 0), h))


def face_box(landmarks: np.ndarray, image_hw, expand_ratio: float = FACE_EXPAND_RATIO):
    """The face box from the 36 face-oval landmarks (default ratio 1.2 = ``face_expand_ratio``)."""
    return expand_box(np.asarray(landmarks)[list(FACE_OVAL_IDS)], image_hw, expand_ratio)


def lip_box(landmarks: np.ndarray, image_hw, expand_ratio: float = LIP_EXPAND_RATIO):
    """The lip box from the 20 outer-lip landmarks (default ratio 2.0)."""
    return expand_box(np.asarray(landmarks)[list(LIP_IDS)], image_hw, expand_ratio)


def hard_mask(box, image_hw) -> np.ndarray:
    """``(H, W)`` uint8: 255 inside ``box`` (exclusive ends), 0 elsewhere."""
    m = np.zeros((int(image_hw[0]), int(image_hw[1])), np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box)
    m[y0:y1, x0:x1] = 255
    return m


def blur_mask(hard: np.ndarray, kernel: int, size: int = SOFT_SIZE) -> np.ndarray:
    """Hard uint8 mask -> ``size`` x ``size`` bilinear -> Gaussian blur (``kernel``, auto sigma) -> min-max uint8."""
    import cv2

    small = cv2.resize(hard, (size, size), interpolation=cv2.INTER_LINEAR)
    blurred = cv2.GaussianBlur(small, (kernel, kernel), 0)
    if int(blurred.max()) == int(blurred.min()):  # empty or full-frame mask: nothing to normalise
        return blurred
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX)


@dataclass
class SoftMasks:
    """The three 64x64 uint8 masks: ``full`` (background/pose), ``face`` (face without lips), ``lip``."""

    full: np.ndarray
    face: np.ndarray
    lip: np.ndarray

    def levels(self, image_size: int = 512) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``{side: (full, face, lip)}`` per UNet level, each ``(side*side,)`` float32 in [0, 1]."""
        sides = level_sizes(image_size)
        per = [level_masks(m, sides) for m in (self.full, self.face, self.lip)]
        return {s: (per[0][i], per[1][i], per[2][i]) for i, s in enumerate(sides)}


def soft_from_hard(face_hard: np.ndarray, lip_hard: np.ndarray) -> SoftMasks:
    """The soft masks of spec §7.5 from the two hard masks (any resolution)."""
    import cv2

    face_blur = blur_mask(face_hard, FACE_KERNEL)
    lip_blur = blur_mask(lip_hard, LIP_KERNEL)
    full = ((1.0 - face_blur.astype(np.float64) / 255.0) * 255.0).astype(np.uint8)
    face = cv2.subtract(face_blur, lip_blur)
    return SoftMasks(full=full, face=face, lip=lip_blur)


def soft_masks(face_box_, lip_box_, image_hw) -> SoftMasks:
    """Soft full/face/lip masks (64x64 uint8) for one image from its face and lip boxes."""
    return soft_from_hard(hard_mask(face_box_, image_hw), hard_mask(lip_box_, image_hw))


def level_sizes(image_size: int = 512, num_levels: int = NUM_LEVELS) -> tuple[int, ...]:
    """Token grid side per UNet level: latent side ``image_size/8`` halved per level (64, 32, 16, 8 for 512)."""
    latent = image_size // 8
    return tuple(max(1, latent >> i) for i in range(num_levels))


def level_masks(mask: np.ndarray, sizes: Sequence[int] = (64, 32, 16, 8)) -> list[np.ndarray]:
    """A uint8 mask -> for each side ``s``: Pillow bilinear ``s x s``, row-major ``(s*s,)`` float32 in [0, 1]."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))
    out = []
    for s in sizes:
        r = img if img.size == (s, s) else img.resize((s, s), Image.BILINEAR)
        out.append((np.asarray(r, dtype=np.float32) / 255.0).reshape(-1))
    return out


def face_region(face_box_, image_hw, size: int = 512) -> np.ndarray:
    """FaceLocator input: hard face mask as RGB, Pillow bilinear to ``size``, ``(3, size, size)`` float32 [0, 1]."""
    return face_region_from_mask(hard_mask(face_box_, image_hw), size)


def face_region_from_mask(hard: np.ndarray, size: int = 512) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(hard, dtype=np.uint8)).convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0)


def bounding_box(boxes: Iterable[Sequence[int]]) -> tuple[int, int, int, int]:
    b = np.asarray(list(boxes), dtype=np.int64)
    return int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max())


@dataclass
class UnionMasks:
    """Per-video masks of spec §9.3: ``face_hard`` (H, W) uint8 0/255 (one rectangle) and the soft masks."""

    face_hard: np.ndarray
    face_box: tuple[int, int, int, int]
    soft: SoftMasks


def union_masks(landmarks_per_frame: Iterable[np.ndarray], image_hw, expand_ratio: float = 1.0) -> UnionMasks:
    """Training-data masks over all frames (expand 1.0 for face and lip, spec §9.3).

    Face: the bounding box of the union of the per-frame face boxes, filled. Lip: the union (logical OR) of the
    per-frame lip rectangles. The soft masks are then computed from these hard masks exactly as for one image.
    """
    face_boxes, lip_hard = [], np.zeros((int(image_hw[0]), int(image_hw[1])), np.uint8)
    for lm in landmarks_per_frame:
        face_boxes.append(face_box(lm, image_hw, expand_ratio))
        lip_hard |= hard_mask(lip_box(lm, image_hw, expand_ratio), image_hw)
    if not face_boxes:
        raise ValueError("union_masks needs the landmarks of at least one frame")
    fbox = bounding_box(face_boxes)
    face_hard = hard_mask(fbox, image_hw)
    return UnionMasks(face_hard=face_hard, face_box=fbox, soft=soft_from_hard(face_hard, lip_hard))
