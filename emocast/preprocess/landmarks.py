"""Dense face landmarks (mediapipe) for the face and lip boxes of spec §7.3-7.4.

:class:`Landmarker` runs :class:`emocast.media.mediapipe_faces.FaceMeshes` in image mode: mediapipe's Tasks
``FaceLandmarker`` with ``pretrained_models/face_analysis/models/face_landmarker_v2_with_blendshapes.task``
(registry component ``face_landmarker``, optional) when that file is present, as the release does; otherwise the
legacy face mesh bundled inside mediapipe 0.10.21 (``refine_landmarks=True``), which gives the same 478-point
topology with no download (a ``.task`` file that cannot be loaded gives a warning and the bundled mesh). Both return
pixel coordinates ``(478, 2)`` (x, y) float64: mediapipe's normalised float32 values times the image size,
computed in float64 like the release's ``p.x * w`` (so the whole-pixel rounding in
:func:`~emocast.preprocess.masks.expand_box` sees the same numbers).

When the image contains several faces, the mesh nearest to ``near_box`` (the face insightface chose) is used;
without a box, the largest. No face -> :class:`InputError`.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..media.mediapipe_faces import FaceMeshes


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _extent(points: np.ndarray) -> tuple[float, float, float, float]:
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()),
            float(points[:, 1].max()))


def pick_face(meshes: list[np.ndarray], near_box=None) -> np.ndarray:
    """The mesh overlapping ``near_box`` most (the largest mesh when no box or no overlap)."""
    boxes = [_extent(m) for m in meshes]
    if near_box is not None:
        scores = [_iou(b, near_box) for b in boxes]
        if max(scores) > 0:
            return meshes[int(np.argmax(scores))]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    return meshes[int(np.argmax(areas))]


class Landmarker:
    """478 mediapipe landmarks in pixels; ``backend`` is ``"task"`` or ``"face_mesh"``."""

    def __init__(self, models_root=None, prefer_task: bool = True, min_confidence: float = 0.5):
        self._meshes = FaceMeshes(models_root, video=False, min_confidence=min_confidence, prefer_task=prefer_task)
        self.backend = self._meshes.backend

    def landmarks(self, rgb: np.ndarray, near_box=None, source: str = "the source image") -> np.ndarray:
        """Pixel landmarks ``(478, 2)`` of the face (nearest ``near_box`` when several are found)."""
        meshes = self._meshes.meshes(rgb)
        if not meshes:
            raise InputError(
                f"mediapipe found no face landmarks in {source}. Fix: use a sharper, well-lit photo with one "
                "roughly frontal face that is not covered (hands, hair, sunglasses).")
        return pick_face(meshes, near_box)

    def close(self) -> None:
        self._meshes.close()
