import math

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from emocast.errors import InputError
from emocast.media.video_writer import VideoWriter, frames_to_uint8


def _wav(path, seconds, sr=16000, channels=1):
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.3 * np.sin(2 * np.pi * 330 * t)
    sf.write(path, np.stack([x] * channels, 1) if channels > 1 else x, sr)
    return path


def _probe(path):
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        info = dict(vcodec=v.codec_context.name, fps=v.average_rate, acodec=a.codec_context.name,
                    vdur=float(v.duration * v.time_base), adur=float(a.duration * a.time_base),
                    rate=a.codec_context.sample_rate)
        info["frames"] = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return info


@pytest.mark.parametrize("seconds,sr,channels", [(1.37, 16000, 1), (0.9, 44100, 2)])
def test_h264_aac_25fps_duration(tmp_path, seconds, sr, channels):
    wav = _wav(tmp_path / "a.wav", seconds, sr, channels)
    n = math.ceil(seconds * 25)
    out = tmp_path / "sub" / "v.mp4"
    with VideoWriter(out, audio_path=wav) as w:
        for i in range(0, n, 4):  # streamed in small batches
            w.write(torch.rand(min(4, n - i), 3, 32, 48))
    assert out.is_file() and not (tmp_path / "sub" / "v.mp4.partial").exists()
    info = _probe(out)
    assert info["vcodec"] == "h264" and info["fps"] == 25 and info["acodec"] == "aac"
    assert len(info["frames"]) == n and info["frames"][0].shape == (32, 48, 3)
    assert abs(info["adur"] - n / 25) < 1e-3 and abs(info["vdur"] - n / 25) < 1e-3
    assert info["rate"] == sr


def test_audio_is_the_original_signal(tmp_path):
    sr = 16000
    wav = _wav(tmp_path / "a.wav", 1.0, sr)
    out = tmp_path / "v.mp4"
    with VideoWriter(out, audio_path=wav) as w:
        w.write(np.zeros((25, 16, 16, 3), np.uint8))
    with av.open(str(out)) as c:
        pcm = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    ref = sf.read(wav)[0]
    # AAC adds an encoder delay; compare the spectra peak instead of samples
    peak = np.argmax(np.abs(np.fft.rfft(pcm[:sr])))  # 1 Hz bins over one second
    assert abs(peak - 330) <= 2 and 0.15 < np.abs(pcm).max() < 0.45 and len(ref) == sr


def test_no_audio_and_uint8_frames_exact_size(tmp_path):
    out = tmp_path / "v.mp4"
    frames = np.full((3, 20, 20, 3), 128, np.uint8)
    with VideoWriter(out) as w:
        w.write(frames)
    with av.open(str(out)) as c:
        assert not c.streams.audio
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(got) == 3 and np.abs(got[0].astype(int) - 128).max() <= 3


def test_same_frames_same_file_and_colours(tmp_path):
    import hashlib

    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(9, 3, 8, 8, generator=g), size=(48, 48), mode="bilinear")
    digests = []
    for i in range(4):
        with VideoWriter(tmp_path / f"{i}.mp4") as w:
            for k in range(0, 9, 4):
                w.write(smooth[k:k + 4])
        digests.append(hashlib.md5((tmp_path / f"{i}.mp4").read_bytes()).hexdigest())
    assert len(set(digests)) == 1
    colours = np.zeros((1, 32, 32, 3), np.uint8)
    colours[:, :, :16, 0] = 230  # red left half, green right half
    colours[:, :, 16:, 1] = 200
    with VideoWriter(tmp_path / "c.mp4") as w:
        w.write(colours)
    with av.open(str(tmp_path / "c.mp4")) as c:
        got = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert np.abs(got[8:24, 2:12] - [230, 0, 0]).max() <= 8 and np.abs(got[8:24, 20:30] - [0, 200, 0]).max() <= 8


def test_failed_render_leaves_no_file(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out) as w:
            w.write(np.zeros((2, 16, 16, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_audio_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk" * 10)
    with pytest.raises(InputError, match="bad.wav"):
        VideoWriter(tmp_path / "v.mp4", audio_path=bad)
    assert not (tmp_path / "v.mp4.partial").exists()


def test_frames_to_uint8_truncates_like_the_release():
    x = torch.tensor([0.0, 0.5, 1.0, 1.2]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    got = frames_to_uint8(x)
    assert got.shape == (1, 2, 2, 3) and got[0, :, :, 0].tolist() == [[0, 127], [255, 255]]


def test_failed_close_leaves_no_partial_file(tmp_path):
    """A failure while finishing the file (here: the target is a folder) removes <name>.partial too."""
    (tmp_path / "taken.mp4").mkdir()
    audio = tmp_path / "a.wav"
    sf.write(audio, np.zeros(1600, np.float32), 16000)
    with pytest.raises(OSError):
        with VideoWriter(tmp_path / "taken.mp4", audio_path=audio) as w:
            w.write(np.zeros((2, 16, 16, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "taken.mp4"]
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4"):
            pass
    assert not (tmp_path / "empty.mp4.partial").exists()


def test_fractional_rate_and_audio_from_memory_written_whole(tmp_path):
    """30000/1001 fps is kept exactly; ``fit_audio=False`` writes the whole in-memory track (1.5 s of audio
    under a 1.001 s video), as the synthetic test videos with mismatched tracks need."""
    from fractions import Fraction

    out = tmp_path / "v.mp4"
    tone = 0.3 * np.sin(2 * np.pi * 330 * np.arange(24000) / 16000)
    with VideoWriter(out, fps=Fraction(30000, 1001), audio_array=tone, audio_rate=16000, fit_audio=False) as w:
        w.write(np.zeros((30, 16, 16, 3), np.uint8))
    info = _probe(out)
    assert info["fps"] == Fraction(30000, 1001) and len(info["frames"]) == 30
    assert abs(info["vdur"] - 30 * 1001 / 30000) < 1e-3 and abs(info["adur"] - 1.5) < 1e-3
    assert info["rate"] == 16000


def test_keyframe_interval(tmp_path):
    out = tmp_path / "v.mp4"
    with VideoWriter(out, keyframe_interval=5) as w:
        w.write(np.full((12, 16, 16, 3), 90, np.uint8))
    with av.open(str(out)) as c:
        keys = [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]
    assert keys == [0, 5, 10]
