"""Reading the source portrait and framing it as the square model input.

- :func:`load_image`: any format/mode Pillow reads -> RGB uint8 ``(H, W, 3)``. EXIF orientation is applied;
  transparent images (RGBA, LA, palette with transparency) are composited over **white**; grayscale and
  16-bit images are converted. A missing, empty or unreadable file raises :class:`InputError`. An image over
  Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, 89.5 megapixels; a 200-megapixel phone
  photo) is downscaled by a whole factor while it is decoded (JPEG: decoded at 1/2, 1/4 or 1/8 scale; other
  formats: ``Image.reduce``, a box filter) to at most that many pixels; beyond :data:`MAX_PIXELS`
  (16384 x 16384) it is refused with one message.
- :func:`square_crop_around`: a non-square image is cut to a square around the face (see the function).
- :func:`resize_square`: the final bilinear resize to the model size (spec §7.1: ``Resize((512, 512))`` on a
  PIL image, i.e. Pillow's antialiased bilinear filter).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

FIX_IMAGE = "use a JPEG/PNG/WebP/BMP/TIFF portrait photo"
#: the largest image accepted (pixels): 16384 x 16384 = 268 megapixels; larger ones are refused
MAX_PIXELS = 16384 * 16384
#: modes ``Image.reduce`` works on directly (others are converted to RGB first)
_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "RGBa", "La", "I", "F", "CMYK")
#: EXIF orientation -> the transpose that undoes it (as ``ImageOps.exif_transpose``)
_ORIENTATION = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
                7: "TRANSVERSE", 8: "ROTATE_90"}


def load_image(path) -> np.ndarray:
    """Read ``path`` as an RGB uint8 array ``(H, W, 3)``; :class:`InputError` when missing, unreadable or larger
    than :data:`MAX_PIXELS`. Images over Pillow's pixel limit are downscaled while decoding (see the module)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if p.is_dir():
        raise InputError(f"the source image {p} is a folder. Fix: pass an image file (--source_image).")
    if not p.is_file():
        raise InputError(f"source image not found: {p}. Fix: check the path (--source_image).")
    if p.stat().st_size == 0:
        raise InputError(f"source image is an empty file: {p}. Fix: {FIX_IMAGE}.")
    limit = Image.MAX_IMAGE_PIXELS  # Pillow's decompression-bomb limit: images above it are decoded smaller
    try:
        Image.MAX_IMAGE_PIXELS = None  # the size is checked here, against MAX_PIXELS, before anything is decoded
        with Image.open(p) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputError(f"the source image {p} is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), more than "
                                 f"the {MAX_PIXELS / 1e6:.0f} megapixels this program decodes. Fix: downscale it, e.g. "
                                 f"ffmpeg -i {p.name} -vf scale=4096:-1 {p.stem}_small.png")
            if limit and w * h > limit:
                return _load_reduced(img, limit)
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"cannot read the source image {p} ({type(err).__name__}: {err}); the file is corrupt "
                         f"or not an image. Fix: {FIX_IMAGE}.") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _load_reduced(img, limit: int) -> np.ndarray:
    """An opened image larger than ``limit`` pixels, decoded smaller by a whole factor to at most ``limit`` pixels
    (JPEG: DCT scaling while decoding; then ``Image.reduce``), EXIF orientation applied, as RGB."""
    from PIL import Image

    def factor(size) -> int:  # the smallest whole factor that brings ``size`` to at most ``limit`` pixels
        f = max(1, int(np.sqrt(size[0] * size[1] / limit)))
        while -(-size[0] // f) * -(-size[1] // f) > limit:
            f += 1
        return f

    w, h = img.size
    f = factor(img.size)
    orientation = img.getexif().get(0x0112, 1)
    img.draft(img.mode, (-(-w // f), -(-h // f)))  # JPEG: decoded at 1/2, 1/4 or 1/8 scale; other formats: no-op
    img.load()
    rest = factor(img.size)
    if rest > 1:
        if img.mode not in _REDUCIBLE:
            img = Image.fromarray(to_rgb(img))
        img = img.reduce(rest)
    if orientation in _ORIENTATION:
        img = img.transpose(getattr(Image.Transpose, _ORIENTATION[orientation]))
    return to_rgb(img)


def to_rgb(img) -> np.ndarray:
    """A PIL image of any mode -> RGB uint8 array; transparency is composited over white."""
    from PIL import Image

    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def square_crop_box(image_hw, face_box) -> tuple[int, int, int, int]:
    """The square ``(x0, y0, x1, y1)`` that :func:`square_crop_around` cuts (may extend past the image).

    The side is the image's shorter side, or the face box's longer side when the face is larger than that
    (the extra is padded). The square is centred on the face box centre and then shifted to stay inside the
    image as far as possible; a square input gives the whole image.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    x1, y1, x2, y2 = (float(v) for v in face_box)
    side = max(min(h, w), int(np.ceil(max(x2 - x1, y2 - y1))))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0

    def place(center: float, length: int) -> int:
        start = int(round(center - side / 2.0))
        if side <= length:
            return min(max(start, 0), length - side)
        # larger than the image along this axis: centre the image inside the square
        return -((side - length) // 2)

    x0, y0 = place(cx, w), place(cy, h)
    return x0, y0, x0 + side, y0 + side


def square_crop_around(image: np.ndarray, face_box) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Cut ``image`` to a square around ``face_box`` (``(x1, y1, x2, y2)`` pixels).

    Returns ``(square image, crop box)``. Parts of the crop box outside the image (only when the face is
    larger than the shorter side, or the image is smaller than the box) are filled by edge replication.
    """
    import cv2

    h, w = image.shape[:2]
    x0, y0, x1, y1 = square_crop_box((h, w), face_box)
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x1 - w), max(0, y1 - h)
    src = image
    if pad_l or pad_t or pad_r or pad_b:
        src = cv2.copyMakeBorder(image, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    crop = src[y0 + pad_t:y1 + pad_t, x0 + pad_l:x1 + pad_l]
    return np.ascontiguousarray(crop), (x0, y0, x1, y1)


def shift_box(box, crop_box) -> np.ndarray:
    """``box`` in the coordinates of the crop ``crop_box`` (same scale)."""
    b = np.asarray(box, dtype=np.float32).copy()
    b[[0, 2]] -= crop_box[0]
    b[[1, 3]] -= crop_box[1]
    return b


def resize_square(image: np.ndarray, size: int = 512) -> np.ndarray:
    """Resize to ``size`` x ``size`` with Pillow's bilinear filter (the release's ``transforms.Resize``)."""
    from PIL import Image

    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.array(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def to_model_pixels(image: np.ndarray):
    """RGB uint8 ``(H, W, 3)`` -> float tensor ``(3, H, W)`` in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    import torch

    t = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    return t * 2.0 - 1.0
