"""68-point face landmarks with the ``face-alignment`` package (Bulat & Tzimiropoulos' 2D-FAN + the S3FD face
detector), as EAT's evaluation gets them for the PC-AVS crop (``face_alignment.FaceAlignment(LandmarksType.TWO_D)``,
default settings: S3FD detector, flipped-input averaging).

The package downloads its weights from the web at run time; here both files are registry components
(``face_alignment_fan``, ``face_alignment_s3fd``, ``python scripts/download_models.py --group eval``) read from
the models root with ``torch.load(weights_only=True)``. The number of hourglass stacks is read from the file
(the released 2DFAN-4 has 4; the test kit's stand-in has 1).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .. import registry
from ..errors import CheckpointError, EmoCASTError
from .checkpoints import load_strict, read_weights

FAN_COMPONENT, S3FD_COMPONENT = "face_alignment_fan", "face_alignment_s3fd"


def _fix(name: str) -> str:
    return f"Fetch it with `{registry.fix_command(name)}`."


def _import():
    try:
        import face_alignment
    except ImportError as err:
        raise EmoCASTError(f"68-point landmarks need the face-alignment package ({err}). Fix: `bash "
                           "scripts/install.sh` installs it (requirements/nodeps-eval.txt).") from None
    return face_alignment


def fan_stacks(state: dict) -> int:
    """How many hourglass stacks a 2D-FAN state dict holds (keys ``m0.*`` .. ``m{n-1}.*``)."""
    found = {int(m.group(1)) for k in state for m in [re.match(r"m(\d+)\.", k)] if m}
    return max(found) + 1 if found else 0


def load_fan(path, device="cpu"):
    """The 2D-FAN of ``path`` (a plain state dict, as the package's ``2DFAN4-*.pth.tar``), eval mode."""
    from face_alignment.models import FAN

    state = read_weights(path, "a face-alignment 2D-FAN state dict", _fix(FAN_COMPONENT))
    if not isinstance(state, dict) or not fan_stacks(state):
        raise CheckpointError(f"{path} is not a face-alignment 2D-FAN state dict (no hourglass keys m0.*). "
                              f"{_fix(FAN_COMPONENT)}")
    net = FAN(fan_stacks(state))
    load_strict(net, state, path, "face-alignment 2D-FAN", _fix(FAN_COMPONENT))
    return net.to(device).eval()


class Landmarks68:
    """``__call__(rgb) -> (68, 2) float landmarks of the first detected face, or None`` (face-alignment's
    ``get_landmarks_from_image`` with the registry's weights)."""

    def __init__(self, models_root=None, device="cpu"):
        fa = _import()
        registry.require([FAN_COMPONENT, S3FD_COMPONENT], models_root)
        fan_path = registry.COMPONENTS[FAN_COMPONENT].file_paths(models_root)[0]
        s3fd_path = registry.COMPONENTS[S3FD_COMPONENT].file_paths(models_root)[0]
        self._check_s3fd(s3fd_path)
        fan = load_fan(fan_path, device)

        class _RegistryFaceAlignment(fa.FaceAlignment):
            def _load_native(self, network_name, network_size, device, dtype):  # the registry's file
                return fan.to(device, dtype=dtype)

        self._fa = _RegistryFaceAlignment(fa.LandmarksType.TWO_D, device=str(device), compile=False,
                                          face_detector="sfd",
                                          face_detector_kwargs={"path_to_detector": str(s3fd_path)})

    @staticmethod
    def _check_s3fd(path: Path) -> None:
        from face_alignment.detection.sfd.net_s3fd import s3fd

        state = read_weights(path, "an S3FD state dict", _fix(S3FD_COMPONENT))
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} is not an S3FD state dict. {_fix(S3FD_COMPONENT)}")
        load_strict(s3fd(), state, path, "S3FD face detector", _fix(S3FD_COMPONENT))

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """Landmarks of the first face S3FD reports (what EAT's ``align_folder`` keeps: ``pred_points[0]``); the
        other faces are not run through the FAN (their landmarks would be discarded)."""
        rgb = np.ascontiguousarray(rgb)
        faces = self._fa.face_detector.detect_from_image(rgb.copy())
        if len(faces) == 0:
            return None
        found = self._fa.get_landmarks_from_image(rgb, detected_faces=faces[:1])
        if not found:
            return None
        return np.asarray(found[0], dtype=np.float64)[:, :2]
