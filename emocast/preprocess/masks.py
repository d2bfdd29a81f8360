"""Face/lip boxes and the masks of spec §7.4-7.7 (and the per-video union variant of §9.3), all in memory.

Boxes are ``(x0, y0, x1, y1)`` integer pixels with exclusive ends: the hard mask is ``mask[y0:y1, x0:x1] = 255``.

- :func:`expand_box` (the release's ``get_face_mask`` / ``get_lip_mask`` + ``expand_region``), per axis:
  the min and max of the landmark subset are first rounded to whole pixels (``np.round``, half to even);
  centre = ``floor((min + max) / 2)``; half side = ``floor((max - min) * ratio / 2)`` (the release's
  ``side // 2``), so the box is ``[centre - half, centre + half)``, all integers; a box crossing a border is
  shifted back inside. A box larger than the image is clipped to it (the release would leave a negative start,
  which NumPy slicing wraps around to a strip at the far edge; see docs/preprocessing.md).
- :func:`soft_masks`: hard masks -> 64x64 (``cv2.resize`` bilinear) -> Gaussian blur (face 51x51, lip 31x31,
  OpenCV's automatic sigma) -> ``cv2.normalize`` min-max to 0..255 uint8 (OpenCV rounds to nearest; a constant
  mask is returned unchanged instead of OpenCV's all-zero result). ``full`` (background/pose) =
  ``uint8((1 - face/255) * 255)`` (float64, truncated, as the release's inference computes it); ``face`` =
  blurred face - blurred lip (saturating at 0); ``lip`` = blurred lip.
- :func:`level_masks`: a 64x64 mask -> per UNet level Pillow bilinear resize to ``s x s`` (64, 32, 16, 8 for a
  512 image; generally ``size/8 / 2**i``), flattened row-major, float32 in [0, 1].
- :func:`face_region`: the FaceLocator input, the hard face mask as a 3-channel image resized to the model
  size with Pillow bilinear, float32 ``(3, size, size)`` in [0, 1].
- :func:`union_masks`: the training-data variant (spec §9.3, Hallo's ``get_union_*_mask``): expand 1.0, for
  face **and** lip the bounding rectangle of the per-frame boxes, filled; ``full = 255 - face`` exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..media.mediapipe_faces import FACE_OVAL_IDS, LIP_IDS

FACE_EXPAND_RATIO = 1.2
LIP_EXPAND_RATIO = 2.0
SOFT_SIZE = 64
FACE_KERNEL = 51
LIP_KERNEL = 31
NUM_LEVELS = 4


def expand_box(points: np.ndarray, image_hw, ratio: float) -> tuple[int, int, int, int]:
    """The release's box rule over ``points`` ``(K, 2)`` pixel (x, y); see the module docstring."""
    h, w = int(image_hw[0]), int(image_hw[1])
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = np.round(pts.min(axis=0)), np.round(pts.max(axis=0))  # whole pixels first, half to even

    def axis(a: float, b: float, limit: int) -> tuple[int, int]:
        centre = math.floor((a + b) / 2)  # a, b are whole numbers: exact
        half = math.floor((b - a) * float(ratio) / 2)  # float64 product, as the release
        start, end = centre - half, centre + half
        if start < 0:
            start, end = 0, end - start
        if end > limit:
            start, end = start - (end - limit), limit
        return min(max(start, 0), limit), min(max(end, 0), limit)  # oversize: clipped (documented deviation)

    x0, x1 = axis(float(lo[0]), float(hi[0]), w)
    y0, y1 = axis(float(lo[1]), float(hi[1]), h)
    return x0, y0, x1, y1


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
    if int(blurred.max()) == int(blurred.min()):  # empty/full-frame: kept (cv2.normalize would give all zeros)
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


def soft_from_hard(face_hard: np.ndarray, lip_hard: np.ndarray, exact_background: bool = False) -> SoftMasks:
    """The soft masks of spec §7.5 from the two hard masks (any resolution).

    ``full`` is ``uint8((1 - face/255) * 255)`` (float64, truncated: ``255 - face`` or one less) as the release's
    inference writes it; with ``exact_background`` it is ``255 - face`` exactly, as Hallo's training-data
    preparation computes it (``255.0 - blurred``, converted to uint8 by ``cv2.imwrite``; spec §9.3).
    """
    import cv2

    face_blur = blur_mask(face_hard, FACE_KERNEL)
    lip_blur = blur_mask(lip_hard, LIP_KERNEL)
    if exact_background:
        full = (255 - face_blur).astype(np.uint8)
    else:
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
    """The bounding rectangle of the non-empty ``boxes`` (empty ones cover no pixel of the union mask);
    ``(0, 0, 0, 0)`` when all are empty."""
    b = np.asarray([tuple(x) for x in boxes if x[2] > x[0] and x[3] > x[1]], dtype=np.int64).reshape(-1, 4)
    if len(b) == 0:
        return 0, 0, 0, 0
    return int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max())


@dataclass
class UnionMasks:
    """Per-video masks of spec §9.3: ``face_hard`` (H, W) uint8 0/255 (one rectangle) and the soft masks."""

    face_hard: np.ndarray
    face_box: tuple[int, int, int, int]
    soft: SoftMasks


def union_masks(landmarks_per_frame: Iterable[np.ndarray], image_hw, expand_ratio: float = 1.0) -> UnionMasks:
    """Training-data masks over all frames (expand 1.0 for face and lip, spec §9.3).

    As Hallo's ``get_union_face_mask`` / ``get_union_lip_mask`` (pixel-wise union of the per-frame rectangles,
    then the bounding box of the union filled): for the face **and** for the lip, one filled rectangle, the
    bounding box of the per-frame boxes. The soft masks follow as for one image, except that the background
    mask is ``255 - blurred face`` exactly (``soft_from_hard(..., exact_background=True)``).
    """
    face_boxes, lip_boxes = [], []
    for lm in landmarks_per_frame:
        face_boxes.append(face_box(lm, image_hw, expand_ratio))
        lip_boxes.append(lip_box(lm, image_hw, expand_ratio))
    if not face_boxes:
        raise ValueError("union_masks needs the landmarks of at least one frame")
    fbox = bounding_box(face_boxes)
    face_hard = hard_mask(fbox, image_hw)
    lip_hard = hard_mask(bounding_box(lip_boxes), image_hw)
    return UnionMasks(face_hard=face_hard, face_box=fbox,
                      soft=soft_from_hard(face_hard, lip_hard, exact_background=True))
