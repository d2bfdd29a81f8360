"""Synthetic talking videos for tests (offline, a few hundred milliseconds each).

A real face photo from an installed package (``skimage.data.astronaut()``, insightface's sample image) is
animated with small shifts, a slow zoom and a mouth-region brightness wobble that follows the speech loudness,
and muxed (H.264 + AAC, :mod:`emocast.media.video_writer`) with espeak-ng speech (a synthetic vowel-like signal when espeak-ng is absent).
:func:`make_no_face_video` writes a textured video with no face in it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

# astronaut(): face box and mouth centre found with mediapipe on the 512x512 original (x0, y0, x1, y1)
_ASTRONAUT_FACE = (179, 71, 271, 177)
_ASTRONAUT_MOUTH = (223, 146)


def face_image(name: str = "astronaut") -> tuple[np.ndarray, tuple[int, int], int]:
    """``(RGB uint8 image, mouth centre (x, y), mouth radius)`` of a real face photo from an installed package.

    ``"astronaut"``: skimage's astronaut cropped around the face (256x224);
    ``"hanks"``: insightface's ``Tom_Hanks_54745.png`` (112x112) upscaled to 224x224."""
    if name == "astronaut":
        import skimage.data

        img = skimage.data.astronaut()
        x0, y0 = 97, 8  # crop 256 wide x 224 high, face in the upper middle
        crop = img[y0:y0 + 224, x0:x0 + 256].copy()
        return crop, (_ASTRONAUT_MOUTH[0] - x0, _ASTRONAUT_MOUTH[1] - y0), 18
    if name == "hanks":
        import cv2
        import insightface

        path = Path(insightface.__file__).parent / "data" / "images" / "Tom_Hanks_54745.png"
        img = cv2.imread(str(path))[:, :, ::-1]
        img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_CUBIC)
        return np.ascontiguousarray(img), (112, 160), 22
    raise ValueError(f"unknown face image {name!r}")


def speech(text: str, seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Mono float32 speech of exactly ``seconds``: espeak-ng when installed, else a vowel-like synthetic signal."""
    n = int(round(seconds * sr))
    wave = _espeak(text, sr)
    if wave is None:
        wave = _vowels(n, sr, seed)
    wave = wave[:n]
    if len(wave) < n:
        wave = np.pad(wave, (0, n - len(wave)))
    peak = float(np.abs(wave).max()) or 1.0
    return (0.6 * wave / peak).astype(np.float32)


def _espeak(text: str, sr: int) -> np.ndarray | None:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    from ..errors import UnreadableMedia
    from ..media.audio import decode_audio

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        try:
            subprocess.run([exe, "-v", "en-us", "-s", "170", "-w", str(raw), text], check=True,
                           capture_output=True, timeout=30)
            decoded = decode_audio(raw, rate=sr, layout="mono")
        except (subprocess.SubprocessError, OSError, UnreadableMedia):
            return None
    return None if decoded is None else decoded[0][0]


def _vowels(n: int, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    syll = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) * (rng.random() * 0.2 + 0.8)
    return (wave * syll).astype(np.float32)


def _envelope(wave: np.ndarray, sr: int, num_frames: int, fps: float) -> np.ndarray:
    hop = sr / fps
    env = np.zeros(num_frames)
    for i in range(num_frames):
        seg = wave[int(i * hop):int((i + 1) * hop)]
        env[i] = np.sqrt(np.mean(seg ** 2)) if len(seg) else 0.0  # silence after the end of a shorter audio
    return env / (env.max() or 1.0)


def _animate(image: np.ndarray, mouth: tuple[int, int], radius: int, i: int, env: float, fps: float,
             out_size: tuple[int, int]) -> np.ndarray:
    import cv2

    img = image.astype(np.float32)
    h, w = img.shape[:2]
    # mouth wobble: darken an ellipse in proportion to the loudness (an "open mouth")
    yy, xx = np.mgrid[0:h, 0:w]
    mx, my = mouth
    ell = ((xx - mx) / radius) ** 2 + ((yy - my) / (0.45 * radius)) ** 2
    weight = np.clip(1.2 - ell, 0, 1)[..., None]
    img = img * (1 - 0.55 * env * weight)
    # small head motion: shift of a few pixels and a slow zoom around the centre
    t = i / fps
    dx, dy = 3.0 * np.sin(2 * np.pi * 0.5 * t), 2.0 * np.sin(2 * np.pi * 0.3 * t + 1.0)
    zoom = 1.0 + 0.03 * np.sin(2 * np.pi * 0.2 * t)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, zoom)
    m[:, 2] += (dx, dy)
    img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    if (w, h) != out_size:
        img = cv2.resize(img, out_size, interpolation=cv2.INTER_AREA)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_av(path: str | os.PathLike, frames, fps: float, audio: np.ndarray | None = None,
             audio_sr: int = 44100, stereo: bool = True) -> Path:
    """Mux RGB uint8 frames and optional mono float audio (written whole, duplicated to stereo unless ``stereo``
    is False) into an mp4 (H.264 + AAC) with :class:`~emocast.media.video_writer.VideoWriter`."""
    from ..media.video_writer import VideoWriter

    wave = None if audio is None else (np.stack([audio, audio]) if stereo else np.asarray(audio)[None])
    with VideoWriter(path, fps=fps, crf=20, preset="ultrafast", audio_array=wave, audio_rate=audio_sr,
                     fit_audio=False) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def make_talking_video(path: str | os.PathLike, face: str = "astronaut", seconds: float = 2.0, fps: float = 30.0,
                       size: tuple[int, int] | None = None, text: str = "Hello, this is a short test of the talking head pipeline.",
                       audio_sr: int = 44100, audio: bool = True, audio_seconds: float | None = None,
                       seed: int = 0) -> Path:
    """A talking-face mp4 of ``seconds`` at ``fps`` (any rate), frame ``size`` (w, h) (default: the photo's),
    with ``audio_seconds`` (default ``seconds``) of stereo AAC speech at ``audio_sr``."""
    image, mouth, radius = face_image(face)
    out_size = size or (image.shape[1], image.shape[0])
    num_frames = int(round(seconds * fps))
    wave = speech(text, audio_seconds or seconds, audio_sr, seed) if audio else None
    env = _envelope(wave, audio_sr, num_frames, fps) if wave is not None else np.zeros(num_frames)
    frames = (_animate(image, mouth, radius, i, float(env[i]), fps, out_size) for i in range(num_frames))
    return write_av(path, frames, fps, wave, audio_sr)


def make_no_face_video(path: str | os.PathLike, seconds: float = 1.0, fps: float = 25.0,
                       size: tuple[int, int] = (256, 224), audio_sr: int = 44100) -> Path:
    """A video of a slowly moving coffee-cup photo (no face) with speech."""
    import cv2
    import skimage.data

    base = cv2.resize(skimage.data.coffee(), size, interpolation=cv2.INTER_AREA)
    n = int(round(seconds * fps))
    frames = (np.roll(base, i, axis=1) for i in range(n))
    return write_av(path, frames, fps, speech("There is nobody here.", seconds, audio_sr), audio_sr)


def make_two_face_video(path: str | os.PathLike, seconds: float = 1.0, fps: float = 25.0,
                        audio_sr: int = 44100) -> Path:
    """Two copies of the astronaut's face side by side (for the "several faces" rejection)."""
    image, _, _ = face_image("astronaut")
    face = image[40:200, 60:190]
    base = np.concatenate([face, face], axis=1)
    n = int(round(seconds * fps))
    return write_av(path, (base for _ in range(n)), fps, speech("Two of us.", seconds, audio_sr), audio_sr)
