"""Tiny ONNX stand-ins for the insightface ``antelopev2`` pack (offline tests through the real loader).

:func:`write_tiny_face_models` writes the five files the registry expects in ``face_analysis/models``
(``scrfd_10g_bnkps.onnx``, ``glintr100.onnx``, ``2d106det.onnx``, ``1k3d68.onnx``, ``genderage.onnx``).
insightface's own ``FaceAnalysis`` / ``model_zoo`` routes them by their graph signature exactly as it routes
the real pack:

- **detector** (``scrfd_10g_bnkps.onnx``): SCRFD layout with 9 outputs (scores, box distances and 5 keypoints
  for strides 8/16/32, 2 anchors per cell) and a fixed ``1x3x640x640`` input. It is not a neural network: every
  face is a constant box placed on one stride-32 anchor (built with ``onnx.helper``), so detection is
  deterministic. The boxes are given in the detector's 640x640 canvas (insightface scales the image so that
  its longer side is 640 and pads right/bottom). A face is reported only when the image contains a pixel
  brighter than about 64/255 (score = sigmoid(20 * (max(normalised input) + 0.5))): an all-dark image gives
  "no face", which lets tests exercise that path through the real loader.
- **recognition** (``glintr100.onnx``): ArcFace layout, input ``Nx3x112x112`` -> ``(N, 512)``: 14x14 average
  pooling to 8x8, then a fixed random linear map (seeded). The embedding therefore depends on the aligned
  face crop (a different image gives a different embedding) and is not normalised, like the real model's.
- ``2d106det.onnx`` / ``1k3d68.onnx`` (192x192 input, 212 / 3309 outputs) and ``genderage.onnx`` (96x96 input,
  3 outputs): tiny global-pool + linear graphs so the pack is complete and routes; EmoCAST does not use them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

CANVAS = 640  # the detector input size (det_size 640)
STRIDES = (8, 16, 32)
ANCHORS = 2
DEFAULT_BOXES = ((224.0, 96.0, 416.0, 320.0),)  # one face, canvas coordinates (x1, y1, x2, y2)
OPSET = 17

DETECTOR = "scrfd_10g_bnkps.onnx"
RECOGNITION = "glintr100.onnx"
LANDMARK_2D = "2d106det.onnx"
LANDMARK_3D = "1k3d68.onnx"
GENDERAGE = "genderage.onnx"


def _helpers():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    return onnx, TensorProto, helper, numpy_helper


def _save(model, path: Path) -> Path:
    import onnx

    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _model(graph):
    _, _, helper, _ = _helpers()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="emocast-tiny")
    model.ir_version = 8
    return model


def _keypoints(box) -> np.ndarray:
    """Five plausible keypoints (eyes, nose, mouth corners) inside ``box``, shape (5, 2)."""
    x1, y1, x2, y2 = box
    rel = np.array([[0.35, 0.40], [0.65, 0.40], [0.50, 0.58], [0.38, 0.75], [0.62, 0.75]], dtype=np.float32)
    return np.stack([x1 + rel[:, 0] * (x2 - x1), y1 + rel[:, 1] * (y2 - y1)], axis=1)


def _detector(boxes: Sequence[Sequence[float]]):
    onnx, TensorProto, helper, numpy_helper = _helpers()
    stride = STRIDES[-1]
    cells = CANVAS // stride
    n = cells * cells * ANCHORS
    scores = np.zeros((n, 1), np.float32)
    dists = np.zeros((n, 4), np.float32)
    kps = np.zeros((n, 10), np.float32)
    used = set()
    for box in boxes:
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (0 <= x1 < x2 <= CANVAS and 0 <= y1 < y2 <= CANVAS):
            raise ValueError(f"tiny detector box {box} must lie inside the {CANVAS}x{CANVAS} canvas")
        col = min(cells - 1, int(round((x1 + x2) / 2 / stride)))
        row = min(cells - 1, int(round((y1 + y2) / 2 / stride)))
        idx = (row * cells + col) * ANCHORS
        while idx in used:
            idx += 1  # second anchor of the same cell
        used.add(idx)
        cx, cy = col * stride, row * stride
        scores[idx, 0] = 1.0
        dists[idx] = np.array([cx - x1, cy - y1, x2 - cx, y2 - cy], np.float32) / stride
        kps[idx] = ((_keypoints((x1, y1, x2, y2)) - np.array([cx, cy], np.float32)) / stride).reshape(-1)

    inits = [
        numpy_helper.from_array(scores, "face_scores"),
        numpy_helper.from_array(dists, "face_boxes"),
        numpy_helper.from_array(kps, "face_kps"),
        numpy_helper.from_array(np.array(20.0, np.float32), "gate_gain"),
        numpy_helper.from_array(np.array(0.5, np.float32), "gate_bias"),
    ]
    nodes = [
        helper.make_node("ReduceMax", ["input.1"], ["img_max"], name="gate_max", keepdims=0),
        helper.make_node("Add", ["img_max", "gate_bias"], ["gate_shift"], name="gate_shift"),
        helper.make_node("Mul", ["gate_shift", "gate_gain"], ["gate_logit"], name="gate_scale"),
        helper.make_node("Sigmoid", ["gate_logit"], ["gate"], name="gate"),
    ]
    out_names = {"score": [], "bbox": [], "kps": []}
    outputs = []
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for s in STRIDES:
            rows = (CANVAS // s) ** 2 * ANCHORS
            name = f"{kind}_{s}"
            if s == stride:
                src = {"score": "face_scores", "bbox": "face_boxes", "kps": "face_kps"}[kind]
                if kind == "score":
                    nodes.append(helper.make_node("Mul", [src, "gate"], [name], name=f"{name}_gated"))
                else:
                    nodes.append(helper.make_node("Identity", [src], [name], name=f"{name}_const"))
            else:
                shape_name = f"{name}_shape"
                inits.append(numpy_helper.from_array(np.array([rows, width], np.int64), shape_name))
                nodes.append(helper.make_node(
                    "ConstantOfShape", [shape_name], [name], name=f"{name}_zeros",
                    value=numpy_helper.from_array(np.zeros(1, np.float32))))
            out_names[kind].append(name)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, width]))
    graph = helper.make_graph(
        nodes, "tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, CANVAS, CANVAS])],
        outputs, initializer=inits)
    return _model(graph)


def _pool_linear(name: str, size: int, pool: int, out_dim: int, seed: int, scale: float):
    """input (N,3,size,size) -> AveragePool(pool) -> flatten -> fixed random linear -> (N, out_dim)."""
    onnx, TensorProto, helper, numpy_helper = _helpers()
    cells = size // pool
    feat = 3 * cells * cells
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((feat, out_dim)) * scale / np.sqrt(feat)).astype(np.float32)
    bias = np.zeros(out_dim, np.float32)
    nodes = [
        helper.make_node("AveragePool", ["data"], ["pooled"], name="pool", kernel_shape=[pool, pool],
                         strides=[pool, pool]),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_weight", "fc_bias"], ["fc1"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", out_dim])],
        initializer=[numpy_helper.from_array(weight, "fc_weight"), numpy_helper.from_array(bias, "fc_bias")])
    return _model(graph)


def write_tiny_face_models(directory, boxes: Sequence[Sequence[float]] = DEFAULT_BOXES) -> list[Path]:
    """Write the five tiny pack files into ``directory`` (the registry's ``<root>/face_analysis/models``).

    ``boxes``: the faces the detector reports, ``(x1, y1, x2, y2)`` in the 640x640 detector canvas (an image
    of size WxH is scaled by ``640 / max(W, H)`` into the top-left corner of the canvas). Returns the paths.
    """
    d = Path(directory)
    return [
        _save(_detector(boxes), d / DETECTOR),
        _save(_pool_linear("tiny_arcface", 112, 14, 512, seed=0, scale=10.0), d / RECOGNITION),
        _save(_pool_linear("tiny_2d106", 192, 24, 212, seed=1, scale=0.1), d / LANDMARK_2D),
        _save(_pool_linear("tiny_3d68", 192, 24, 3309, seed=2, scale=0.1), d / LANDMARK_3D),
        _save(_pool_linear("tiny_genderage", 96, 12, 3, seed=3, scale=0.1), d / GENDERAGE),
    ]


def canvas_to_image_box(box, image_hw) -> np.ndarray:
    """Where a canvas box lands in an image of size ``image_hw`` (what insightface will report)."""
    h, w = image_hw
    ratio = h / w
    if ratio > 1.0:
        new_h = CANVAS
        new_w = int(new_h / ratio)
    else:
        new_w = CANVAS
        new_h = int(new_w * ratio)
    scale = new_h / h
    return np.asarray(box, np.float32) / scale
