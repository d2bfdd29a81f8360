"""mediapipe, wrapped once: importing it, face landmarks in image or video (tracking) mode, face detection.

- :func:`import_mediapipe`: ``import mediapipe`` with the protobuf shim it needs and without its start-up noise.
  protobuf >= 5 removed ``MessageFactory.GetPrototype``; mediapipe 0.10.21's C++ proto bridge still calls it
  when its extension loads. Without it the bridge fails to initialise (it prints ``AttributeError:
  'MessageFactory' object has no attribute 'GetPrototype'``) and every Tasks-API call that passes a proto, such as
  ``FaceLandmarker.create_from_options`` for the ``.task`` landmark model, raises ``TypeError: create():
  incompatible function arguments``. We need protobuf 6 (onnx), so :func:`restore_protobuf_get_prototype` puts
  the old method back, as the alias of ``message_factory.GetMessageClass`` it was, right before mediapipe is first
  imported, and only then: importing ``emocast`` leaves protobuf alone. (A mediapipe imported elsewhere before
  this runs keeps its broken bridge: import it through here.)
- :func:`mediapipe_quiet`: mediapipe's C++ graphs log TensorFlow Lite / absl start-up lines on first use; the
  known lines are filtered at the file-descriptor level, anything else printed meanwhile still reaches stderr.
- :class:`FaceMeshes`: the pixel landmarks of every face in an image, in image mode (each call independent) or
  video mode (consecutive frames of one clip, tracked). mediapipe's Tasks ``FaceLandmarker`` with
  ``pretrained_models/face_analysis/models/face_landmarker_v2_with_blendshapes.task`` (registry component
  ``face_landmarker``, optional) when that file is present and loadable, else the legacy face mesh bundled inside
  mediapipe 0.10.21 (``mp.solutions.face_mesh``; same topology, no download). A ``.task`` file that cannot be
  loaded (e.g. corrupt) gives a warning and the bundled face mesh is used.
- :class:`FaceDetection`: face boxes from mediapipe's bundled full-range BlazeFace (no download).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings

import numpy as np

from .. import registry
from ..errors import EmoCASTError

COMPONENT = "face_landmarker"
TASK_FILE = "face_landmarker_v2_with_blendshapes.task"
MAX_FACES = 5

# mediapipe face-mesh vertex ids: the 36 points of the face oval (FACEMESH_FACE_OVAL) and the 20 points of the
# outer lip contour (the outer ring of FACEMESH_LIPS). Order is irrelevant: only their min/max are used.
FACE_OVAL_IDS = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
                 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIP_IDS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)

MEDIAPIPE_NOISE = ("GetPrototype", "XNNPACK delegate for CPU", "absl::InitializeLog",
                   "inference_feedback_manager.cc", "landmark_projection_calculator.cc")


# ------------------------------------------------------------------------------------------------ import
def restore_protobuf_get_prototype() -> bool:
    """Add ``MessageFactory.GetPrototype`` when protobuf lacks it; True if it is available afterwards."""
    try:
        from google.protobuf import message_factory
    except ImportError:  # protobuf comes with mediapipe; without it there is nothing to patch
        return False
    if not hasattr(message_factory.MessageFactory, "GetPrototype"):
        message_factory.MessageFactory.GetPrototype = (
            lambda self, descriptor: message_factory.GetMessageClass(descriptor))
    return True


@contextlib.contextmanager
def mediapipe_quiet(noise=MEDIAPIPE_NOISE):
    """Capture stderr (fd 2, so C++ output too) inside the block; re-print every line but the known noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            printed = capture.read().decode("utf-8", errors="replace")
    for line in printed.splitlines():
        if line.strip() and not any(n in line for n in noise):
            print(line, file=sys.stderr)


def import_mediapipe():
    """``import mediapipe`` (protobuf shim first, start-up noise filtered); returns the module."""
    if "mediapipe" not in sys.modules:
        restore_protobuf_get_prototype()
        with mediapipe_quiet():
            import mediapipe  # noqa: F401
    return sys.modules["mediapipe"]


def has_face_mesh() -> bool:
    """Whether this mediapipe still bundles the legacy face mesh (``mp.solutions.face_mesh``, <= 0.10.21)."""
    try:
        mp = import_mediapipe()
    except ImportError:
        return False
    return hasattr(mp, "solutions") and hasattr(mp.solutions, "face_mesh")


# ------------------------------------------------------------------------------------------------ landmarks
class FaceMeshes:
    """Pixel landmarks of every face in an image: ``meshes(rgb) -> [(points, 2) float64 (x, y)]``.

    The values are mediapipe's normalised float32 coordinates times the image size, computed in float64 like the
    release's ``p.x * w``. ``video=False`` (image mode): every call is independent; the bundled face mesh refines
    the iris (478 points, the FaceLandmarker's topology). ``video=True``: consecutive frames of one clip at
    ``fps``, tracked between calls (the Tasks API in VIDEO mode; the bundled mesh without iris refinement, 468
    points). ``backend`` is ``"task"`` or ``"face_mesh"``. Use one instance per clip; ``with`` closes it.
    """

    def __init__(self, models_root=None, video: bool = False, fps: float = 25, min_confidence: float = 0.5,
                 prefer_task: bool = True):
        self.video, self.fps, self.min_confidence = video, fps, min_confidence
        self.backend = "face_mesh"
        self._task = self._mesh = None
        self._frame = 0
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
                              "mesh bundled with mediapipe instead (same landmark topology)", UserWarning,
                              stacklevel=3)
        if self._task is None:
            if not has_face_mesh():
                raise EmoCASTError(
                    "no face landmark model: this mediapipe has no bundled face mesh (mp.solutions was removed after "
                    f"0.10.21) and {TASK_FILE} is not in the models folder. Fix: "
                    f"{registry.fix_command(COMPONENT, models_root)}, or `pip install --no-deps mediapipe==0.10.21`.")
            mp = import_mediapipe()
            with mediapipe_quiet():
                self._mesh = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=not video, max_num_faces=MAX_FACES, refine_landmarks=not video,
                    min_detection_confidence=min_confidence, min_tracking_confidence=min_confidence)

    def _load_task(self, path):
        import_mediapipe()  # the shim and a quiet first import
        from mediapipe.tasks.python import BaseOptions, vision

        mode = vision.RunningMode.VIDEO if self.video else vision.RunningMode.IMAGE
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)), running_mode=mode, num_faces=MAX_FACES,
            min_face_detection_confidence=self.min_confidence, min_face_presence_confidence=self.min_confidence,
            min_tracking_confidence=self.min_confidence)
        with mediapipe_quiet():
            return vision.FaceLandmarker.create_from_options(options)

    def meshes(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Pixel landmarks of every face in ``rgb`` (in video mode: the next frame of the clip)."""
        h, w = rgb.shape[:2]
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        mp = import_mediapipe()
        with mediapipe_quiet():
            if self._task is not None:
                image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
                if self.video:
                    result = self._task.detect_for_video(image, int(self._frame * 1000 / self.fps))
                else:
                    result = self._task.detect(image)
                faces = [[(p.x, p.y) for p in face] for face in result.face_landmarks]
            else:
                result = self._mesh.process(rgb)
                faces = [[(p.x, p.y) for p in face.landmark] for face in (result.multi_face_landmarks or [])]
        self._frame += 1
        return [np.asarray(f, np.float64) * np.array([w, h], np.float64) for f in faces]

    def close(self) -> None:
        for model in (self._task, self._mesh):
            if model is not None:
                model.close()
        self._task = self._mesh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------------ detection
class FaceDetection:
    """Face boxes from mediapipe's bundled BlazeFace (full range): ``boxes(rgb) -> [(x0, y0, x1, y1)]`` in pixels.
    ImportError when this mediapipe does not bundle it (0.10.21 does)."""

    def __init__(self, min_confidence: float = 0.5):
        import_mediapipe()
        from mediapipe.python.solutions.face_detection import FaceDetection as BlazeFace

        with mediapipe_quiet():
            self._det = BlazeFace(model_selection=1, min_detection_confidence=min_confidence)

    def boxes(self, rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
        with mediapipe_quiet():
            res = self._det.process(np.ascontiguousarray(rgb))
        h, w = rgb.shape[:2]
        out = []
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            out.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
        return out

    def close(self) -> None:
        self._det.close()
