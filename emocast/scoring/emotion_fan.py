"""Emotion-FAN (Meng et al., ICIP 2019, frame attention network) as fine-tuned on MEAD for EAT's evaluation.

Network: ResNet-18 (``conv1``/``bn1``/``layer1..4``, BasicBlocks) -> 512-d per-frame features ``f_i``; the
self-attention weight ``alpha_i = sigmoid(alpha.0(f_i))``; the video feature ``v = sum(alpha_i f_i) / sum(alpha_i)``;
the relation-attention weight ``beta_i = sigmoid(beta.0([f_i, v]))``; the class scores
``pred_fc2( sum(alpha_i [f_i, v]) / sum(alpha_i beta_i) )`` over 8 classes, softmax. (The numerator weights by
``alpha`` only while the denominator uses ``alpha * beta``: that is what the released evaluation computes, so we
keep it.) ``pred_fc1`` (self-attention-only head) is in the checkpoint but unused. Dropout is inactive at eval.

Input: RGB face crops resized to 224x224, values in [0, 1] (``ToTensor()``, no mean/std normalisation).
Output class order of the MEAD head (EAT's ``cate2label['MEAD']``): Happy, Angry, Disgust, Fear, Sad, Neutral,
Surprised, Contempt -> :data:`FAN_CLASSES` in our label names.

Checkpoint: EAT's evaluation bundle (``code/model_training_name/self_relation-attention_61_84.3655``), a
``torch.save`` of ``{"epoch", "state_dict", "accuracy", "name"}`` whose ``state_dict`` keys carry DataParallel's
``module.`` prefix; save it as ``pretrained_models/eval/emotion_fan_mead.pth``. A plain state dict works too.
``fc.*`` keys (the ImageNet/FER+ classifier of the backbone's pre-training) are ignored, as EAT's loader does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import registry
from ..errors import CheckpointError
from .checkpoints import load_strict, read_weights

WEIGHTS_FILE = "emotion_fan_mead.pth"
INPUT_SIZE = 224
#: output columns of the MEAD head, in our label names (emocast.labels.emotions.EMOTIONS)
FAN_CLASSES = ("happy", "angry", "disgusted", "fear", "sad", "neutral", "surprised", "contempt")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _layer(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


class FrameAttentionNet(nn.Module):
    """ResNet-18 frame encoder with self- and relation-attention heads (Emotion-FAN, ``self_relation-attention``)."""

    def __init__(self, num_classes: int = len(FAN_CLASSES)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 2)
        self.alpha = nn.Sequential(nn.Linear(512, 1), nn.Sigmoid())
        self.beta = nn.Sequential(nn.Linear(1024, 1), nn.Sigmoid())
        self.pred_fc1 = nn.Linear(512, num_classes)
        self.pred_fc2 = nn.Linear(1024, num_classes)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(K, 3, 224, 224)`` in [0, 1] -> ``(K, 512)``."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), kernel_size=3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def video_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Frame features ``(K, 512)`` of one video -> class scores ``(num_classes,)``."""
        alphas = self.alpha(feats)  # (K, 1)
        video = (feats * alphas).sum(0, keepdim=True) / alphas.sum(0, keepdim=True)  # (1, 512)
        cat = torch.cat([feats, video.expand_as(feats)], 1)  # (K, 1024)
        betas = self.beta(cat)
        pooled = (cat * alphas).sum(0) / (alphas * betas).sum(0)
        return self.pred_fc2(pooled)


def preprocess(frames_rgb: np.ndarray) -> torch.Tensor:
    """``(K, H, W, 3)`` uint8 RGB face crops -> ``(K, 3, 224, 224)`` in [0, 1] (bilinear resize when needed)."""
    x = torch.from_numpy(np.ascontiguousarray(frames_rgb)).permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x


def _fix() -> str:
    return ("Get the MEAD-finetuned Emotion-FAN from EAT's evaluation bundle (evaluation_eat, "
            "code/model_training_name/self_relation-attention_61_84.3655) and save it as "
            "pretrained_models/eval/emotion_fan_mead.pth (see docs/evaluation.md).")


def extract_state_dict(obj, path) -> dict[str, torch.Tensor]:
    """The network's weights from an Emotion-FAN checkpoint: ``state_dict`` entry, ``module.`` stripped, no ``fc.*``."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not an Emotion-FAN checkpoint (expected a dict with 'state_dict' or a "
                              f"state dict of tensors). {_fix()}")
    out = {}
    for k, v in obj.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k.startswith("fc."):
            continue
        out[k] = v
    return out


class EmotionFAN:
    """The Acc_emo classifier: video-level and per-frame class probabilities over :data:`FAN_CLASSES`."""

    classes = FAN_CLASSES

    def __init__(self, models_root=None, device="cpu", path=None, batch_size: int = 32):
        if path is None:
            path = Path(registry.component_dir("emotion_fan", models_root)) / WEIGHTS_FILE
        self.device = torch.device(device)
        self.batch_size = batch_size
        state = extract_state_dict(read_weights(path, "an Emotion-FAN checkpoint", _fix()), path)
        net = FrameAttentionNet()
        load_strict(net, state, path, "Emotion-FAN (MEAD)", _fix())
        self.net = net.eval().to(self.device)

    @torch.no_grad()
    def _features(self, frames_rgb: np.ndarray) -> torch.Tensor:
        x = preprocess(frames_rgb)
        return torch.cat([self.net.frame_features(x[s:s + self.batch_size].to(self.device))
                          for s in range(0, len(x), self.batch_size)]).float()

    @torch.no_grad()
    def predict_video(self, frames_rgb: np.ndarray) -> np.ndarray:
        """Video-level probabilities ``(8,)`` from all given face crops (the Acc_emo protocol)."""
        if len(frames_rgb) == 0:
            raise ValueError("no frames")
        return F.softmax(self.net.video_logits(self._features(frames_rgb)), 0).cpu().numpy()

    @torch.no_grad()
    def predict_frames(self, frames_rgb: np.ndarray) -> np.ndarray:
        """Per-frame probabilities ``(K, 8)``: each frame classified as a one-frame video."""
        feats = self._features(frames_rgb)
        logits = torch.stack([self.net.video_logits(f[None]) for f in feats])
        return F.softmax(logits, 1).cpu().numpy()
