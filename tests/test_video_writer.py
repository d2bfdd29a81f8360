import math
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from emocast.errors import InputError
from emocast.media.video_writer import VideoWriter, frames_to_uint8

REPO = Path(__file__).resolve().parents[1]


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


def _decoded(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_two_writers_of_one_output_never_mix_their_files(tmp_path):
    """Two renders to the same path at once: each writes its own temporary file; every finished state of the
    output is one complete video (the later finisher's in the end), and no temporary file stays behind."""
    out = tmp_path / "v.mp4"
    first, second = VideoWriter(out), VideoWriter(out)
    first.write(np.full((3, 16, 16, 3), 40, np.uint8))
    second.write(np.full((5, 16, 16, 3), 200, np.uint8))
    first.close()
    got = _decoded(out)
    assert got.shape[0] == 3 and np.abs(got.astype(int) - 40).max() <= 3
    second.write(np.full((1, 16, 16, 3), 200, np.uint8))
    second.close()
    got = _decoded(out)
    assert got.shape[0] == 6 and np.abs(got.astype(int) - 200).max() <= 3
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


class _FullDisk:
    """An output container whose writes fail with ENOSPC after ``ok`` packets (a disk filling up)."""

    def __init__(self, container, ok):
        self._container, self._ok = container, ok

    def __getattr__(self, name):
        return getattr(self._container, name)

    def mux(self, packet):
        import errno

        self._ok -= 1
        if self._ok < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._container.mux(packet)


@pytest.mark.parametrize("ok_packets", [0, 4])
def test_disk_full_is_one_message_naming_the_output_and_leaves_nothing(tmp_path, monkeypatch, ok_packets):
    from emocast.errors import OutputError

    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: _FullDisk(real_open(*a, **k), ok_packets))
    out = tmp_path / "v.mp4"
    with pytest.raises(OutputError, match="disk is full") as err:
        with VideoWriter(out, audio_array=np.zeros(16000, np.float32), audio_rate=16000) as w:
            for _ in range(4):
                w.write(np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8))
    assert str(out) in str(err.value) and "Fix" in str(err.value) and ".partial" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_file_size_limit_from_the_os_is_one_message(tmp_path):
    """A real write error from the operating system (the file size limit, EFBIG) while the file grows and while it
    is finished, in a child process."""
    code = ("import resource, signal, sys, numpy as np\n"
            "from emocast.errors import OutputError\n"
            "from emocast.media.video_writer import VideoWriter\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            "try:\n"
            "    with VideoWriter(sys.argv[1]) as w:\n"
            "        for _ in range(10):\n"
            "            w.write(np.random.default_rng(0).integers(0, 255, (8, 64, 64, 3), dtype=np.uint8))\n"
            "except OutputError as err:\n"
            "    print(err)\n")
    out = tmp_path / "v.mp4"
    run = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert f"cannot write {out}" in run.stdout and "ulimit" in run.stdout
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    """A writer killed with SIGKILL leaves its temporary file; the next writer of that output removes it, but not
    the files of a process that still runs or of another machine."""
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = tmp_path / f".v.mp4.{int(dead.stdout)}.0badf00d.{host}.partial"
    running = tmp_path / f".v.mp4.{os.getpid()}.0badf00d.{host}.partial"
    elsewhere = tmp_path / f".v.mp4.{int(dead.stdout)}.0badf00d.other-{host}.partial"
    for p in (stale, running, elsewhere):
        p.write_bytes(b"\x00" * 64)
    with VideoWriter(tmp_path / "v.mp4") as w:
        w.write(np.zeros((1, 16, 16, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, elsewhere.name, "v.mp4"])


SIGNAL_CHILD = """
import sys, time
import numpy as np
from emocast.cli import run_main
from emocast.media.video_writer import VideoWriter

def main(argv):
    with VideoWriter(argv[0], audio_array=np.zeros(16000, np.float32), audio_rate=16000) as w:
        w.write(np.zeros((30, 16, 16, 3), np.uint8))
        print("writing", flush=True)
        time.sleep(120)

sys.exit(run_main(main, sys.argv[1:]))
"""


def test_sigterm_while_writing_cleans_up_and_exits_143_with_one_line(tmp_path):
    """A job scheduler's SIGTERM while a video is being written is handled like Ctrl-C: the script exits 143 with
    one line, no traceback, and leaves no temporary file."""
    import signal

    out = tmp_path / "out" / "v.mp4"
    child = subprocess.Popen([sys.executable, "-c", SIGNAL_CHILD, str(out)], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        assert any(out.parent.iterdir())  # the temporary file exists now
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0
    assert list(out.parent.iterdir()) == []
