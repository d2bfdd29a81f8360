"""Face detection and the identity embedding (insightface, ``pretrained_models/face_analysis/models``).

:class:`FaceAnalyzer` loads the pack with insightface's own ``FaceAnalysis`` (detection + recognition only,
``det_size`` 640x640, ONNX Runtime providers CUDA then CPU as available) and never touches the network: the
registry check runs first, and the pack folder is passed as a directory so insightface has nothing to fetch.

:meth:`FaceAnalyzer.largest_face` follows the release (spec §7.2): the face with the largest box area and its
raw 512-d ArcFace embedding (**not** L2-normalised), computed on the image at its original resolution.
Several faces -> the largest, with a warning; no face -> :class:`InputError`, unless ``allow_no_face`` is
set, in which case the whole image is the face box and the embedding is zeros (what the release does
silently; the networks then see ``imageproj(0)``, the same face tokens as the unconditional branch).
A face whose box is smaller than ``min_face_size`` pixels or ``min_face_fraction`` of the image's shorter
side is rejected (too little detail for a 512x512 portrait).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .. import registry
from ..errors import InputError, MissingModelError

COMPONENT = "face_analysis"
DET_SIZE = 640
EMBEDDING_DIM = 512


@dataclass
class Face:
    """One detected face: ``box`` ``(x1, y1, x2, y2)`` pixels (float32), raw ``embedding`` (512,), ``score``."""

    box: np.ndarray
    embedding: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def onnx_providers(device=None) -> list[str]:
    """ONNX Runtime providers: CUDA first when available (and the device is not CPU), then CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    want_cuda = device is None or str(device).startswith("cuda") or str(device) == "auto"
    providers = ["CUDAExecutionProvider"] if want_cuda and "CUDAExecutionProvider" in available else []
    return providers + ["CPUExecutionProvider"]


class FaceAnalyzer:
    """insightface detection + ArcFace embedding from ``<models_root>/face_analysis/models``."""

    def __init__(self, models_root=None, device=None, det_size: int = DET_SIZE, det_thresh: float = 0.5):
        folder = registry.component_dir(COMPONENT, models_root)  # MissingModelError with the download report
        from insightface.app import FaceAnalysis

        self.providers = onnx_providers(device)
        self.folder = folder
        self._app = FaceAnalysis(name=str(folder.resolve()), providers=self.providers,
                                 allowed_modules=["detection", "recognition"])
        if "recognition" not in self._app.models:
            raise MissingModelError(  # a pack without the ArcFace model cannot give embeddings
                f"the face pack in {folder} has no recognition (ArcFace) model. Fix: "
                f"{registry.fix_command(COMPONENT, models_root)}")
        ctx_id = 0 if self.providers[0] == "CUDAExecutionProvider" else -1
        self._app.prepare(ctx_id=ctx_id, det_thresh=det_thresh, det_size=(det_size, det_size))

    def faces(self, rgb: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image, largest box first."""
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # skimage deprecation inside insightface's aligner
            found = self._app.get(bgr)
        out = [Face(np.asarray(f.bbox, np.float32), np.asarray(f.embedding, np.float32).reshape(-1),
                    float(f.det_score)) for f in found]
        return sorted(out, key=lambda f: f.area, reverse=True)

    def largest_face(self, rgb: np.ndarray, *, source: str = "the source image", allow_no_face: bool = False,
                     min_face_size: float = 32.0, min_face_fraction: float = 0.05) -> Face:
        """The largest face (see the module docstring for the no-face / several-faces / too-small rules)."""
        h, w = rgb.shape[:2]
        faces = self.faces(rgb)
        if not faces:
            if allow_no_face:
                warnings.warn(f"no face found in {source}: using the whole image and a zero identity embedding "
                              "(allow_no_face)", UserWarning, stacklevel=2)
                return Face(np.array([0, 0, w, h], np.float32), np.zeros(EMBEDDING_DIM, np.float32), 0.0)
            raise InputError(
                f"no face found in {source}. Fix: use a photo with one clearly visible, roughly frontal face, or "
                "pass --allow_no_face to animate the whole image (no identity embedding).")
        face = faces[0]
        if len(faces) > 1:
            warnings.warn(f"{len(faces)} faces found in {source}: using the largest one "
                          f"(box {np.round(face.box).astype(int).tolist()})", UserWarning, stacklevel=2)
        side = min(face.box[2] - face.box[0], face.box[3] - face.box[1])
        limit = max(min_face_size, min_face_fraction * min(h, w))
        if side < limit:
            raise InputError(
                f"the face in {source} is too small ({side:.0f} px across, at least {limit:.0f} px needed for an "
                f"image of {w}x{h}). Fix: crop the photo closer around the face (the face should fill roughly "
                "half of the frame).")
        return face
