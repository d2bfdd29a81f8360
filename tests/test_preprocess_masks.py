"""Landmarks on real photos, face/lip boxes (spec §7.4) and the soft / per-level / FaceLocator masks (§7.5-7.7)."""
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import write_face_landmarker_task
from emocast.errors import InputError
from emocast.media.mediapipe_faces import FACE_OVAL_IDS, LIP_IDS
from emocast.preprocess.landmarks import Landmarker
from emocast.preprocess.masks import (blur_mask, expand_box, face_box, face_region, hard_mask, level_masks,
                                      level_sizes, lip_box, soft_masks, union_masks)


def _astronaut():
    import skimage.data

    return skimage.data.astronaut()


def _hanks():
    import insightface

    path = Path(insightface.__file__).parent / "data" / "images" / "Tom_Hanks_54745.png"
    return cv2.imread(str(path))[:, :, ::-1].copy()


@pytest.fixture(scope="module")
def landmarker():
    return Landmarker(models_root="/nonexistent-models-root")  # no .task file -> bundled face mesh


@pytest.fixture(scope="module")
def astronaut_landmarks(landmarker):
    return landmarker.landmarks(_astronaut())


def test_landmark_id_sets_match_mediapipe():
    from mediapipe.python.solutions import face_mesh_connections as c

    assert len(FACE_OVAL_IDS) == 36 and len(LIP_IDS) == 20
    assert set(FACE_OVAL_IDS) == {i for e in c.FACEMESH_FACE_OVAL for i in e}
    lips = {i for e in c.FACEMESH_LIPS for i in e}
    assert set(LIP_IDS) < lips and len(lips) == 40  # the outer ring of the 40 lip points


def test_landmarks_found_on_real_photos(landmarker, astronaut_landmarks):
    assert landmarker.backend == "face_mesh"
    lm = astronaut_landmarks
    assert lm.shape == (478, 2) and lm.dtype == np.float64  # p.x * w in float64, as the release
    # the astronaut's face is at about x 177..272, y 66..177 (Haar cascade / mediapipe detector, environment.md)
    fb = face_box(lm, (512, 512), 1.0)
    assert 165 < fb[0] < 190 and 260 < fb[2] < 285 and 55 < fb[1] < 85 and 165 < fb[3] < 190
    hanks = landmarker.landmarks(_hanks())
    assert hanks.shape == (478, 2)
    # a tight 112x112 crop: the mesh may run past the chin, but it is centred on the image
    assert 30 < hanks[:, 0].mean() < 82 and 30 < hanks[:, 1].mean() < 82
    assert ((hanks >= 0) & (hanks <= 112)).all(axis=1).mean() > 0.9


def test_lip_box_inside_face_box_on_real_photos(landmarker, astronaut_landmarks):
    for img, lm in ((_astronaut(), astronaut_landmarks), (_hanks(), landmarker.landmarks(_hanks()))):
        hw = img.shape[:2]
        f, l = face_box(lm, hw), lip_box(lm, hw)
        assert f[0] <= l[0] < l[2] <= f[2] and f[1] <= l[1] < l[3] <= f[3]
        # the lip box sits in the lower half of the face box
        assert (l[1] + l[3]) / 2 > (f[1] + f[3]) / 2
        # expand ratios: the default face box (1.2) is larger than the tight one (1.0)
        tight = face_box(lm, hw, 1.0)
        assert (f[2] - f[0]) > (tight[2] - tight[0])


def test_no_face_raises_input_error(landmarker):
    import skimage.data

    with pytest.raises(InputError, match="no face landmarks in cat.png"):
        landmarker.landmarks(skimage.data.chelsea(), source="cat.png")


def test_several_faces_pick_the_one_near_the_box(landmarker):
    left = cv2.resize(_hanks(), (224, 224))
    right = cv2.resize(_astronaut()[40:220, 140:320], (224, 224))
    both = np.concatenate([left, right], axis=1)
    on_right = landmarker.landmarks(both, near_box=(260, 20, 420, 200))
    on_left = landmarker.landmarks(both, near_box=(20, 20, 200, 200))
    assert on_right[:, 0].mean() > 224 and on_left[:, 0].mean() < 224


def test_expand_box_rules():
    """The release's arithmetic: extremes rounded to whole pixels (half to even) first, centre = floor of the
    average, half side = floor(extent * ratio / 2), shift inside; all integers (spec §7.4)."""
    pts = np.array([[10, 20], [31, 40]], np.float32)
    # x: centre floor(20.5) = 20, half floor(21 * 1.2 / 2) = 12 -> (8, 32); y: centre 30, half 12 -> (18, 42)
    assert expand_box(pts, (100, 100), 1.2) == (8, 18, 32, 42)
    # the half side is floored: extent 5 -> centre 13, half 2 -> width 4 (unfloored: (10.5, 15.5) -> (10, 16))
    assert expand_box(np.array([[11, 0], [16, 1]]), (100, 100), 1.0)[::2] == (11, 15)
    # the extremes are rounded before expanding: [50.4, 70.6] -> [50, 71], centre 60, half 21
    assert expand_box(np.array([[50.4, 0], [70.6, 1]]), (100, 100), 2.0)[::2] == (39, 81)
    # ... half to even (np.round): 2.5 -> 2 (half-up would give 3 and the box (3, 9))
    assert expand_box(np.array([[2.5, 0], [9.0, 1]]), (100, 100), 1.0)[::2] == (2, 8)
    # crossing the left border: shifted right, size kept
    assert expand_box(np.array([[0, 50], [20, 60]]), (100, 100), 2.0)[::2] == (0, 40)
    # crossing the right border: centre 94, half 9 -> (85, 103) -> shifted to (82, 100)
    assert expand_box(np.array([[90, 50], [99, 60]]), (100, 100), 2.0)[::2] == (82, 100)
    # larger than the image: (-10, 110) -> (0, 120) -> (-20, 100) -> clipped to the image (documented choice)
    assert expand_box(np.array([[10, 10], [90, 20]]), (100, 100), 1.5)[::2] == (0, 100)
    # float landmarks as mediapipe gives them (x * w in float64)
    lm = np.array([[0.31640625, 0.5], [0.6171875, 0.75]]) * 512.0  # (162, 256) .. (316, 384)
    assert expand_box(lm, (512, 512), 1.2) == (147, 244, 331, 396)


def test_hard_mask_and_face_region():
    m = hard_mask((10, 20, 30, 60), (100, 80))
    assert m.shape == (100, 80) and m.dtype == np.uint8
    assert m[20:60, 10:30].min() == 255 and m.sum() == 255 * 40 * 20
    region = face_region((128, 128, 384, 384), (512, 512), 512)
    assert region.shape == (3, 512, 512) and region.dtype == np.float32
    assert region[:, 130:380, 130:380].min() == 1.0 and region[:, :120].max() == 0.0
    # resized from another resolution: bilinear softens the edge, values stay in [0, 1]
    small = face_region((32, 32, 96, 96), (128, 128), 512)
    assert 0.0 <= small.min() and small.max() == 1.0 and ((small > 0) & (small < 1)).any()


def test_blur_uses_opencv_auto_sigma():
    hard = hard_mask((20, 20, 40, 40), (64, 64))
    ours = blur_mask(hard, 51)
    ref = cv2.GaussianBlur(hard, (51, 51), 8.0)  # sigma = 0.3 * ((51 - 1) / 2 - 1) + 0.8 = 8.0 (spec §7.5)
    np.testing.assert_array_equal(ours, cv2.normalize(ref, None, 0, 255, cv2.NORM_MINMAX))
    assert ours.min() == 0 and ours.max() == 255


def test_blur_normalisation_rounds_to_nearest():
    """cv2.normalize (what the release calls) rounds the min-max stretch to the nearest integer, not down."""
    hard = hard_mask((50, 70, 130, 150), (200, 180))  # another resolution: cv2.resize (bilinear) to 64 first
    ours = blur_mask(hard, 31).astype(int)
    blurred = cv2.GaussianBlur(cv2.resize(hard, (64, 64), interpolation=cv2.INTER_LINEAR), (31, 31), 0)
    lo, hi = float(blurred.min()), float(blurred.max())
    exact = (blurred.astype(np.float64) - lo) * 255.0 / (hi - lo)
    assert np.abs(ours - exact).max() <= 0.5 + 1e-3
    up = (exact - np.floor(exact)) > 0.6
    assert up.sum() > 20 and (ours[up] == np.ceil(exact[up])).all()  # truncation would give floor here


def test_constant_masks_are_kept():
    """A mask covering the whole frame stays all 255 (cv2.normalize alone would give all zeros); empty stays 0."""
    full = blur_mask(np.full((40, 50), 255, np.uint8), 51)
    assert full.shape == (64, 64) and full.min() == 255
    assert blur_mask(np.zeros((40, 50), np.uint8), 31).max() == 0


def test_soft_mask_properties(astronaut_landmarks):
    hw = (512, 512)
    fb, lb = face_box(astronaut_landmarks, hw), lip_box(astronaut_landmarks, hw)
    soft = soft_masks(fb, lb, hw)
    face_blur = blur_mask(hard_mask(fb, hw), 51)
    lip_blur = blur_mask(hard_mask(lb, hw), 31)
    for m in (soft.full, soft.face, soft.lip):
        assert m.shape == (64, 64) and m.dtype == np.uint8
    # full = 1 - blurred face (computed in float and truncated, as the release): 255 - x or one less
    diff = 255 - face_blur.astype(int) - soft.full.astype(int)
    assert set(np.unique(diff)) <= {0, 1}
    np.testing.assert_array_equal(soft.full, ((1 - face_blur / 255.0) * 255).astype(np.uint8))
    # face = blurred face - blurred lip, saturating at 0
    np.testing.assert_array_equal(soft.face, np.clip(face_blur.astype(int) - lip_blur.astype(int), 0, 255))
    np.testing.assert_array_equal(soft.lip, lip_blur)
    # where things are: lip centre, face centre, background corner (64x64 = 512/8)
    lc = ((lb[1] + lb[3]) // 16, (lb[0] + lb[2]) // 16)
    fc = ((fb[1] + fb[3]) // 16, (fb[0] + fb[2]) // 16)
    assert soft.lip[lc] > 200 and soft.lip[0, 0] == 0 and soft.lip[63, 63] == 0
    assert soft.full[fc] < 30 and soft.full[63, 63] > 220
    assert soft.face[lc] < soft.face[fc[0] - 6, fc[1]]  # the lips are cut out of the face mask


def test_level_masks_shapes_and_row_major_order():
    m = np.zeros((64, 64), np.uint8)
    m[:16, :16] = 255  # top-left corner
    levels = level_masks(m, level_sizes(512))
    assert [x.shape for x in levels] == [(4096,), (1024,), (256,), (64,)]
    for x in levels:
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(levels[0], m.reshape(-1) / 255.0)  # 64 -> 64 is the identity
    l8 = levels[3].reshape(8, 8)
    assert l8[0, 0] == 1.0 and l8[7, 7] == 0.0
    assert levels[3][1] == l8[0, 1]  # row-major: the second token is row 0, column 1
    assert level_sizes(256) == (32, 16, 8, 4) and level_sizes(768) == (96, 48, 24, 12)


def test_level_masks_are_pillow_antialiased_bilinear():
    """Per-level masks = Pillow bilinear (torchvision's PIL Resize), which antialiases, not cv2.INTER_LINEAR."""
    from PIL import Image

    m = np.zeros((64, 64), np.uint8)
    m[::2, ::3] = 255
    m[20:40, 10:50] = 200
    levels = level_masks(m, (32, 16, 8))
    for side, got in zip((32, 16, 8), levels):
        ref = np.asarray(Image.fromarray(m).resize((side, side), Image.BILINEAR), np.float32) / 255.0
        np.testing.assert_array_equal(got, ref.reshape(-1))
        cv = cv2.resize(m, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        assert np.abs(got - cv.reshape(-1)).max() > 0.05


def test_soft_masks_levels_dict(astronaut_landmarks):
    hw = (512, 512)
    soft = soft_masks(face_box(astronaut_landmarks, hw), lip_box(astronaut_landmarks, hw), hw)
    levels = soft.levels(512)
    assert sorted(levels) == [8, 16, 32, 64]
    for side, (full, face, lip) in levels.items():
        assert full.shape == face.shape == lip.shape == (side * side,)


def test_union_masks_over_frames(astronaut_landmarks):
    hw = (512, 512)
    a = astronaut_landmarks
    b = a + np.array([30.0, 10.0], np.float32)  # the face moved right and down
    u = union_masks([a, b], hw)
    fa, fb = face_box(a, hw, 1.0), face_box(b, hw, 1.0)
    assert u.face_box == (min(fa[0], fb[0]), min(fa[1], fb[1]), max(fa[2], fb[2]), max(fa[3], fb[3]))
    assert u.face_hard.dtype == np.uint8 and set(np.unique(u.face_hard)) == {0, 255}
    single = union_masks([a], hw)
    assert single.soft.lip.shape == (64, 64)
    assert (u.soft.lip > 0).sum() > (single.soft.lip > 0).sum()  # the union covers more


def _synthetic_landmarks(face, lip):
    """(478, 2) landmarks whose face-oval / outer-lip points span the given (x0, y0, x1, y1) extents."""
    lm = np.zeros((478, 2))
    for ids, (x0, y0, x1, y1) in ((FACE_OVAL_IDS, face), (LIP_IDS, lip)):
        pts = np.array([[x0, y0], [x1, y1], [x0, y1], [x1, y0]], np.float64)
        lm[list(ids)] = pts[np.arange(len(ids)) % 4]
    return lm


def test_union_masks_fill_the_bounding_rectangle_and_exact_background():
    """Hallo's get_union_lip_mask fills the bounding box of the union, like the face (not the OR of the boxes);
    the training background mask is 255 - blurred face exactly (spec §9.3)."""
    hw = (128, 128)
    a = _synthetic_landmarks((20, 20, 80, 90), (35, 65, 55, 75))
    b = _synthetic_landmarks((40, 30, 100, 100), (60, 80, 80, 90))  # the lips moved: the two boxes are disjoint
    u = union_masks([a, b], hw)
    assert u.face_box == (20, 20, 100, 100)
    np.testing.assert_array_equal(u.face_hard, hard_mask((20, 20, 100, 100), hw))
    lip_rect = hard_mask((35, 65, 80, 90), hw)  # bounding box of (35, 65, 55, 75) and (60, 80, 80, 90)
    np.testing.assert_array_equal(u.soft.lip, blur_mask(lip_rect, 31))
    face_blur = blur_mask(u.face_hard, 51)
    np.testing.assert_array_equal(u.soft.full, 255 - face_blur)
    np.testing.assert_array_equal(u.soft.face, cv2.subtract(face_blur, u.soft.lip))
    assert (u.soft.full.astype(int) + face_blur == 255).all()  # not the inference's truncated (1 - x/255) * 255


def test_task_file_is_used_through_the_tasks_api(tmp_path):
    """The .task file goes through mediapipe's Tasks API (which needs import_mediapipe's protobuf shim on protobuf 6).
    The hand-made file holds the older landmark model, so only the plumbing is checked, not the positions."""
    write_face_landmarker_task(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        lm = Landmarker(tmp_path)
    assert lm.backend == "task"
    points = lm.landmarks(_astronaut())
    assert points.shape == (478, 2) and np.isfinite(points).all()
    assert Landmarker(tmp_path, prefer_task=False).backend == "face_mesh"


def test_unloadable_task_file_falls_back_with_warning(tmp_path):
    write_face_landmarker_task(tmp_path, zipfile.ZIP_DEFLATED)  # mediapipe reads only uncompressed archives
    with pytest.warns(UserWarning, match="could not load"):
        lm = Landmarker(tmp_path)
    assert lm.backend == "face_mesh" and lm.landmarks(_astronaut()).shape == (478, 2)
