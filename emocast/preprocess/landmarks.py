"""Dense face landmarks (mediapipe) for the face and lip boxes of spec §7.3-7.4.

:class:`Landmarker` uses mediapipe's Tasks ``FaceLandmarker`` with
``pretrained_models/face_analysis/models/face_landmarker_v2_with_blendshapes.task`` (registry component
``face_landmarker``, optional) when that file is present, as the release does. Otherwise it uses the legacy
face mesh bundled inside mediapipe 0.10.21 (``mp.solutions.face_mesh``, ``refine_landmarks=True``), which
gives the same 478-point topology with no download. The Tasks API of mediapipe 0.10.21 works with our protobuf 6
thanks to :mod:`emocast.compat`; a ``.task`` file that still cannot be loaded (e.g. corrupt) gives a warning
and the bundled face mesh is used. Both return pixel coordinates
``(478, 2)`` (x, y) float64: mediapipe's normalised float32 values times the image size, computed in float64
like the release's ``p.x * w`` (so the whole-pixel rounding in :func:`~emocast.preprocess.masks.expand_box`
sees the same numbers).

When the image contains several faces, the mesh nearest to ``near_box`` (the face insightface chose) is used;
without a box, the largest. No face -> :class:`InputError`.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import registry
from ..errors import EmoCASTError, InputError
from .quiet import import_mediapipe, mediapipe_quiet

COMPONENT = "face_landmarker"
TASK_FILE = "face_landmarker_v2_with_blendshapes.task"
MAX_FACES = 5

# mediapipe face-mesh vertex ids: the 36 points of the face oval (FACEMESH_FACE_OVAL) and the 20 points of the
# outer lip contour (the outer ring of FACEMESH_LIPS). Order is irrelevant: only their min/max are used.
FACE_OVAL_IDS = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
                 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIP_IDS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _extent(points: np.ndarray) -> tuple[float, float, float, float]:
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()),
            float(points[:, 1].max()))


def has_face_mesh() -> bool:
    """Whether this mediapipe still bundles the legacy face mesh (``mp.solutions.face_mesh``, <= 0.10.21)."""
    try:
        mp = import_mediapipe()

        return hasattr(mp, "solutions") and hasattr(mp.solutions, "face_mesh")
    except ImportError:
        return False


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
        self.min_confidence = min_confidence
        self.backend = "face_mesh"
        self._task = None
        if prefer_task and registry.status(COMPONENT, models_root)[0] == "present":
            path = registry.component_dir(COMPONENT, models_root) / TASK_FILE
            try:
                self._task = self._load_task(path)
                self.backend = "task"
            except (RuntimeError, ValueError, TypeError) as err:
                if not has_face_mesh():
                    raise EmoCASTError(
                        f"mediapipe cannot load the face landmarker model {path} "
                        f"({str(err).splitlines()[0]}). Fix: re-download it "
                        f"({registry.fix_command(COMPONENT, models_root)}) or install mediapipe 0.10.21 "
                        "(`pip install --no-deps mediapipe==0.10.21`), whose bundled face mesh needs no file.") from None
                warnings.warn(f"mediapipe could not load {path} ({str(err).splitlines()[0][:120]}); using the face "
                              "mesh bundled with mediapipe instead (same 478-point topology)", UserWarning,
                              stacklevel=2)
        if self._task is None and not has_face_mesh():
            raise EmoCASTError(
                "no face landmark model: this mediapipe has no bundled face mesh (mp.solutions was removed after "
                f"0.10.21) and {TASK_FILE} is not in the models folder. Fix: "
                f"{registry.fix_command(COMPONENT, models_root)}, or `pip install --no-deps mediapipe==0.10.21`.")

    def _load_task(self, path):
        import_mediapipe()  # a quiet first import
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)), running_mode=vision.RunningMode.IMAGE,
            num_faces=MAX_FACES, min_face_detection_confidence=self.min_confidence,
            min_face_presence_confidence=self.min_confidence)
        return vision.FaceLandmarker.create_from_options(options)

    def _meshes(self, rgb: np.ndarray) -> list[np.ndarray]:
        with mediapipe_quiet():
            return self._run(rgb)

    def _run(self, rgb: np.ndarray) -> list[np.ndarray]:
        h, w = rgb.shape[:2]
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if self._task is not None:
            mp = import_mediapipe()

            result = self._task.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            faces = [[(p.x, p.y) for p in face] for face in result.face_landmarks]
        else:
            mp = import_mediapipe()

            with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=MAX_FACES,
                                                 refine_landmarks=True,
                                                 min_detection_confidence=self.min_confidence) as mesh:
                result = mesh.process(rgb)
            faces = [[(p.x, p.y) for p in face.landmark] for face in (result.multi_face_landmarks or [])]
        return [np.asarray(f, np.float64) * np.array([w, h], np.float64) for f in faces]

    def landmarks(self, rgb: np.ndarray, near_box=None, source: str = "the source image") -> np.ndarray:
        """Pixel landmarks ``(478, 2)`` of the face (nearest ``near_box`` when several are found)."""
        meshes = self._meshes(rgb)
        if not meshes:
            raise InputError(
                f"mediapipe found no face landmarks in {source}. Fix: use a sharper, well-lit photo with one "
                "roughly frontal face that is not covered (hands, hair, sunglasses).")
        return pick_face(meshes, near_box)

    def close(self) -> None:
        if self._task is not None:
            self._task.close()
            self._task = None
