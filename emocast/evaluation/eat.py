"""EAT's evaluation protocol (``--protocol eat``), step by step; the reference is EAT's evaluation bundle
(github.com/yuangan/evaluation_eat, ``test_psnr_ssim_sync_emoacc.sh`` and the ``code/`` files it runs).

Each step is a small function; docs/evaluation.md has the table step -> EAT file/function -> ours -> remaining
difference.

- **LSE** (:func:`lse_inputs`): ``ffmpeg -i gen -r 25 no_crop.mp4`` (``preprocess.py``); its frames as cv2 reads
  them (BGR), each stored as JPEG (``_fast_align.py``: ``cv2.imwrite``); 68 landmarks per frame (face-alignment on
  the JPEG as ``skimage.io.imread`` reads it: PIL, RGB); the PC-AVS crop (:mod:`emocast.scoring.pcavs_align`,
  ``scripts/align_68.py``) of the JPEG as ``cv2.imread`` reads it, stored as JPEG; ``ffmpeg -f image2 -i %d.jpg
  -i <ground-truth wav> -r 25 out.mp4`` with the wav made as EAT made its ``wavs_extract_from_newmead``
  (:func:`ground_truth_wav`); then syncnet_python's extraction as EAT's ``SyncNetInstance.evaluate`` runs it:
  ``ffmpeg -i out.mp4 -vf scale=224:224 -threads 1 -f image2 %06d.jpg`` (ffmpeg's default MJPEG settings; bicubic
  when the size is not 224) and ``ffmpeg -i out.mp4 -async 1 -ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav``.
  A frame without a face fails the video, as in EAT.
- **Acc_emo** (:func:`emotion_chips`): every frame as cv2 reads it, stored as JPEG (``_acc_test_video2frame.py``),
  Emotion-FAN's dlib chip (:class:`emocast.scoring.dlib_faces.EmotionChips`) stored as JPEG (``cv2.imwrite``) and
  read back as EAT's data loader reads it (``PIL.Image.open(...).convert("RGB")``); frames without a face are
  dropped and counted.
- **FID** (:func:`fid_crops`, :func:`paired_samples`): ``ffmpeg -r 25``, the 128x128 dlib crops of
  ``utils_crop.py`` (frames without a face dropped) written to an MPEG-4 Part 2 file with ``cv2.VideoWriter`` and
  decoded again (``preprocess.py`` ``align_crop_vids``, read back by ``test_fid.py``), each generated video paired
  with the ground truth of the same name, both resampled to the shorter length, 5 frames from ``linspace``, BGR,
  torchvision's Inception-v3 (:mod:`emocast.evaluation.inception_imagenet`), all features pooled.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..media.ffmpeg_cli import run_ffmpeg
from ..media.video import timed_frames

JPEG_QUALITY = 95  # cv2.imwrite's default
FID_FRAMES = 5


def jpeg_bytes(img: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """The JPEG file ``cv2.imwrite`` writes for ``img`` (BGR; quality 95, 4:2:0)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError("JPEG encoding failed")
    return buf.tobytes()


def cv2_reads(jpeg: bytes) -> np.ndarray:
    """``cv2.imread`` of a JPEG file: BGR."""
    import cv2

    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def pil_reads(jpeg: bytes) -> np.ndarray:
    """``PIL.Image.open(file).convert("RGB")`` of a JPEG file (what EAT's Emotion-FAN loader and, through
    ``skimage.io.imread``, face-alignment's directory reader do): RGB."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im.convert("RGB"))


def jpeg_roundtrip(img: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """``img`` written and read back as ``cv2.imwrite`` / ``cv2.imread`` do (JPEG, quality 95, 4:2:0)."""
    return cv2_reads(jpeg_bytes(img, quality))


def frames_bgr(path) -> np.ndarray:
    """Every decoded frame of ``path`` in order, BGR (what ``cv2.VideoCapture.read`` returns)."""
    frames = [f[..., ::-1] for _, f in timed_frames(path)]
    if not frames:
        raise InputError(f"{path} has no video frames")
    return np.ascontiguousarray(np.stack(frames))


def to_25fps(src, dst) -> Path:
    """EAT's ``preprocess.py``: ``ffmpeg -y -i src -r 25 dst`` (mp4: H.264 with ffmpeg's defaults)."""
    run_ffmpeg(["-i", src, "-r", "25", dst], src, "EAT's 25 fps conversion")
    return Path(dst)


# ----------------------------------------------------------------------------------------------------- LSE
def write_jpegs(frames, folder: Path, pattern: str) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames, start=1):
        cv2.imwrite(str(folder / (pattern % i)), np.ascontiguousarray(f))


def read_jpegs(folder: Path) -> np.ndarray:
    import cv2

    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise InputError(f"ffmpeg wrote no frames into {folder}")
    return np.stack([cv2.imread(str(p)) for p in files])


def pcavs_landmarks(frames_rgb, landmarker, name: str) -> np.ndarray:
    """``(T, 68, 2)`` landmarks of the frames (RGB, as face-alignment reads the stored JPEGs); InputError naming
    the frames without a face (EAT's ``align_folder`` gives up on such a video)."""
    out, missing = [], []
    for i, f in enumerate(frames_rgb):
        lm = landmarker(np.ascontiguousarray(f))
        if lm is None:
            missing.append(i)
        out.append(lm)
    if missing:
        raise InputError(f"{name}: PC-AVS alignment found no face in {len(missing)} of {len(out)} frames "
                         f"(first: frame {missing[0]}); EAT's align_folder fails such a video")
    return np.stack(out)


def ground_truth_wav(src, dst, workdir=None) -> Path:
    """EAT's ground-truth wav (``wavs_extract_from_newmead``) of ``src`` (a video or audio file):
    ``preprocess_cvt_VideoWithAudio.py`` re-encodes the ground-truth video with ``ffmpeg -i src -filter:v fps=25
    -ac 1 -ar 16000 gt.mp4`` (AAC, 16 kHz mono) and ``extract_audio_from_vid.py`` decodes that with ``ffmpeg -i
    gt.mp4 gt.wav``. The video stream is left out here (``-vn``): the wav's samples are the same."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        mid = Path(tmp) / "gt.mp4"
        run_ffmpeg(["-i", src, "-vn", "-ac", "1", "-ar", "16000", mid], src, "EAT's 16 kHz ground-truth re-encode")
        run_ffmpeg(["-i", mid, dst], src, "EAT's ground-truth wav")
    return Path(dst)


def lse_inputs(video, landmarker, audio_source=None, workdir=None) -> tuple[np.ndarray, np.ndarray, int]:
    """EAT's LSE inputs for one generated video: ``(224x224 BGR frames, 16 kHz int16 audio, landmark frames)``.
    ``audio_source``: the ground truth (a video or audio file); its first audio track becomes EAT's ground-truth
    wav (:func:`ground_truth_wav`), which is muxed in; None keeps the generated video's own audio."""
    from scipy.io import wavfile

    from ..scoring.pcavs_align import align

    video = Path(video)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        no_crop = to_25fps(video, tmp / "no_crop.mp4")
        files = [jpeg_bytes(f) for f in frames_bgr(no_crop)]  # _fast_align.py: cv2.imwrite('%d.jpg')
        landmarks = pcavs_landmarks((pil_reads(j) for j in files), landmarker, video.name)
        crops = align(np.stack([cv2_reads(j) for j in files]), landmarks)
        del files
        write_jpegs(crops, tmp / "cropped", "%d.jpg")
        audio = ground_truth_wav(audio_source, tmp / "gt.wav", tmp) if audio_source is not None else no_crop
        aligned = tmp / "pcavs.mp4"
        run_ffmpeg(["-f", "image2", "-i", tmp / "cropped" / "%d.jpg", "-i", audio, "-map", "0:v:0", "-map", "1:a:0",
                    "-r", "25", aligned], video, "EAT's PC-AVS video")
        (tmp / "frames").mkdir()
        run_ffmpeg(["-i", aligned, "-vf", "scale=224:224", "-threads", "1", "-f", "image2",
                    tmp / "frames" / "%06d.jpg"], video, "syncnet_python's frame extraction")
        run_ffmpeg(["-i", aligned, "-async", "1", "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000",
                    tmp / "audio.wav"], video, "syncnet_python's audio extraction")
        _, wave = wavfile.read(tmp / "audio.wav")
        return read_jpegs(tmp / "frames"), np.asarray(wave, dtype=np.int16), len(crops)


# ----------------------------------------------------------------------------------------------------- Acc_emo
def emotion_chips(video, chips) -> tuple[np.ndarray, dict]:
    """Emotion-FAN chips (RGB, 224x224) of every frame that has a face, each stored as JPEG, and the counts
    ``{"frames", "faces", "dropped", "<cascade stage>": n}``."""
    out, counts = [], {"frames": 0, "faces": 0, "dropped": 0}
    for frame in frames_bgr(video):
        counts["frames"] += 1
        chip, stage = chips(jpeg_roundtrip(frame)[..., ::-1])
        if chip is None:
            counts["dropped"] += 1
            continue
        counts["faces"] += 1
        counts[stage] = counts.get(stage, 0) + 1
        out.append(pil_reads(jpeg_bytes(np.ascontiguousarray(chip[..., ::-1]))))  # cv2.imwrite, PIL reads
    return (np.stack(out) if out else np.zeros((0, 224, 224, 3), np.uint8)), counts


# ----------------------------------------------------------------------------------------------------- FID
def mp4v_roundtrip(frames_rgb: np.ndarray, path) -> np.ndarray:
    """``frames_rgb`` written as ``preprocess.py`` ``align_crop_vids`` writes its crops (``cv2.VideoWriter`` with
    fourcc ``MP4V`` at 25 fps, frames flipped to BGR) and decoded again (RGB), as ``test_fid.py`` reads them.
    OpenCV's mp4 muxer falls back from the tag ``MP4V`` to ``mp4v``; we ask for ``mp4v`` (the same file)."""
    import cv2

    if not len(frames_rgb):
        return frames_rgb
    h, w = frames_rgb.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    if not writer.isOpened():
        raise InputError(f"OpenCV cannot write an MPEG-4 video to {path} (EAT's FID crops are stored that way). "
                         "Fix: install OpenCV with its FFmpeg backend (`pip install opencv-python-headless`).")
    try:
        for f in frames_rgb:
            writer.write(np.ascontiguousarray(f[..., ::-1]))
    finally:
        writer.release()
    return np.stack([f for _, f in timed_frames(path)])


def fid_crops(video, cropper, workdir=None) -> np.ndarray:
    """EAT's ``align_crop`` video of ``video``: ``ffmpeg -r 25``, the 128x128 crop of every RGB frame (imageio)
    that has a face (frames without one are left out), stored as MPEG-4 and read back (:func:`mp4v_roundtrip`)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        rgb = frames_bgr(to_25fps(video, Path(tmp) / "no_crop.mp4"))[..., ::-1]
        crops = [c for c in (cropper(np.ascontiguousarray(f)) for f in rgb) if c is not None]
        if not crops:
            return np.zeros((0, 128, 128, 3), np.uint8)
        return mp4v_roundtrip(np.stack(crops), Path(tmp) / "align_crop.mp4")


def paired_samples(fake: np.ndarray, real: np.ndarray, k: int = FID_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """EAT's ``test_fid.py`` pairing: both resampled to the shorter length with ``linspace(0, len, length,
    endpoint=False)``, then ``min(length, k)`` frames from ``linspace(0, length, ., endpoint=False)``, flipped
    to BGR."""
    length = min(len(fake), len(real))
    if length == 0:
        return fake[:0], real[:0]
    fake = fake[np.linspace(0, len(fake), length, endpoint=False).astype(np.int32)]
    real = real[np.linspace(0, len(real), length, endpoint=False).astype(np.int32)]
    idx = np.linspace(0, length, min(length, k), endpoint=False).astype(np.int32)
    return np.ascontiguousarray(fake[idx][..., ::-1]), np.ascontiguousarray(real[idx][..., ::-1])
