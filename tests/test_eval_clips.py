"""Reading videos for the metrics: ffmpeg's ``-r 25`` frame-rate conversion and ``-async 1`` audio start."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from emocast.evaluation.clips import cfr_indices, read_audio, read_video
from emocast.testing.tiny_eval_models import write_test_video

# Frames written by `ffmpeg -i in.mp4 -r 25 out.avi; ffmpeg -i out.avi -f image2` (ffmpeg 5.1), source index per
# output frame, for constant-rate sources starting at t = 0.
FFMPEG_30FPS_61 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 29,
                   30, 31, 32, 33, 35, 36, 37, 38, 39, 41, 42, 43, 44, 45, 47, 48, 49, 50, 51, 53, 54, 55, 56, 57,
                   59, 60]
FFMPEG_24FPS_50 = [*range(13), *range(12, 37), *range(36, 50)]
FFMPEG_60FPS_100 = [0, 1, 3, 5, 8, 10, 12, 15, 17, 20, 22, 24, 27, 29, 32, 34, 36, 39, 41, 44, 46, 48, 51, 53, 56,
                    58, 60, 63, 65, 68, 70, 72, 75, 77, 80, 82, 84, 87, 89, 92, 94, 96, 99]
FFMPEG_15FPS_30 = [0, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 7, 7, 8, 9, 9, 10, 10, 11, 12, 12, 13, 13, 14, 15, 15, 16, 16,
                   17, 18, 18, 19, 19, 20, 21, 21, 22, 22, 23, 24, 24, 25, 25, 26, 27, 27, 28, 28, 29]


@pytest.mark.parametrize("rate, n, expected", [(30, 61, FFMPEG_30FPS_61), (24, 50, FFMPEG_24FPS_50),
                                               (60, 100, FFMPEG_60FPS_100), (15, 30, FFMPEG_15FPS_30),
                                               (25, 40, list(range(40)))])
def test_cfr_indices_match_ffmpeg(rate, n, expected):
    assert cfr_indices(np.arange(n) / rate, rate).tolist() == expected


def test_cfr_indices_late_stream_repeats_first_frame():
    # a 25 fps stream starting 0.08 s (2 frames) after the file start: ffmpeg fills the gap with its first frame
    assert cfr_indices(0.08 + np.arange(5) / 25, 25).tolist() == [0, 0, 0, 1, 2, 3, 4]


def _coded(i: int, size: int = 32) -> np.ndarray:
    """A frame whose 8 blocks spell ``i`` in binary."""
    img = np.zeros((size, size, 3), np.uint8)
    h, w = size // 2, size // 4
    for b in range(8):
        if (i >> b) & 1:
            img[(b // 4) * h:(b // 4 + 1) * h, (b % 4) * w:(b % 4 + 1) * w] = 255
    return img


def _decode(img: np.ndarray) -> int:
    h, w = img.shape[0] // 2, img.shape[1] // 4
    return sum(1 << b for b in range(8)
               if img[(b // 4) * h + 4:(b // 4 + 1) * h - 4, (b % 4) * w + 2:(b % 4 + 1) * w - 2].mean() > 127)


def test_read_video_converts_30fps_like_ffmpeg(tmp_path):
    path = write_test_video(tmp_path / "v30.mp4", np.stack([_coded(i) for i in range(61)]), fps=30)
    frames = read_video(path, with_audio=False).frames
    assert [_decode(f) for f in frames] == FFMPEG_30FPS_61


def test_read_audio_pads_a_late_start_like_ffmpeg_async(tmp_path):
    """An audio track starting 0.2 s into the file gets 3200 samples of silence in front (``-async 1``)."""
    av = pytest.importorskip("av")
    path = tmp_path / "late.mkv"
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.int16)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        a_s = out.add_stream("pcm_s16le", rate=16000)
        a_s.layout = "mono"
        a_s.time_base = Fraction(1, 16000)
        for i in range(15):
            for pkt in vs.encode(av.VideoFrame.from_ndarray(_coded(i), format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        for s in range(0, len(tone), 800):
            af = av.AudioFrame.from_ndarray(tone[None, s:s + 800], format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = 16000, 3200 + s, Fraction(1, 16000)
            for pkt in a_s.encode(af):
                out.mux(pkt)
        for pkt in a_s.encode():
            out.mux(pkt)
    audio = read_audio(path)
    assert int(np.argmax(np.abs(audio) > 100)) == 3200 + 1  # sin(0) = 0: the first loud sample is the second
    assert len(audio) == 3200 + len(tone)
    np.testing.assert_array_equal(audio[3200:], tone)
