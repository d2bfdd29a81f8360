"""dlib face crops of EAT's evaluation: the Emotion-FAN chips (Acc_emo) and the 128x128 aligned crops (FID).

**Emotion-FAN chips** follow Emotion-FAN's ``data/face_alignment_code/lib/face_align_cuda.py`` (``face_alignment``),
which EAT's ``code/test_emotion_acc.py`` runs on every frame (``_acc_test_frame2face.py``); EAT's repository ships
the same file, byte for byte (``code/face_alignment_code/lib/face_align_cuda.py``, git blob ``4d159380``, as are
its ``shape_predictor_5_face_landmarks.dat`` and ``mmod_human_face_detector.dat``):

- the detector cascade (:func:`detect_cascade`): dlib's HOG frontal detector (upsampled once); if it finds nothing,
  the CNN (MMOD) detector; then the CNN again on the image after :func:`linear_equal`, then after
  :func:`clahe_color` (applied to the linearly equalised image), then after :func:`hist_equal_color` (applied to
  that); a frame where all five find nothing is dropped. The equalisations return their result in BGR order from
  an RGB input (``cv2.cvtColor(..., COLOR_YCR_CB2BGR)``), and the chip is cut from the image the successful
  detector saw: both as in the reference;
- the chip: the 5-point shape predictor on the first detection, ``dlib.get_face_chip(img, shape, size=224,
  padding=0.25)``.

**FID crops** follow EAT's ``code/utils_crop.py`` ``crop_and_align``, which ``preprocess.py`` (``align_crop_vids``)
imports and calls with ``crop_image(image, bool_no_crop=True)`` (``utils_crop_fid.py``, which first cuts a square
ROI around the box and resizes it to 163x163, is used only by ``test_fid.py --bool_crop_and_align``, which EAT's
scripts never pass): HOG on ``cv2.COLOR_BGR2GRAY`` of the frame as given (EAT passes RGB frames read by imageio, so
red and blue swap roles in the grey image; kept), the 68-point predictor on the first detection (integer pixel
coordinates of the whole frame), a template chosen by the eyelids (``base_68.npy`` when the eyes are open,
``base_68_close.npy`` when not: :func:`pick_template`; in EAT's public repository the two files are identical),
a similarity transform from the template's points 27-44 onto the landmarks, ``skimage.transform.warp`` of the
whole frame to 163x163 and the crop ``[1:129, 1:129]`` (:func:`align_128`).

Model files are registry components (``dlib_shape_predictor_5``, ``dlib_cnn_face_detector``,
``dlib_shape_predictor_68``, ``eat_face_templates``); the HOG detector is built into dlib.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import registry
from ..errors import CheckpointError, EmoCASTError

CHIP_SIZE, CHIP_PADDING = 224, 0.25
ROI_SIZE, CROP_128 = 163, 128  # warp output size, crop size
CASCADE = ("hog", "cnn", "cnn+linear", "cnn+clahe", "cnn+hist")  # which stage found the face


def import_dlib():
    try:
        import dlib
    except ImportError as err:
        raise EmoCASTError(f"EAT's face crops need dlib ({err}). Fix: `bash scripts/install.sh` installs it "
                           "(dlib-bin, requirements/eval.txt).") from None
    return dlib


# ------------------------------------------------------------------------------------------------ equalisation
def linear_equal(img: np.ndarray) -> np.ndarray:
    """Stretch the range of channel 0's histogram to 0..255, the same table applied to every channel. The
    histogram is ``cv2.calcHist(..., [256], [0.0, 255.0])`` as in the reference: its range ends before 255, so
    pixels of value 255 are not counted (a channel reaching 255 is stretched from its largest value below 255)."""
    import cv2

    hist = np.bincount(img[..., 0].reshape(-1), minlength=256)
    hist[255] = 0
    used = np.flatnonzero(hist)
    lo, hi = (int(used[0]), int(used[-1])) if len(used) else (0, 255)
    i = np.arange(256, dtype=np.float64)
    if hi == lo:  # a flat channel (the reference divides by zero here): keep the image
        return img.copy()
    lut = np.where(i < lo, 0, np.where(i > hi, 255, np.floor(255.0 * (i - lo) / (hi - lo) + 0.5)))
    return cv2.LUT(img, lut.astype(np.uint8))


def _equalise_luma(img: np.ndarray, equalise: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    import cv2

    ycrcb = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 0] = equalise(np.ascontiguousarray(ycrcb[..., 0]))
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)  # BGR out of an RGB input, as the reference


def clahe_color(img: np.ndarray) -> np.ndarray:
    """CLAHE (clip 2.5, 8x8 tiles) on the luma of an RGB image; the result is in BGR order."""
    import cv2

    return _equalise_luma(img, cv2.createCLAHE(clipLimit=2.5, tileGridSize=(8, 8)).apply)


def hist_equal_color(img: np.ndarray) -> np.ndarray:
    """Histogram equalisation of the luma of an RGB image; the result is in BGR order."""
    import cv2

    return _equalise_luma(img, cv2.equalizeHist)


def detect_cascade(rgb: np.ndarray, hog: Callable, cnn: Callable | None) -> tuple[Sequence, np.ndarray, str | None]:
    """``(detections, image they were found in, stage name or None)``; ``hog(img)`` / ``cnn(img)`` return lists of
    rectangles (``cnn=None``: the CNN detector is not installed, the cascade stops after HOG)."""
    dets = hog(rgb)
    if len(dets):
        return dets, rgb, CASCADE[0]
    if cnn is None:
        return [], rgb, None
    img = rgb
    for stage, step in zip(CASCADE[1:], (None, linear_equal, clahe_color, hist_equal_color)):
        if step is not None:
            img = step(img)
        dets = cnn(img)
        if len(dets):
            return dets, img, stage
    return [], img, None


# ------------------------------------------------------------------------------------------------ models
def _path(name: str, root, index: int = 0) -> Path:
    return registry.COMPONENTS[name].file_paths(root)[index]


def _load_dat(loader, path: Path, what: str, name: str):
    try:
        return loader(str(path))
    except RuntimeError as err:
        raise CheckpointError(f"{path} is not a dlib {what} ({str(err).splitlines()[0] if str(err) else err}). "
                              f"Fix: {registry.fix_command(name)}") from None


class EmotionChips:
    """``__call__(rgb) -> (224x224 RGB chip or None, cascade stage)``: Emotion-FAN's face chips."""

    def __init__(self, models_root=None):
        dlib = import_dlib()
        registry.require("dlib_shape_predictor_5", models_root)
        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._sp = _load_dat(dlib.shape_predictor, _path("dlib_shape_predictor_5", models_root),
                             "shape predictor", "dlib_shape_predictor_5")
        self.has_cnn = registry.status("dlib_cnn_face_detector", models_root)[0] == "present"
        self._cnn = _load_dat(dlib.cnn_face_detection_model_v1, _path("dlib_cnn_face_detector", models_root),
                              "CNN face detector", "dlib_cnn_face_detector") if self.has_cnn else None

    def _cnn_rects(self, img):
        rects = self._dlib.rectangles()
        rects.extend([d.rect for d in self._cnn(img, 1)])
        return rects

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        rgb = np.ascontiguousarray(rgb)
        dets, img, stage = detect_cascade(rgb, lambda im: self._hog(im, 1),
                                          self._cnn_rects if self._cnn is not None else None)
        if stage is None:
            return None, None
        shape = self._sp(img, dets[0])
        return np.asarray(self._dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING)), stage


# ------------------------------------------------------------------------------------------------ FID crops
def pick_template(landmarks: np.ndarray, open_eyes: np.ndarray, closed_eyes: np.ndarray) -> np.ndarray:
    """``base_68`` when ``sum(y[37:39] - y[40:42]) < -9`` (eyelids apart), else ``base_68_close``."""
    lm = np.asarray(landmarks)
    return open_eyes if np.sum(lm[37:39, 1] - lm[40:42, 1]) < -9 else closed_eyes


def align_128(frame: np.ndarray, landmarks: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The 128x128 aligned crop of ``frame`` (its 68 landmarks in frame pixels): similarity from the template's
    points 27-44 onto the landmarks' (skimage), ``warp`` of the whole frame (bilinear, black outside) to 163x163,
    ``uint8(x * 255)``, rows/columns 1..128."""
    from skimage import transform as tf

    tform = tf.SimilarityTransform.from_estimate(np.float32(template[27:45]), np.float32(landmarks[27:45]))
    dst = tf.warp(frame, tform, output_shape=(ROI_SIZE, ROI_SIZE))
    return np.array(dst * 255, dtype=np.uint8)[1:CROP_128 + 1, 1:CROP_128 + 1]


class FidCrops:
    """``__call__(frame) -> 128x128 crop or None``: EAT's ``utils_crop.crop_and_align`` (whole frame)."""

    def __init__(self, models_root=None):
        dlib = import_dlib()
        registry.require(["dlib_shape_predictor_68", "eat_face_templates"], models_root)
        self._hog = dlib.get_frontal_face_detector()
        self._sp = _load_dat(dlib.shape_predictor, _path("dlib_shape_predictor_68", models_root),
                             "shape predictor", "dlib_shape_predictor_68")
        self.templates = [self._template(_path("eat_face_templates", models_root, i)) for i in (0, 1)]

    @staticmethod
    def _template(path: Path) -> np.ndarray:
        try:
            t = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"cannot read {path} as a landmark template ({err}). "
                                  f"Fix: {registry.fix_command('eat_face_templates')}") from None
        if t.ndim != 2 or t.shape[0] < 45 or t.shape[1] != 2:
            raise CheckpointError(f"{path} is not a 68-point landmark template (shape {t.shape}, expected (68, 2))")
        return t

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        import cv2

        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGR2GRAY)
        rects = self._hog(gray, 1)
        if len(rects) == 0:
            return None
        shape = self._sp(gray, rects[0])
        lm = np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)])
        return align_128(frame, lm, pick_template(lm, *self.templates))
