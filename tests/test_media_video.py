"""The one video decoder: probing, frames with their times, frames by index (seeking)."""
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf

from emocast.errors import InputError, UnreadableMedia
from emocast.media.video import count_frames, probe, read_frames, timed_frames
from emocast.media.video_writer import VideoWriter


def _frames(n, size=32):
    """Frames whose mean brightness encodes their index (survives H.264)."""
    return np.stack([np.full((size, size, 3), 10 + 12 * i, np.uint8) for i in range(n)])


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    with VideoWriter(path, fps=Fraction(30000, 1001), keyframe_interval=4,
                     audio_array=np.zeros(8000, np.float32), audio_rate=16000) as w:
        w.write(_frames(20))
    return path


def test_probe(video):
    info = probe(video)
    assert (info.width, info.height, info.frames, info.has_audio) == (32, 32, 20, True)
    assert info.fps == pytest.approx(30000 / 1001) and info.duration == pytest.approx(20 * 1001 / 30000, abs=1e-3)


def test_timed_frames_are_in_order_on_the_file_timeline(video):
    got = list(timed_frames(video))
    assert len(got) == 20 == count_frames(video)
    times = np.array([t for t, _ in got])
    np.testing.assert_allclose(times, np.arange(20) * 1001 / 30000, atol=1e-6)  # well below one frame (33 ms)
    means = [f.mean() for _, f in got]
    assert all(abs(m - (10 + 12 * i)) < 3 for i, m in enumerate(means))


def test_read_frames_by_index_equals_the_full_decode(video):
    every = read_frames(video)
    idx = [17, 0, 5, 5, 19, 2, 9]
    np.testing.assert_array_equal(read_frames(video, idx, keyframe_interval=4), every[idx])
    with pytest.raises(IndexError):
        read_frames(video, [20])


def test_bad_files_are_input_errors_naming_them(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 500)
    audio_only = tmp_path / "a.wav"
    sf.write(audio_only, np.zeros(1600, np.float32), 16000)
    for path, match in ((bad, "cannot be opened"), (audio_only, "has no video stream")):
        with pytest.raises(UnreadableMedia, match=match) as err:
            probe(path)
        assert isinstance(err.value, InputError) and str(path) in str(err.value)
