"""Face detection / embedding through insightface's real loader with the tiny pack, and the whole reference step."""
import warnings

import numpy as np
import pytest

from emocast import registry
from emocast.errors import InputError, MissingModelError
from emocast.preprocess.face import FaceAnalyzer, onnx_providers
from emocast.preprocess.landmarks import Landmarker
from emocast.preprocess.reference import prepare_reference
from emocast.testing.tiny_face_models import canvas_to_image_box, write_tiny_face_models

TWO_FACES = ((224.0, 96.0, 416.0, 320.0), (40.0, 40.0, 120.0, 140.0))
SMALL_FACE = ((300.0, 300.0, 316.0, 316.0),)


def _astronaut():
    import skimage.data

    return skimage.data.astronaut()


def _pack(root, boxes=None):
    folder = registry.COMPONENTS["face_analysis"].path(root)
    write_tiny_face_models(folder, **({} if boxes is None else {"boxes": boxes}))
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return _pack(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def analyzer(root):
    return FaceAnalyzer(root, device="cpu")


@pytest.fixture(scope="module")
def landmarker(root):
    return Landmarker(root)


def test_tiny_pack_satisfies_the_registry_and_routes(root, analyzer):
    assert registry.status("face_analysis", root)[0] == "present"
    assert set(analyzer._app.models) == {"detection", "recognition"}
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_largest_face_box_and_raw_embedding(analyzer):
    img = _astronaut()
    face = analyzer.largest_face(img)
    np.testing.assert_allclose(face.box, canvas_to_image_box(TWO_FACES[0], img.shape[:2]), atol=1e-3)
    assert face.embedding.shape == (512,) and face.embedding.dtype == np.float32
    assert abs(np.linalg.norm(face.embedding) - 1.0) > 0.1  # raw, not L2-normalised
    # the embedding depends on the pixels of the face
    other = analyzer.largest_face(np.ascontiguousarray(img[::-1]))
    assert np.abs(other.embedding - face.embedding).max() > 1e-3
    again = analyzer.largest_face(img)
    np.testing.assert_array_equal(again.embedding, face.embedding)


def test_no_face_raises_or_uses_whole_image(analyzer):
    dark = np.full((300, 400, 3), 20, np.uint8)  # the tiny detector reports no face on a dark image
    with pytest.raises(InputError) as err:
        analyzer.largest_face(dark, source="dark.png")
    assert "no face found in dark.png" in str(err.value) and "--allow_no_face" in str(err.value)
    with pytest.warns(UserWarning, match="whole image"):
        face = analyzer.largest_face(dark, allow_no_face=True)
    np.testing.assert_array_equal(face.box, [0, 0, 400, 300])
    assert not face.embedding.any() and face.embedding.shape == (512,)


def test_several_faces_use_largest_with_warning(tmp_path):
    fa = FaceAnalyzer(_pack(tmp_path, TWO_FACES), device="cpu")
    img = _astronaut()
    assert len(fa.faces(img)) == 2
    with pytest.warns(UserWarning, match="2 faces found"):
        face = fa.largest_face(img)
    np.testing.assert_allclose(face.box, canvas_to_image_box(TWO_FACES[0], img.shape[:2]), atol=1e-3)


def test_face_too_small(tmp_path):
    fa = FaceAnalyzer(_pack(tmp_path, SMALL_FACE), device="cpu")
    with pytest.raises(InputError, match="too small"):
        fa.largest_face(_astronaut(), source="tiny.png")


def test_missing_pack_gives_download_report(tmp_path):
    with pytest.raises(MissingModelError) as err:
        FaceAnalyzer(tmp_path, device="cpu")
    assert "face_analysis" in str(err.value) and "download_models.py" in str(err.value)


def test_prepare_reference_square(analyzer, landmarker):
    ref = prepare_reference(_astronaut(), analyzer, landmarker)
    assert ref.pixels.shape == (512, 512, 3) and ref.crop_box is None and ref.framed_hw == (512, 512)
    assert ref.face_emb.shape == (512,)
    f, l = ref.face_box, ref.lip_box
    assert f[0] <= l[0] < l[2] <= f[2] and f[1] <= l[1] < l[3] <= f[3]
    assert ref.face_region.shape == (3, 512, 512)
    levels = ref.level_masks()
    assert {k: v[0].shape for k, v in levels.items()} == {64: (4096,), 32: (1024,), 16: (256,), 8: (64,)}


def test_prepare_reference_non_square_is_cropped_around_face(analyzer, landmarker, tmp_path):
    from PIL import Image

    wide = np.concatenate([_astronaut(), np.full((512, 200, 3), 128, np.uint8)], axis=1)  # 712 x 512
    Image.fromarray(wide).save(tmp_path / "wide.png")
    ref = prepare_reference(tmp_path / "wide.png", analyzer, landmarker, size=256)
    x0, y0, x1, y1 = ref.crop_box
    assert (x1 - x0, y1 - y0) == (512, 512) and y0 == 0 and 0 <= x0 <= 200
    det = ref.face.box  # the crop is centred on the detected face (as far as the image allows)
    assert abs((x0 + x1) / 2 - (det[0] + det[2]) / 2) < 1.0
    assert ref.pixels.shape == (256, 256, 3) and ref.face_region.shape == (3, 256, 256)
    assert sorted(ref.level_masks()) == [4, 8, 16, 32]
    # the landmark face box refers to the crop: the astronaut's face (x 177..272 in the original) moves by -x0
    assert abs(ref.face_box[0] - (170 - x0)) < 15
    # switch off: the whole image is kept (and later stretched, as the release does)
    flat = prepare_reference(wide, analyzer, landmarker, square=False)
    assert flat.crop_box is None and flat.framed_hw == (512, 712) and flat.pixels.shape == (512, 512, 3)


def test_prepare_reference_no_face_anywhere(analyzer, landmarker):
    dark = np.full((256, 256, 3), 20, np.uint8)
    with pytest.raises(InputError, match="no face found"):
        prepare_reference(dark, analyzer, landmarker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = prepare_reference(dark, analyzer, landmarker, allow_no_face=True)
    assert ref.landmarks is None and ref.face_box == (0, 0, 256, 256)
    assert not ref.face_emb.any()
    assert ref.lip_box[1] > 128  # the stand-in lip box is in the lower part
