"""68-point face landmarks with the ``face-alignment`` package (Bulat & Tzimiropoulos' 2D-FAN + the S3FD face
detector), as EAT's evaluation gets them for the PC-AVS crop: ``_fast_align.py`` builds
``face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device)`` with the default settings and
``scripts/align_68.py`` calls ``get_landmarks_from_directory``.

Which face-alignment: ``LandmarksType.TWO_D`` exists from 1.3.6 on (``_2D`` before), EAT's evaluation code is from
October 2023 and its README says ``pip install face-alignment``, which then (and until 1.5.0 in 2026) installed
1.4.1; 1.3.6 to 1.4.1 compute the same, so :func:`fan_landmarks` computes what face-alignment 1.4.1's
``get_landmarks_from_image`` computes for one face, which differs from 1.5.0's in two ways: no flipped-input averaging (``flip_input=False`` was
the default up to 1.4.x; 1.5.0 turned it on), and the crop centre as a float32 torch tensor (1.5.0: float64 numpy;
the landmarks are whole pixels, ``transform_np`` truncates, so the precision can move a landmark by one pixel).
The crop (``face_alignment.utils.crop``), the heatmap decoding (``get_preds_fromhm``) and the S3FD detector are the
same code in both versions and are used from the installed package.

The package downloads its weights from the web at run time; here both files are registry components
(``face_alignment_fan``, ``face_alignment_s3fd``, ``python scripts/download_models.py --group eval``) read from
the models root with ``torch.load(weights_only=True)``. The number of hourglass stacks is read from the file
(the released 2DFAN-4 has 4; the test kit's stand-in has 1). Version 1.4.1 loaded the 2D-FAN as a TorchScript
export (``2DFAN4-cd938726ad.zip`` for PyTorch versions other than 1.5/1.6); 1.5.0's state dict
``2DFAN4-11f355bf06.pth.tar`` is the file face-alignment published for the same network before its TorchScript
exports; that the weights are identical is not checked here.
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


CENTER_Y_OFFSET, REFERENCE_SCALE = 0.12, 195  # face-alignment's crop around an S3FD box


def fan_landmarks(net, image: np.ndarray, box, device="cpu") -> np.ndarray:
    """``(68, 2)`` float32 landmarks (whole pixels) of the face in ``box`` (S3FD's ``x1, y1, x2, y2[, score]``):
    face-alignment 1.4.1's ``get_landmarks_from_image`` for one detection with ``flip_input=False``."""
    import torch
    from face_alignment.utils import crop, get_preds_fromhm

    d = box
    center = torch.tensor([d[2] - (d[2] - d[0]) / 2.0, d[3] - (d[3] - d[1]) / 2.0])  # float32, as 1.4.1
    center[1] = center[1] - (d[3] - d[1]) * CENTER_Y_OFFSET
    scale = (d[2] - d[0] + d[3] - d[1]) / REFERENCE_SCALE
    inp = torch.from_numpy(crop(image, center, scale).transpose((2, 0, 1))).float()
    inp = inp.to(device).div_(255.0).unsqueeze_(0)
    with torch.no_grad():
        out = net(inp)
    if isinstance(out, (list, tuple)):  # the state-dict FAN returns every stack's heatmaps; 1.4.1's export the last
        out = out[-1]
    _, pts_img, _ = get_preds_fromhm(out.detach().to(device="cpu", dtype=torch.float32).numpy(), center.numpy(),
                                     scale)
    return np.asarray(pts_img, dtype=np.float32).reshape(68, 2)


class Landmarks68:
    """``__call__(rgb) -> (68, 2) float32 landmarks of the first detected face, or None`` (face-alignment 1.4.1's
    computation, :func:`fan_landmarks`, with the registry's weights)."""

    def __init__(self, models_root=None, device="cpu"):
        _import()
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        registry.require([FAN_COMPONENT, S3FD_COMPONENT], models_root)
        fan_path = registry.COMPONENTS[FAN_COMPONENT].file_paths(models_root)[0]
        s3fd_path = registry.COMPONENTS[S3FD_COMPONENT].file_paths(models_root)[0]
        self._check_s3fd(s3fd_path)
        self.device = str(device)
        self._fan = load_fan(fan_path, self.device)
        self._detector = SFDDetector(device=self.device, path_to_detector=str(s3fd_path))

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
        faces = self._detector.detect_from_image(rgb.copy())
        if len(faces) == 0:
            return None
        return fan_landmarks(self._fan, rgb, faces[0], self.device)
