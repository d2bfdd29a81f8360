"""Image loading (formats, modes, EXIF, bad files) and the square crop around the face."""
import numpy as np
import pytest
from PIL import Image

from emocast.cli import run_main
from emocast.errors import InputError
from emocast.preprocess.image import (load_image, resize_square, shift_box, square_crop_around, square_crop_box,
                                      to_model_pixels)


def _astronaut():
    import skimage.data

    return skimage.data.astronaut()


def test_rgb_png_roundtrip(tmp_path):
    img = _astronaut()
    Image.fromarray(img).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (512, 512, 3)
    np.testing.assert_array_equal(out, img)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :5, 3] = 255  # left half opaque red-ish, right half fully transparent
    Image.fromarray(rgba).save(tmp_path / "t.png")
    out = load_image(tmp_path / "t.png")
    assert out.shape == (8, 10, 3)
    np.testing.assert_array_equal(out[:, :5], np.broadcast_to([200, 0, 0], (8, 5, 3)))
    np.testing.assert_array_equal(out[:, 5:], np.full((8, 5, 3), 255))


def test_grayscale_and_16bit(tmp_path):
    gray = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (8, 8, 3)
    np.testing.assert_array_equal(out[..., 0], gray)
    np.testing.assert_array_equal(out[..., 1], out[..., 2])

    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(deep).save(tmp_path / "d.png")
    out16 = load_image(tmp_path / "d.png")
    assert out16.dtype == np.uint8 and out16.shape == (8, 8, 3)
    assert out16[0, 0, 0] == 0 and out16[-1, -1, 0] == round(63000 / 65535 * 255)  # full 16-bit range -> 0..255


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    p.info["transparency"] = 1
    p.putpixel((0, 0), 1)
    p.save(tmp_path / "p.png", transparency=1)
    out = load_image(tmp_path / "p.png")
    assert tuple(out[0, 0]) == (255, 255, 255)  # transparent pixel -> white
    assert tuple(out[1, 1]) == (10, 20, 30)


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # left half white in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "e.jpg", exif=exif.tobytes(), quality=100)
    out = load_image(tmp_path / "e.jpg")
    assert out.shape == (40, 20, 3)  # displayed upright: portrait
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # the white half is now on top


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "text"])
def test_bad_image_files_raise_input_error(tmp_path, case):
    p = tmp_path / "face.jpg"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "corrupt":
        Image.fromarray(_astronaut()).save(p)
        p.write_bytes(p.read_bytes()[:300])  # truncated JPEG
    elif case == "text":
        p.write_text("this is not an image")
    with pytest.raises(InputError) as err:
        load_image(p)
    msg = str(err.value)
    assert str(p) in msg and "Fix:" in msg
    if case == "missing":
        assert "not found" in msg


def test_bad_image_through_run_main_gives_message_and_exit_code(tmp_path, capsys):
    code = run_main(lambda argv: load_image(tmp_path / "nope.png"))
    assert code != 0
    err = capsys.readouterr().err
    assert "source image not found" in err and "Traceback" not in err


def test_square_input_is_not_cropped():
    img = _astronaut()
    crop, box = square_crop_around(img, (100, 100, 200, 200))
    assert box == (0, 0, 512, 512)
    np.testing.assert_array_equal(crop, img)


def test_wide_input_is_cropped_around_the_face():
    img = np.random.default_rng(0).integers(0, 255, (300, 500, 3), dtype=np.uint8)
    crop, box = square_crop_around(img, (340, 100, 400, 160))  # face centre x=370
    assert crop.shape == (300, 300, 3)
    assert box == (200, 0, 500, 300)  # centred at 370 would end at 520: shifted back inside
    np.testing.assert_array_equal(crop, img[:, 200:500])
    # a centred face gives a centred square
    _, box2 = square_crop_around(img, (230, 100, 270, 160))
    assert box2 == (100, 0, 400, 300)
    # the face box is inside the crop
    fb = shift_box((340, 100, 400, 160), box)
    assert fb[0] >= 0 and fb[2] <= 300


def test_tall_input_is_cropped_and_face_left_edge():
    img = np.random.default_rng(1).integers(0, 255, (600, 400, 3), dtype=np.uint8)
    crop, box = square_crop_around(img, (0, 10, 80, 90))  # face at the top-left corner
    assert box == (0, 0, 400, 400)
    np.testing.assert_array_equal(crop, img[:400])


def test_face_larger_than_short_side_is_padded():
    img = np.full((100, 300, 3), 7, np.uint8)
    img[:, 150] = 200
    box = square_crop_box((100, 300), (80, 0, 230, 100))  # face 150 wide > 100 high
    assert box[2] - box[0] == 150 and box[3] - box[1] == 150
    crop, cbox = square_crop_around(img, (80, 0, 230, 100))
    assert crop.shape == (150, 150, 3) and cbox == box
    assert cbox[1] < 0  # padded above and below (edge replication)
    assert (crop == 7).sum() > 0


def test_resize_and_model_pixels():
    img = _astronaut()[:300, :300]
    r = resize_square(img, 512)
    assert r.shape == (512, 512, 3) and r.dtype == np.uint8
    t = to_model_pixels(r)
    assert tuple(t.shape) == (3, 512, 512)
    assert float(t.min()) >= -1.0 and float(t.max()) <= 1.0


def _gradient(h=600, w=1000):
    """Red rises left to right, green top to bottom: orientation and scaling are visible in the means."""
    x, y = np.meshgrid(np.linspace(0, 255, w), np.linspace(0, 255, h))
    return np.stack([x, y, np.full_like(x, 90)], -1).astype(np.uint8)


@pytest.mark.parametrize("name,orientation", [("big.jpg", 1), ("big.png", 1), ("big.webp", 1), ("rot.jpg", 6)])
def test_image_over_pillows_pixel_limit_is_decoded_smaller(tmp_path, monkeypatch, name, orientation):
    """An image over Pillow's decompression-bomb limit (a 200-megapixel phone photo against 89.5 MP; here the
    limit is lowered to 100k pixels and the image is 600k) is decoded at a whole fraction of its size, at most the
    limit, with its aspect and EXIF orientation, instead of failing with DecompressionBombError."""
    img = Image.fromarray(_gradient())
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / name, exif=exif)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    out = load_image(tmp_path / name)
    h, w = out.shape[:2]
    assert h * w <= 100_000 and h * w >= 100_000 / 9
    if orientation == 6:  # displayed rotated by 90 degrees clockwise: 600 wide, 1000 high; red now rises downwards
        assert abs(h / w - 1000 / 600) < 0.02
        assert out[: h // 4, :, 0].mean() < 80 and out[-h // 4:, :, 0].mean() > 175
    else:
        assert abs(w / h - 1000 / 600) < 0.02
        assert out[:, : w // 4, 0].mean() < 80 and out[:, -w // 4:, 0].mean() > 175
        assert out[: h // 4, :, 1].mean() < 80 and out[-h // 4:, :, 1].mean() > 175
    assert Image.MAX_IMAGE_PIXELS == 100_000  # Pillow's setting is left as it was


def test_image_over_the_hard_limit_is_one_message(tmp_path, monkeypatch):
    import emocast.preprocess.image as image

    Image.fromarray(_gradient()).save(tmp_path / "huge.png")
    monkeypatch.setattr(image, "MAX_PIXELS", 500_000)  # the real limit is 16384 x 16384 = 268 megapixels
    with pytest.raises(InputError) as err:
        load_image(tmp_path / "huge.png")
    msg = str(err.value)
    assert "huge.png" in msg and "1000x600 pixels" in msg and "megapixels" in msg and "Fix: downscale" in msg
