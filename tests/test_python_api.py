"""The Python API (``from emocast import EmoCASTPipeline``): importing ``emocast`` stays cheap, the README's snippet
runs as written on the tiny kit, ``pipe(...)`` returns the frames the streamed ``render`` writes, and the progress
callback sees every denoising step of every clip."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from helpers import REPO
from emocast.testing.synthetic import face_image, speech

SECONDS = 0.3  # ceil(0.3 * 25) = 8 frames

pytestmark = pytest.mark.usefixtures("one_thread")


def readme_snippet(section: str = "Python API") -> str:
    """The first ```python block of the README section ``section``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    part = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", part, re.S).group(1)


def decoded(path):
    with av.open(str(path)) as c:
        has_audio = bool(c.streams.audio)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return frames, has_audio


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("api_inputs")
    Image.fromarray(face_image("astronaut")[0]).save(d / "me.png")
    sf.write(d / "speech.wav", speech("Hello there.", SECONDS, sr=16000), 16000)
    return d


def test_importing_emocast_loads_no_heavy_library():
    code = ("import sys, emocast; heavy = [m for m in ('torch', 'diffusers', 'mediapipe', 'transformers', 'av') "
            "if m in sys.modules]; print(heavy); assert 'EmoCASTPipeline' in dir(emocast)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    import emocast

    with pytest.raises(AttributeError, match="no attribute 'Pipeline'"):
        emocast.Pipeline  # noqa: B018


def test_readme_snippet_runs_as_written(inputs, tiny_models, tmp_path, monkeypatch):
    snippet = readme_snippet()
    assert len(snippet.strip().splitlines()) <= 5 and "from emocast import EmoCASTPipeline" in snippet
    for name in ("me.png", "speech.wav"):
        (tmp_path / name).symlink_to(inputs / name)
    (tmp_path / "pretrained_models").symlink_to(tiny_models, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMOCAST_MODELS", raising=False)
    exec(compile(snippet, "README.md", "exec"), {})  # noqa: S102 - the documented snippet, unchanged
    frames, has_audio = decoded(tmp_path / "out.mp4")
    assert len(frames) == math.ceil(SECONDS * 25) and has_audio


@pytest.fixture(scope="module")
def pipe(tiny_models):
    from emocast import EmoCASTPipeline

    p = EmoCASTPipeline.from_pretrained(tiny_models, device="cpu", inference_steps=2, progress=False,
                                        **{"data.n_sample_frames": 4, "preprocess.separate_vocals": False})
    yield p
    p.close()


def test_call_returns_the_frames_render_writes_and_reports_every_step(pipe, inputs, tmp_path):
    seen = []
    video = pipe(inputs / "me.png", inputs / "speech.wav", "A person is talking with happy emotion.",
                 progress=False, callback=seen.append)
    n = math.ceil(SECONDS * 25)
    assert video.frames.shape == (n, 64, 64, 3) and video.frames.dtype == np.uint8 and video.fps == 25
    assert len(video) == n and video.audio.ndim == 2 and video.audio_rate == 16000
    clips = math.ceil(n / 4)
    assert [p.step for p in seen] == list(range(1, clips * 2 + 1)) and {p.total for p in seen} == {clips * 2}
    assert [p.clip for p in seen] == [c for c in range(clips) for _ in range(2)] and seen[-1].fraction == 1.0

    saved = video.save(tmp_path / "api.mp4")
    streamed = pipe.render(inputs / "me.png", inputs / "speech.wav", "A person is talking with happy emotion.",
                           tmp_path / "render.mp4", progress=False)
    a, audio_a = decoded(saved)
    b, audio_b = decoded(streamed)
    assert audio_a and audio_b and np.array_equal(a, b)
    assert (tmp_path / "api.mp4").read_bytes() == (tmp_path / "render.mp4").read_bytes()  # one writer, one file


def test_bad_input_is_an_emocast_error_before_any_sampling(pipe, tmp_path):
    from emocast import EmoCASTError

    Image.fromarray(np.full((96, 96, 3), 10, np.uint8)).save(tmp_path / "dark.png")
    sf.write(tmp_path / "s.wav", speech("Hi.", 0.2, sr=16000), 16000)
    calls = []
    with pytest.raises(EmoCASTError, match="no face found"):
        pipe(tmp_path / "dark.png", tmp_path / "s.wav", "sad", progress=False, callback=calls.append)
    assert calls == []
    assert sorted(os.listdir(tmp_path)) == ["dark.png", "s.wav"]
