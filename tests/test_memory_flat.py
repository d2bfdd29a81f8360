"""Host memory does not grow with the audio's length: vocal separation streams audio-separator's whole-file MDX
computation (same result), wav2vec2's CNN runs in blocks, and a 2-minute audio renders with a peak resident set
within 50 MiB of a 10-second one (tiny kit, separator on, each render in its own process)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from helpers import REPO
from emocast import registry
from emocast.testing.synthetic import face_image, speech


@pytest.fixture(scope="module")
def separator(tmp_path_factory):
    from emocast.preprocess.separator import VocalSeparator
    from emocast.testing.tiny_separator import write_tiny_separator

    root = tmp_path_factory.mktemp("sep")
    write_tiny_separator(registry.COMPONENTS["audio_separator"].path(root))
    sep = VocalSeparator(root)
    yield sep
    sep.close()


@pytest.mark.parametrize("seconds, rate, channels", [(2.5, 16000, 1), (21.3, 22050, 2)])
def test_streaming_separation_equals_the_whole_file_separation(separator, seconds, rate, channels, monkeypatch):
    """The library's own whole-file path (a WAV through Separator.separate) and the streamed computation agree
    to the library's output quantization, with a mix loud enough to be normalised and blocks of 10 s."""
    from emocast.media.audio import resample

    rng = np.random.default_rng(1)
    n = int(seconds * rate)
    x = (0.4 * rng.standard_normal((channels, n)) * np.sin(np.arange(n) / rate * 3)).astype(np.float32)
    x[0, 100] = 1.4  # above normalization_threshold: the whole file's peak scales the mix
    whole, whole_rate = separator._separate_file(x, rate, "test")
    for out_rate, mono in ((44100, False), (16000, True)):
        ref = resample(whole, whole_rate, out_rate)
        ref = ref.mean(axis=0, keepdims=True) if mono else ref
        with monkeypatch.context() as m:  # the streamed path, not the library's whole-file one
            m.setattr(separator._separator, "separate", lambda *a, **k: pytest.fail("whole-file path taken"))
            got, got_rate = separator.separate(x, rate, out_rate=out_rate, mono=mono)
        assert got_rate == out_rate and got.shape == ref.shape
        assert float(np.abs(got - ref).max()) < 1e-4  # the whole-file path's WAV round trip quantizes
        assert float(np.abs(ref).max()) > 0.3


def test_wav2vec_cnn_blocks_change_nothing(tiny_models):
    """Audio beyond one chunk: the CNN in blocks of 10 s gives the features of one CNN pass per chunk."""
    import torch

    from emocast.preprocess.audio import Wav2VecFeatures

    enc = Wav2VecFeatures(tiny_models, "cpu", chunk_frames=100, context_frames=20)
    wave = speech("Blocks of the feature encoder.", 9.0, sr=16000)
    x = enc.normalize(wave)
    n = 225
    enc.cnn_block_frames = 10 ** 6
    whole = enc.features(x, n)
    enc.cnn_block_frames = 37
    blocks = enc.features(x, n)
    torch.testing.assert_close(blocks, whole, rtol=1e-5, atol=1e-5)


def _peak_rss_of_render(args) -> int:
    """Peak resident set (kB) of a separate process rendering with scripts/inference.py."""
    code = ("import runpy, sys\nsys.argv = ['scripts/inference.py'] + sys.argv[1:]\n"
            "try:\n    runpy.run_path('scripts/inference.py', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "status = open('/proc/self/status').read()\n"
            "print('VmHWM', [l.split()[1] for l in status.splitlines() if l.startswith('VmHWM')][0])\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": __import__("os").environ["PATH"],
                               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split("VmHWM")[-1].split()[0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_two_minutes_render_in_the_memory_of_ten_seconds(tiny_models, tmp_path):
    Image.fromarray(face_image("astronaut")[0]).save(tmp_path / "portrait.png")
    ten = speech("This is a test of a long recording.", 10.0, sr=16000)
    sf.write(tmp_path / "s10.wav", ten, 16000)
    sf.write(tmp_path / "s120.wav", np.tile(ten, 12), 16000)
    common = ["--source_image", str(tmp_path / "portrait.png"), "--models", str(tiny_models), "--steps", "1",
              "--cfg_scale", "1", "--device", "cpu", "--no-progress", "data.n_sample_frames=30"]
    peaks = {s: _peak_rss_of_render([*common, "--driving_audio", str(tmp_path / f"{s}.wav"), "--output",
                                     str(tmp_path / f"{s}.mp4")]) for s in ("s10", "s120")}
    assert (tmp_path / "s120.mp4").stat().st_size > (tmp_path / "s10.mp4").stat().st_size
    assert peaks["s120"] - peaks["s10"] < 50 * 1024, peaks  # kB
