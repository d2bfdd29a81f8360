"""torchvision's ImageNet Inception-v3 as EAT's FID uses it (``code/utils_fid.py``, ``PartialInceptionNetwork``).

EAT builds ``torchvision.models.inception_v3(pretrained=True)``: the standard Inception-v3 (torchvision's pools:
padding counted in the averages, an average pool in ``Mixed_7c``; an auxiliary head; 1000 classes) with
``transform_input=True``, which torchvision turns on for its pretrained weights. Our definition is
:class:`~emocast.evaluation.inception.FIDInception` with ``tf_pools=False`` plus the auxiliary head's
parameters, so torchvision's weight file ``inception_v3_google-0cc3c7bd.pth`` (registry component
``inception_imagenet``) loads strictly, without torchvision.

Features (:func:`eat_features`), as ``PartialInceptionNetwork.forward`` + ``preprocess_image``: each frame
``float32 / 255`` resized to 299x299 with ``cv2.resize`` (bilinear), ``x * 2 - 1``, torchvision's
``transform_input`` (:func:`transform_input`), the network up to ``Mixed_7c`` (a forward hook in EAT), global
average pool -> 2048. EAT feeds BGR frames (it flips the RGB frames imageio reads, calling it "BGR to RGB").
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import registry
from ..scoring.checkpoints import load_state_file
from .inception import INPUT_SIZE, BasicConv2d, FIDInception

WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
COMPONENT = "inception_imagenet"


class InceptionAux(nn.Module):
    """torchvision's auxiliary classifier: in the weight file, never run for features."""

    def __init__(self, cin: int = 768, num_classes: int = 1000):
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)


class ImageNetInception(FIDInception):
    def __init__(self):
        super().__init__(num_classes=1000, tf_pools=False)
        self.AuxLogits = InceptionAux()


def transform_input(x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``Inception3._transform_input``: inputs normalised for [-1, 1] re-normalised per channel with
    the ImageNet mean/std (channel order as given: EAT's are BGR)."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return torch.cat([x[:, c:c + 1] * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5 for c in range(3)], 1)


def eat_preprocess(frames: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, 299, 299)`` float32 in [0, 1] (``cv2.resize`` of ``x / 255``)."""
    import cv2

    out = [cv2.resize(np.asarray(f, np.float32) / 255, (INPUT_SIZE, INPUT_SIZE)) for f in frames]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def eat_features(model: ImageNetInception, frames_bgr: np.ndarray, batch_size: int = 5, device="cpu") -> np.ndarray:
    """``(N, H, W, 3)`` uint8 BGR frames -> ``(N, 2048)`` float64 pool features of EAT's FID."""
    out = []
    for s in range(0, len(frames_bgr), batch_size):
        x = eat_preprocess(frames_bgr[s:s + batch_size]).to(device)
        out.append(model.pool_features(transform_input(x * 2 - 1)).double().cpu().numpy())
    return np.concatenate(out, 0) if out else np.zeros((0, 2048))


def _fix() -> str:
    return f"Fetch torchvision's weights with `{registry.fix_command(COMPONENT)}`."


def load_imagenet_inception(models_root=None, device="cpu") -> ImageNetInception:
    path = registry.component_dir(COMPONENT, models_root) / WEIGHTS_FILE
    return load_state_file(ImageNetInception(), path, "torchvision ImageNet Inception-v3", _fix(), device)
