"""Random-weight metric models in the real on-disk formats, for offline end-to-end tests of the evaluation.

:func:`write_tiny_eval_models` writes into ``<root>/eval/`` the three files the registry expects, each with the
real architecture's key names and shapes (the loaders check them strictly), so ``scripts/evaluate.py`` runs
through the same code as with the released weights:

- ``syncnet_v2.model``: a pickled state dict of :class:`~emocast.scoring.syncnet.SyncNet` without BatchNorm
  ``num_batches_tracked`` counters (like the 2017 file), about 55 MB;
- ``pt_inception-2015-12-05-6726825d.pth``: the FID Inception state dict (pytorch-fid layout), about 96 MB;
- ``emotion_fan_mead.pth``: ``{"epoch", "state_dict" (keys prefixed ``module.``), "accuracy", "name"}`` like
  EAT's Emotion-FAN checkpoint, about 45 MB.

"Tiny" refers to the compute (random weights, seeded), not the size: the architectures are fixed by the files.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

FILES = ("syncnet_v2.model", "pt_inception-2015-12-05-6726825d.pth", "emotion_fan_mead.pth")


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Seeded weights; BatchNorm statistics near identity so activations stay finite and input-dependent."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(1.0 + 0.1 * torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(0.01 * torch.randn(t.shape, generator=g))
            elif t.dim() == 1:  # BatchNorm weight
                t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=g))
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)


def write_tiny_syncnet(path, seed: int = 0) -> Path:
    from ..scoring.syncnet import SyncNet

    model = SyncNet()
    _randomise(model, seed)
    state = OrderedDict((k, v.clone()) for k, v in model.state_dict().items()
                        if not k.endswith("num_batches_tracked"))
    torch.save(state, path)
    return Path(path)


def write_tiny_inception(path, seed: int = 1) -> Path:
    from ..evaluation.inception import FIDInception

    model = FIDInception()
    _randomise(model, seed)
    torch.save(OrderedDict((k, v.clone()) for k, v in model.state_dict().items()), path)
    return Path(path)


def write_tiny_emotion_fan(path, seed: int = 2) -> Path:
    from ..scoring.emotion_fan import FrameAttentionNet

    model = FrameAttentionNet()
    _randomise(model, seed)
    state = OrderedDict(("module." + k, v.clone()) for k, v in model.state_dict().items())
    torch.save({"epoch": 62, "state_dict": state, "accuracy": torch.tensor(84.3655), "name": "acc_testdata"}, path)
    return Path(path)


def write_tiny_eval_models(root, only=None) -> Path:
    """Write the metric models into ``<root>/eval/`` (``only``: subset of registry names ``syncnet``,
    ``inception_fid``, ``emotion_fan``, or any of :data:`EAT_FILES` / ``eat_face_templates``, which are written
    together by :func:`write_tiny_eat_models`). Returns ``root``."""
    root = Path(root)
    folder = root / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    writers = {"syncnet": (write_tiny_syncnet, FILES[0]), "inception_fid": (write_tiny_inception, FILES[1]),
               "emotion_fan": (write_tiny_emotion_fan, FILES[2])}
    for name, (fn, fname) in writers.items():
        if only is None or name in only:
            fn(folder / fname)
    if only is None or set(only) & (set(EAT_FILES) | {"eat_face_templates"}):
        write_tiny_eat_models(root)
    return root


def write_test_video(path, frames, audio=None, fps: int = 25, sample_rate: int = 16000) -> Path:
    """Write ``frames`` ``(T, H, W, 3)`` uint8 RGB as H.264 (+ ``audio`` int16 mono, written whole, as AAC) with
    :class:`~emocast.media.video_writer.VideoWriter`."""
    import numpy as np

    from ..media.video_writer import VideoWriter

    wave = None if audio is None else np.asarray(audio, dtype=np.float32) / 32768.0
    with VideoWriter(path, fps=fps, preset="ultrafast", audio_array=wave, audio_rate=sample_rate,
                     fit_audio=False) as writer:
        writer.write(np.asarray(frames, dtype=np.uint8))
    return Path(path)


# ---- EAT's protocol: stand-ins for the registry components of scripts/evaluate.py --protocol eat ----------------
EAT_FILES = {"inception_imagenet": "inception_v3_google-0cc3c7bd.pth",
             "face_alignment_fan": "face_alignment/2DFAN4-11f355bf06.pth.tar",
             "face_alignment_s3fd": "face_alignment/s3fd-619a316812.pth",
             "dlib_shape_predictor_5": "dlib/shape_predictor_5_face_landmarks.dat",
             "dlib_shape_predictor_68": "dlib/shape_predictor_68_face_landmarks.dat"}


def write_tiny_imagenet_inception(path, seed: int = 3) -> Path:
    """torchvision's Inception-v3 state dict layout (aux head included, no BatchNorm counters), random weights."""
    from ..evaluation.inception_imagenet import ImageNetInception

    model = ImageNetInception()
    _randomise(model, seed)
    torch.save(OrderedDict((k, v.clone()) for k, v in model.state_dict().items()
                           if not k.endswith("num_batches_tracked")), path)
    return Path(path)


def write_tiny_fan(path, seed: int = 4, stacks: int = 1) -> Path:
    """A face-alignment 2D-FAN state dict (``FAN(stacks)``; the released file has 4 stacks), random weights."""
    from face_alignment.models import FAN

    model = FAN(stacks)
    _randomise(model, seed)
    torch.save(OrderedDict((k, v.clone()) for k, v in model.state_dict().items()), path)
    return Path(path)


def write_tiny_s3fd(path, seed: int = 5) -> Path:
    """An S3FD state dict with random features and constant heads: every position of the stride-16 head is a
    face (score ~0.99, box = its 64x64 anchor), so detection always succeeds on images of 64 px and more."""
    from face_alignment.detection.sfd.net_s3fd import s3fd

    model = s3fd()
    _randomise(model, seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if "_mbox_" in name:
                t.zero_()
        model.state_dict()["conv5_3_norm_mbox_conf.bias"][1] = 5.0
    torch.save(OrderedDict((k, v.clone()) for k, v in model.state_dict().items()), path)
    return Path(path)


def mean_face_68() -> "np.ndarray":
    """A plausible 68-point (iBUG order) face layout in a unit face box: jaw, brows, nose, open eyes, lips."""
    import numpy as np

    t = np.linspace(0, 1, 17)
    jaw = np.stack([0.5 - 0.45 * np.cos(np.pi * t), 0.3 + 0.65 * np.sin(np.pi * t)], 1)
    brows = [np.stack([np.linspace(a, b, 5), np.full(5, 0.22)], 1) for a, b in ((0.15, 0.42), (0.58, 0.85))]
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.3, 0.55, 4)], 1)
    nostrils = np.stack([np.linspace(0.4, 0.6, 5), np.full(5, 0.6)], 1)

    def ring(cx, cy, rx, ry, n, start=np.pi):
        a = start + np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)

    eyes = [ring(cx, 0.37, 0.08, 0.04, 6) for cx in (0.3, 0.7)]
    return np.concatenate([jaw, *brows, bridge, nostrils, *eyes, ring(0.5, 0.78, 0.18, 0.07, 12),
                           ring(0.5, 0.78, 0.12, 0.03, 8)])


FIVE_POINTS = ((0.78, 0.37), (0.62, 0.37), (0.22, 0.37), (0.38, 0.37), (0.5, 0.6))  # eye corners, nose base


def write_tiny_shape_predictor(path, num_parts: int, workdir) -> Path:
    """A real dlib shape predictor (``dlib.train_shape_predictor``, dlib's own file format) trained in a second
    on the test photos, with parts laid out in each HOG face box as :func:`mean_face_68` / :data:`FIVE_POINTS`."""
    import cv2
    import dlib
    import numpy as np

    from .synthetic import face_image

    layout = mean_face_68() if num_parts == 68 else np.asarray(FIVE_POINTS)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    detector = dlib.get_frontal_face_detector()
    items = []
    for k, name in enumerate(("astronaut", "hanks")):
        image = face_image(name)[0]
        for j, img in enumerate((image, image[:, ::-1], cv2.resize(image, None, fx=0.75, fy=0.75))):
            img = np.ascontiguousarray(img)
            file = workdir / f"face{k}{j}.png"
            cv2.imwrite(str(file), img[..., ::-1])
            for r in detector(img, 1):
                w, h = r.right() - r.left(), r.bottom() - r.top()
                parts = "".join(f"<part name='{i}' x='{int(r.left() + x * w)}' y='{int(r.top() + y * h)}'/>"
                                for i, (x, y) in enumerate(layout))
                items.append(f"<image file='{file.name}'><box top='{r.top()}' left='{r.left()}' width='{w}' "
                             f"height='{h}'>{parts}</box></image>")
    xml = workdir / f"train{num_parts}.xml"
    xml.write_text(f"<dataset><images>{''.join(items)}</images></dataset>")
    opts = dlib.shape_predictor_training_options()
    opts.tree_depth, opts.cascade_depth, opts.num_trees_per_cascade_level = 2, 2, 4
    opts.oversampling_amount, opts.feature_pool_size, opts.num_test_splits, opts.num_threads = 2, 50, 4, 1
    dlib.train_shape_predictor(str(xml), str(path), opts)
    return Path(path)


def write_tiny_eat_models(root) -> Path:
    """The stand-ins of ``--protocol eat``'s components in ``<root>/eval/`` (registry layout): torchvision's
    Inception-v3, face-alignment's 2D-FAN and S3FD, dlib's 5- and 68-point predictors, EAT's two landmark
    templates. The optional dlib CNN detector has no stand-in (dlib cannot write one from Python)."""
    import tempfile

    import numpy as np

    root = Path(root)
    folder = root / "eval"
    for sub in ("face_alignment", "dlib", "eat"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    write_tiny_imagenet_inception(folder / EAT_FILES["inception_imagenet"])
    write_tiny_fan(folder / EAT_FILES["face_alignment_fan"])
    write_tiny_s3fd(folder / EAT_FILES["face_alignment_s3fd"])
    with tempfile.TemporaryDirectory() as tmp:
        write_tiny_shape_predictor(folder / EAT_FILES["dlib_shape_predictor_5"], 5, tmp)
        write_tiny_shape_predictor(folder / EAT_FILES["dlib_shape_predictor_68"], 68, tmp)
    base = mean_face_68() * 110 + 26  # a face of ~110 px in the 163 px ROI, like EAT's templates
    np.save(folder / "eat" / "base_68.npy", base)
    closed = base.copy()
    closed[[37, 38, 43, 44], 1] = closed[[41, 40, 47, 46], 1]  # eyelids together
    np.save(folder / "eat" / "base_68_close.npy", closed)
    return root
