#!/usr/bin/env python
"""Re-create the bundled examples from their public-domain sources (see examples/README.md).

Portraits: public-domain photos shipped inside installed packages, cropped square around the face (OpenCV's
frontal-face Haar cascade) and resized to 512x512 PNG. Speech: espeak-ng (two voices), converted with ffmpeg to
16 kHz mono PCM16 WAV. Needs the preprocess extra (scikit-image, matplotlib, opencv) and the espeak-ng and
ffmpeg programs (apt-get install espeak-ng ffmpeg).

  python examples/make_examples.py            # rewrites examples/reference_images and examples/driving_audios
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 512
CROP_SCALE = 2.4  # square side = 2.4 x the detected face width (face ~40% of the frame, like the release's samples)

SPEECH = {
    # name: (espeak-ng voice, words per minute, text); both portraits are of women, so two female voices
    "happy_news": ("en-us+f3", 160, "I finally got the results, and we did it! I can hardly believe it."),
    "bad_news": ("en-gb+f4", 140, "Please sit down. I am afraid I have some bad news for you."),
}


def portraits() -> dict[str, np.ndarray]:
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": hopper}


def face_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """Largest frontal face (x, y, w, h) found by OpenCV's Haar cascade."""
    import cv2

    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
    if len(faces) == 0:
        raise SystemExit("no face found")
    return tuple(int(v) for v in max(faces, key=lambda f: f[2] * f[3]))


def square_crop(rgb: np.ndarray, box) -> np.ndarray:
    from PIL import Image

    x, y, w, h = box
    side = int(min(CROP_SCALE * w, *rgb.shape[:2]))
    cx, cy = x + w / 2, y + h / 2 + 0.1 * h  # a little below the face centre: chin and shoulders in frame
    left = int(np.clip(cx - side / 2, 0, rgb.shape[1] - side))
    top = int(np.clip(cy - side / 2, 0, rgb.shape[0] - side))
    crop = rgb[top:top + side, left:left + side]
    return np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.LANCZOS))


def speak(name: str, voice: str, wpm: int, text: str, out_dir: Path) -> Path:
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install -y espeak-ng ffmpeg")
    out = out_dir / f"{name}.wav"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(raw), "-ar", "16000", "-ac", "1",
                        "-af", "apad=pad_dur=0.3", "-c:a", "pcm_s16le", str(out)], check=True)
    return out


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    from PIL import Image

    img_dir, wav_dir = HERE / "reference_images", HERE / "driving_audios"
    img_dir.mkdir(exist_ok=True)
    wav_dir.mkdir(exist_ok=True)
    for name, rgb in portraits().items():
        box = face_box(rgb)
        Image.fromarray(square_crop(rgb, box)).save(img_dir / f"{name}.png", optimize=True)
        print(f"{name}: face {box} in {rgb.shape[1]}x{rgb.shape[0]} -> {img_dir / (name + '.png')}")
    for name, (voice, wpm, text) in SPEECH.items():
        print(f"{name}: {speak(name, voice, wpm, text, wav_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
