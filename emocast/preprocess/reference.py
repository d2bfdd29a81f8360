"""The whole reference-image preprocessing for inference (spec §7), assembled from the small modules.

:func:`prepare_reference` runs, in order:

1. :func:`~emocast.preprocess.image.load_image` (or an RGB array as given);
2. :meth:`FaceAnalyzer.largest_face` on the image at its original resolution -> box + raw embedding;
3. if the image is not square and ``square`` is on (default): :func:`square_crop_around` the face box (the
   square side is the shorter image side; see that function); with ``square`` off the whole image is later
   stretched to ``size`` x ``size`` as the release does;
4. landmarks (mediapipe) on the (cropped) image at its resolution, picking the mesh that overlaps the chosen
   face; face box (``face_expand_ratio``, default 1.2) and lip box (``lip_expand_ratio``, 2.0);
5. soft masks (64x64) and the FaceLocator face region (``size``), and the model pixels resized to ``size``.

With ``allow_no_face``: when insightface finds no face, the whole image is used with a zero embedding; when
mediapipe finds no landmarks either, the face box is the detected (or whole-image) box and the lip box its
lower-middle part (x 30-70 %, y 60-90 % of the face box), a rough stand-in documented as such.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .face import Face, FaceAnalyzer
from .image import load_image, resize_square, shift_box, square_crop_around
from .landmarks import Landmarker
from .masks import FACE_EXPAND_RATIO, LIP_EXPAND_RATIO, SoftMasks, face_box, face_region, lip_box, soft_masks


@dataclass
class ReferenceInputs:
    """Everything inference needs from the portrait. Boxes/landmarks are in ``framed`` image pixels."""

    pixels: np.ndarray  # (size, size, 3) uint8 RGB model input
    face_emb: np.ndarray  # (512,) float32 raw insightface embedding (zeros when allow_no_face had no face)
    face: Face  # detection in the original image
    crop_box: tuple[int, int, int, int] | None  # square crop in original pixels (None: not cropped)
    framed_hw: tuple[int, int]  # size of the image the boxes refer to (the crop, or the original)
    landmarks: np.ndarray | None  # (478, 2) in framed pixels; None when the fallback boxes were used
    face_box: tuple[int, int, int, int]
    lip_box: tuple[int, int, int, int]
    masks: SoftMasks  # 64x64 uint8 full / face / lip
    face_region: np.ndarray  # (3, size, size) float32 in [0, 1], FaceLocator input

    def level_masks(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``{side: (full, face, lip)}`` flattened float32 per UNet level for this image size."""
        return self.masks.levels(self.pixels.shape[0])


def _fallback_boxes(box, hw) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    h, w = hw
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
    bw, bh = x2 - x1, y2 - y1
    fbox = (round(x1), round(y1), round(x2), round(y2))
    lbox = (round(x1 + 0.3 * bw), round(y1 + 0.6 * bh), round(x1 + 0.7 * bw), round(y1 + 0.9 * bh))
    return fbox, lbox


def prepare_reference(image, analyzer: FaceAnalyzer, landmarker: Landmarker, *, size: int = 512,
                      face_expand_ratio: float = FACE_EXPAND_RATIO, lip_expand_ratio: float = LIP_EXPAND_RATIO,
                      square: bool = True, allow_no_face: bool = False, min_face_size: float = 32.0,
                      min_face_fraction: float = 0.05, source: str | None = None) -> ReferenceInputs:
    """``image`` (a path or an RGB uint8 array) -> :class:`ReferenceInputs` (see the module docstring)."""
    if isinstance(image, (str, Path)):
        source = source or str(image)
        rgb = load_image(image)
    else:
        rgb = np.ascontiguousarray(image, dtype=np.uint8)
        source = source or "the source image"
    face = analyzer.largest_face(rgb, source=source, allow_no_face=allow_no_face, min_face_size=min_face_size,
                                 min_face_fraction=min_face_fraction)
    h, w = rgb.shape[:2]
    crop_box = None
    framed, near = rgb, face.box
    if square and h != w:
        framed, crop_box = square_crop_around(rgb, face.box)
        near = shift_box(face.box, crop_box)
    hw = framed.shape[:2]
    try:
        lms = landmarker.landmarks(framed, near_box=near, source=source)
        fbox, lbox = face_box(lms, hw, face_expand_ratio), lip_box(lms, hw, lip_expand_ratio)
    except InputError:
        if not allow_no_face:
            raise
        lms = None
        fbox, lbox = _fallback_boxes(near, hw)
    return ReferenceInputs(
        pixels=resize_square(framed, size), face_emb=face.embedding.astype(np.float32), face=face,
        crop_box=crop_box, framed_hw=(int(hw[0]), int(hw[1])), landmarks=lms, face_box=fbox, lip_box=lbox,
        masks=soft_masks(fbox, lbox, hw), face_region=face_region(fbox, hw, size))
