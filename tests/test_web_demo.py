"""The web demo (``python app.py``) on the tiny kit.

Without a browser: the advanced controls come from the config schema, a job's settings are checked like the
command line's and put back afterwards, and the progress callback follows every denoising step.

In a real browser: headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it) driven by Playwright loads the
page served by ``python app.py``, uploads the bundled portrait and speech, types a prompt and renders: a video
appears that Chromium can play, and the file it is served from is H.264 with an AAC track as long as the speech.
A portrait without a face shows the no-face message in the page, and no traceback anywhere. Skipped (with the
reason) only when no Chromium is installed.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from helpers import REPO, free_port
from emocast.errors import ConfigError, InputError

EXAMPLES = REPO / "examples"
PORTRAIT = EXAMPLES / "reference_images" / "astronaut.png"
SPEECH = EXAMPLES / "driving_audios" / "happy_news.wav"
TINY = ["--device", "cpu", "--no-separator", "inference_steps=1", "data.n_sample_frames=16"]


# ---------------------------------------------------------------------------------------------------- no browser
def test_every_advanced_control_is_a_config_key_with_a_widget():
    from emocast import config
    from emocast.demo import Control, component_spec, controls
    from emocast.pipelines.config import InferenceConfig

    cfg = config.load(InferenceConfig, (), ["inference_steps=7"])
    specs = {c.key: component_spec(c, cfg) for c in controls()}
    assert {"pose_weight", "face_weight", "lip_weight", "inference_steps", "cfg_scale", "seed"} <= set(specs)
    assert specs["inference_steps"][0] == "Slider" and specs["inference_steps"][1]["value"] == 7  # the loaded config
    assert specs["seed"][0] == "Number" and specs["preprocess.use_whole_image"][0] == "Checkbox"
    kind, kwargs = component_spec(Control("dtype", "dtype"), cfg)  # a Literal key: one line gives a drop-down
    assert kind == "Dropdown" and kwargs["choices"] == ["auto", "fp16", "bf16", "fp32"]
    with pytest.raises(KeyError, match="not an InferenceConfig key"):
        component_spec(Control("no_such_key", "x"), cfg)


def test_optional_controls_and_auto_numbers():
    import dataclasses

    from emocast import config
    from emocast.demo import ADVANCED, Control, component_spec, controls, job_config
    from emocast.pipelines.config import InferenceConfig

    keys = {f.name for f in dataclasses.fields(InferenceConfig)}
    optional = [c.key for c in ADVANCED if c.optional]
    assert optional == ["preset"]
    assert ("preset" in [c.key for c in controls()]) == ("preset" in keys)  # shown once the config has it
    cfg = config.load(InferenceConfig)
    kind, kwargs = component_spec(Control("data.size", "size", 64, 1024, 64), cfg)  # int | "auto", left at auto
    assert kind == "Number" and kwargs["value"] is None and kwargs["label"] == "size (empty: auto)"
    assert job_config(cfg, {"data.size": None}).data.size == "auto"
    assert job_config(cfg, {"data.size": 128.0}).data.size == 128


@pytest.fixture(scope="module")
def renderer(tiny_models, tmp_path_factory):
    from emocast import config
    from emocast.demo import DemoRenderer
    from emocast.pipelines.config import InferenceConfig
    from emocast.pipelines.inference import EmoCASTPipeline

    cfg = config.load(InferenceConfig, (), values={"models_root": str(tiny_models), "device": "cpu",
                                                   "preprocess.separate_vocals": False, "data.n_sample_frames": 4})
    pipe = EmoCASTPipeline.from_config(cfg, progress=False)
    yield DemoRenderer(pipe, cfg, False, tmp_path_factory.mktemp("demo_out"))
    pipe.close()


def test_a_job_reports_every_step_and_leaves_the_pipeline_as_it_was(renderer, tmp_path):
    from emocast.testing.synthetic import speech

    sf.write(tmp_path / "s.wav", speech("Hi there.", 0.3, sr=16000), 16000)  # 8 frames = 2 clips of 4
    before = renderer.pipe.sampler.settings
    calls = []
    out = renderer(str(PORTRAIT), str(tmp_path / "s.wav"), "happy", {"inference_steps": 3.0, "cfg_scale": 1.0,
                                                                      "seed": 5.0},
                   progress=lambda fraction, desc: calls.append((fraction, desc)))
    assert out.is_file() and out.name == "astronaut_s.mp4"
    assert [round(f, 4) for f, _ in calls] == [round(i / 6, 4) for i in range(1, 7)]
    assert calls[-1][1] == "clip 2/2, step 6/6"
    assert renderer.pipe.sampler.settings is before


@pytest.mark.parametrize("values, message", [({"inference_steps": 0}, "inference_steps must be at least 1"),
                                             ({"cfg_scale": float("nan")}, "cfg_scale must be a finite number")])
def test_a_bad_setting_is_a_message(renderer, values, message):
    with pytest.raises(ConfigError, match=message):
        renderer(str(PORTRAIT), str(SPEECH), "happy", values)


def test_missing_inputs_are_messages(renderer):
    with pytest.raises(InputError, match="no portrait"):
        renderer(None, str(SPEECH), "happy", {})
    with pytest.raises(InputError, match="no speech"):
        renderer(str(PORTRAIT), None, "happy", {})


# ---------------------------------------------------------------------------------------------------- the browser
def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def app_server(tiny_models, tmp_path_factory):
    """``python app.py`` on the tiny kit, on a free port of 127.0.0.1; stopped at the end of the module."""
    browser = chromium_path()
    if browser is None:
        reason = "no Chromium on PATH (apt-get install chromium chromium-driver; .ci/run does it)"
        print(f"\nskipping the browser test: {reason}", file=sys.stderr)
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("web")
    port = free_port()
    log = (tmp / "app.log").open("w")
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_TEMP_DIR=str(tmp / "gradio"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--models", str(tiny_models), "--port", str(port),
                             "--outputs", str(tmp / "videos"), *TINY], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{(tmp / 'app.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"app.py did not serve {url} within 180 s:\n{(tmp / 'app.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "browser": browser, "log": tmp / "app.log", "tmp": tmp}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


@pytest.fixture()
def page(app_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=app_server["browser"], args=["--no-sandbox"], timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(60_000)
            page.goto(app_server["url"])
            page.wait_for_selector("#run")
            yield page
        finally:
            browser.close()


def fill(page, image, audio, prompt):
    page.locator("#portrait input[type=file]").set_input_files(str(image))
    page.locator("#speech input[type=file]").set_input_files(str(audio))
    page.locator("#prompt textarea").fill(prompt)
    page.wait_for_selector("#portrait img")  # the uploads are in the page before the job starts
    page.wait_for_selector("#speech audio, #speech [data-testid='waveform-controls'], #speech button", state="attached")


def test_browser_renders_a_playable_video_with_audio(app_server, page, tmp_path):
    from emocast.media.video import probe

    fill(page, PORTRAIT, SPEECH, "A person is talking with happy emotion.")
    page.click("#run")
    page.wait_for_selector("#video video[src]", timeout=240_000)
    page.wait_for_function("() => { const v = document.querySelector('#video video');"
                           " return v && v.readyState >= 1 && v.duration > 0 && !v.error; }")
    duration = page.evaluate("() => document.querySelector('#video video').duration")
    src = page.locator("#video video").get_attribute("src")
    served = page.request.get(src)
    assert served.ok
    (tmp_path / "served.mp4").write_bytes(served.body())
    info = probe(tmp_path / "served.mp4")
    speech = sf.info(str(SPEECH)).duration
    assert info.has_audio and info.fps == 25 and info.frames == math.ceil(speech * 25)
    assert abs(duration - info.frames / 25) < 0.1
    assert "Traceback" not in app_server["log"].read_text()


def test_browser_no_face_shows_the_message(app_server, page, tmp_path):
    Image.fromarray(np.full((160, 160, 3), 20, np.uint8)).save(tmp_path / "dark.png")  # the tiny detector: no face
    fill(page, tmp_path / "dark.png", SPEECH, "A person is talking with sad emotion.")
    page.click("#run")
    message = page.get_by_text("no face found", exact=False).first
    message.wait_for(timeout=120_000)
    assert "Fix:" in message.inner_text() or "allow" in message.inner_text()  # the whole message, with its fix
    assert "Traceback" not in page.content() and "Traceback" not in app_server["log"].read_text()
