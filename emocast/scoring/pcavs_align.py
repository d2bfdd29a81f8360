"""PC-AVS face alignment, the crop EAT scores LSE-D / LSE-C on.

Follows EAT's evaluation bundle, ``code/scripts/align_68.py`` (``get_eyes_mouths``, ``get_affine``,
``affine_align_3landmarks``, ``get_mouth_bias``, ``affine_align_img``, driven by ``align_folder``):

1. per frame, three points from the 68 landmarks (iBUG order): the means of the right eye (36-41), the left eye
   (42-47) and the inner lips (60-67) (:func:`eyes_mouth`);
2. ONE similarity transform per video, from the video-average of those points to the fixed points
   :data:`TARGET` of a 224x224 crop (least squares, scikit-image's ``SimilarityTransform``) (:func:`video_matrix`);
3. per frame a translation that moves the transformed mouth point to ``(112, 120)``, smoothed as
   ``0.2 * previous + 0.8 * current`` (:func:`mouth_shifts`);
4. ``cv2.warpAffine`` of the frame with that matrix + translation into 224x224, black outside (:func:`align`).

The landmarks come from the ``face-alignment`` package (:mod:`emocast.scoring.landmarks68`). EAT visits the frames in
the order ``get_landmarks_from_directory`` returns them, which is ``glob.glob`` without sorting (face-alignment
1.4.1 ``FolderData``): the directory order of the file system (on ext4 a hash order of the names, seeded per file
system), so its smoothing runs over a shuffled sequence that differs between machines; we smooth in frame order.
PC-AVS's own ``align_68.py`` (Hangz-nju-cuhk/Talking-Face_PC-AVS) is the same computation, except that it fails a
frame with more than one face where EAT's keeps the first.
"""
from __future__ import annotations

import numpy as np

CROP = 224
#: where the right eye, left eye and mouth centres land in the 224x224 crop
TARGET = np.array([[87, 59], [137, 59], [112, 120]], dtype=np.float32)
MOUTH = np.array([112, 120], dtype=np.float64)
SMOOTH_PREVIOUS = 0.2  # weight of the previous frame's mouth shift


def eyes_mouth(landmarks: np.ndarray) -> np.ndarray:
    """``(68, 2)`` landmarks -> ``(3, 2)`` float64: right-eye, left-eye and inner-mouth centres. Each mean is taken
    in the landmarks' own precision, as the reference does (face-alignment's float32 landmarks give float32 means,
    stored in a float64 array)."""
    lm = np.asarray(landmarks)
    if not np.issubdtype(lm.dtype, np.floating):
        lm = lm.astype(np.float64)
    out = np.zeros((3, 2))
    out[0], out[1], out[2] = lm[36:42].mean(0), lm[42:48].mean(0), lm[60:68].mean(0)
    return out


def video_matrix(points: np.ndarray) -> np.ndarray:
    """The ``2x3`` similarity matrix taking the video-average ``(3, 2)`` points onto :data:`TARGET`."""
    from skimage.transform import SimilarityTransform

    tform = SimilarityTransform.from_estimate(np.asarray(points, dtype=np.float64), TARGET)
    return np.asarray(tform.params[0:2, :])


def mouth_shifts(points_per_frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(T, 3, 2)`` per-frame points -> ``(T, 2)`` smoothed translations putting each mouth at ``(112, 120)``."""
    pts = np.asarray(points_per_frame, dtype=np.float64)
    out = np.empty((len(pts), 2))
    for i, p in enumerate(pts):
        shift = MOUTH - (np.concatenate([p, np.ones((3, 1))], 1) @ matrix.T)[2]
        out[i] = shift if i == 0 else SMOOTH_PREVIOUS * out[i - 1] + (1 - SMOOTH_PREVIOUS) * shift
    return out


def align(frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` frames and their ``(T, 68, 2)`` landmarks -> ``(T, 224, 224, 3)`` PC-AVS crops
    (bilinear ``cv2.warpAffine``, black outside the frame). Channel order is kept."""
    import cv2

    points = np.stack([eyes_mouth(lm) for lm in landmarks])
    total = np.zeros((3, 2))
    for p in points:  # summed in frame order, then divided (the reference's float operations)
        total = total + p
    matrix = video_matrix(total / len(points))
    out = []
    for frame, shift in zip(frames, mouth_shifts(points, matrix)):
        m = matrix.copy()
        m[:, 2] += shift
        out.append(cv2.warpAffine(frame, m, (CROP, CROP), borderValue=0.0))
    return np.stack(out)
