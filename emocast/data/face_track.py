"""Per-frame face boxes of a video for data preparation (mediapipe landmarks in video/tracking mode).

:class:`FaceTracker` runs :class:`emocast.media.mediapipe_faces.FaceMeshes` in video mode on consecutive frames
of one clip (the legacy face mesh bundled with mediapipe in tracking mode, or the Tasks ``FaceLandmarker`` in
VIDEO mode when the optional registry component ``face_landmarker`` is present) and reports for each frame how
many faces it found and, for the main face, the face-oval and lip-contour boxes (the landmark subsets
``FACE_OVAL_IDS`` / ``LIP_IDS``; expand ratio 1.0 as in Hallo's training masks, spec §9.3).

A second face counts only when its box is at least ``second_face_ratio`` of the main face's area, so a
tiny face in the background does not reject a clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..media.mediapipe_faces import FACE_OVAL_IDS, LIP_IDS, FaceMeshes


@dataclass(frozen=True)
class FrameFaces:
    count: int  # faces that matter (see second_face_ratio)
    face_box: tuple[float, float, float, float] | None  # main face oval extent (x0, y0, x1, y1), pixels
    lip_box: tuple[float, float, float, float] | None  # main face outer-lip extent
    mesh: np.ndarray | None = None  # main face landmarks (478|468, 2) pixels


def _extent(points: np.ndarray) -> tuple[float, float, float, float]:
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max()))


def _area(b) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def summarize(meshes: list[np.ndarray], second_face_ratio: float = 0.25) -> FrameFaces:
    """The main (largest) face's boxes and the number of significant faces among pixel-coordinate meshes."""
    if not meshes:
        return FrameFaces(0, None, None)
    boxes = [_extent(m[list(FACE_OVAL_IDS)]) for m in meshes]
    areas = [_area(b) for b in boxes]
    main = int(np.argmax(areas))
    count = sum(1 for a in areas if a >= second_face_ratio * areas[main])
    return FrameFaces(count, boxes[main], _extent(meshes[main][list(LIP_IDS)]), meshes[main])


class FaceTracker:
    """Landmarks for the consecutive frames of one video; use one instance per video (``with`` closes it)."""

    def __init__(self, models_root=None, min_confidence: float = 0.5, second_face_ratio: float = 0.25,
                 fps: int = 25):
        self.second_face_ratio = second_face_ratio
        self._meshes = FaceMeshes(models_root, video=True, fps=fps, min_confidence=min_confidence)

    def meshes(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Pixel landmarks of every face in the next frame of the clip."""
        return self._meshes.meshes(rgb)

    def __call__(self, rgb: np.ndarray) -> FrameFaces:
        return summarize(self.meshes(rgb), self.second_face_ratio)

    def close(self) -> None:
        self._meshes.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
