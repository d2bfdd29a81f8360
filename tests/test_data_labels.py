"""Emotion labels: MEAD naming, classifier aggregation and plugging, labels CSV, emotive prompt bank, LLM hook."""
from __future__ import annotations

import http.server
import json
import sys
import threading

import numpy as np
import pytest

from emocast.data import emotion
from emocast.data.video_prep import read_labels_csv
from emocast.errors import ConfigError, InputError
from emocast.labels import emotions, mead, prompts


# ------------------------------------------------------------------------------------------------ MEAD naming
@pytest.mark.parametrize("path, expected", [
    ("MEAD/M003/video/front/angry/level_1/001.mp4", ("M003", "angry", 1, "001", "front", "video")),
    ("/data/W009/video/left_30/surprised/level_3/030.mp4", ("W009", "surprised", 3, "030", "left_30", "video")),
    ("M030/video/down/contempt/level_2/012.mp4", ("M030", "contempt", 2, "012", "down", "video")),
    ("M003/video/front/neutral/level_1/040.mp4", ("M003", "neutral", 1, "040", "front", "video")),
    ("M003/audio/disgusted/level_2/001.m4a", ("M003", "disgusted", 2, "001", None, "audio")),
    ("W011/audio/fear/level_3/007.m4a", ("W011", "fear", 3, "007", None, "audio")),
    ("M003_front_angry_level_1_001.mp4", ("M003", "angry", 1, "001", "front", "flat")),
    ("clips/W015_right_60_sad_level_3_021.mp4", ("W015", "sad", 3, "021", "right_60", "flat")),
    ("M012_happy_level_2_005.mp4", ("M012", "happy", 2, "005", None, "flat")),
])
def test_mead_paths_parse(path, expected):
    m = mead.parse_mead(path)
    assert m is not None
    assert (m.identity, m.emotion, m.intensity, m.clip, m.view, m.kind) == expected


@pytest.mark.parametrize("path", [
    "WRA_KellyAyotte_000.mp4",  # HDTF
    "M003_front_angry_level_4_001.mp4",  # MEAD has levels 1-3 only
    "M003/video/front/bored/level_1/001.mp4",  # not a MEAD emotion
    "angry.mp4", "X003_front_angry_level_1_001.mp4", "M003/video/front/angry/001.mp4",
])
def test_non_mead_paths_are_not_parsed(path):
    assert mead.parse_mead(path) is None


def test_mead_separate_audio_file_is_found(tmp_path):
    video = tmp_path / "M003/video/front/angry/level_1/001.mp4"
    audio = tmp_path / "M003/audio/angry/level_1/001.m4a"
    for p in (video, audio):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
    assert mead.mead_audio_for(video) == audio
    assert mead.mead_audio_for(tmp_path / "M003/video/front/angry/level_1/002.mp4") is None
    assert mead.mead_audio_for(tmp_path / "M003_front_angry_level_1_001.mp4") is None


# ------------------------------------------------------------------------------------------------ labels
def test_emotion_aliases_and_intensity():
    assert emotions.normalize_emotion("Anger") == "angry"
    assert emotions.normalize_emotion("surprise") == "surprised"
    assert emotions.normalize_emotion("Disgust") == "disgusted"
    assert emotions.normalize_intensity("level_2", "sad") == 2
    assert emotions.normalize_intensity(3, "neutral") == 1
    with pytest.raises(InputError):
        emotions.normalize_emotion("bored")
    with pytest.raises(InputError):
        emotions.normalize_intensity(4, "sad")


def test_aggregate_label_and_intensity():
    classes = ("happy", "angry", "disgusted", "fear", "sad", "neutral", "surprised", "contempt")  # Emotion-FAN order
    p = np.full((10, 8), 0.02)
    p[:, 0] = 0.86  # happy, confident
    lab = emotion.aggregate(p, classes)
    assert lab.emotion == "happy" and lab.intensity == 3 and lab.confidence == pytest.approx(0.86)
    p = np.full((10, 8), 0.08)
    p[:, 4] = 0.44  # sad, unsure
    assert (emotion.aggregate(p, classes).emotion, emotion.aggregate(p, classes).intensity) == ("sad", 1)
    assert emotion.aggregate(p, classes, thresholds=(0.3, 0.4)).intensity == 3
    q = np.full((4, 8), 0.0)
    q[:, 5] = 1.0
    assert (emotion.aggregate(q, classes).emotion, emotion.aggregate(q, classes).intensity) == ("neutral", 1)
    # per-frame votes: the mean decides, unnormalised rows are normalised
    r = np.zeros((3, 8))
    r[0, 1], r[1, 1], r[2, 3] = 5.0, 5.0, 5.0
    assert emotion.aggregate(r, classes).emotion == "angry"
    with pytest.raises(ConfigError):
        emotion.aggregate(p, classes, thresholds=(0.8, 0.5))


class ConstantClassifier:
    """A user classifier plugged by 'module:Class' (always 'fear')."""

    classes = ("neutral", "fear")

    def __init__(self, models_root=None, device="cpu"):
        self.seen = 0

    def predict_frames(self, frames):
        self.seen += len(frames)
        return np.tile([0.2, 0.8], (len(frames), 1))


def test_plug_a_user_classifier():
    clf = emotion.load_classifier(f"{__name__}:ConstantClassifier")
    lab = emotion.classify_video(clf, np.zeros((5, 32, 32, 3), np.uint8))
    assert (lab.emotion, lab.intensity, clf.seen) == ("fear", 3, 5)
    with pytest.raises(ConfigError):
        emotion.load_classifier("not_a_spec")
    with pytest.raises(ConfigError):
        emotion.load_classifier("emocast.nothing_here:Model")


def test_emotion_fan_needs_the_users_weights(tmp_path):
    with pytest.raises(Exception) as err:
        emotion.load_classifier("emotion_fan", models_root=tmp_path)
    assert "emotion_fan" in str(err.value)


def test_labels_csv(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("video,identity,emotion,intensity,prompts\n"
                 "a/clip1.mp4,spk1,Happiness,2,The portrait is at a party.|A person is laughing.\n"
                 "b.mp4,,neutral,,\n", encoding="utf-8")
    lab = read_labels_csv(p)
    assert lab["a/clip1.mp4"].emotion == "happy" and lab["a/clip1.mp4"].intensity == 2
    assert lab["a/clip1.mp4"].prompts == ["The portrait is at a party.", "A person is laughing."]
    assert lab["b.mp4"].identity is None and lab["b.mp4"].intensity == 1
    p.write_text("video,emotion\nx.mp4,bored\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2"):
        read_labels_csv(p)


# ------------------------------------------------------------------------------------------------ prompt bank
@pytest.mark.parametrize("emo", emotions.EMOTIONS)
def test_at_least_20_distinct_descriptions_per_emotion_and_level(emo):
    assert len(set(prompts.bank(emo))) >= 20
    for level in emotions.INTENSITIES:
        bank = prompts.bank(emo, level)
        assert len(set(bank)) >= 20
        for text in bank:
            assert text[0].isupper() and text.endswith(".") and len(text.split()) <= 25


def test_prompts_are_intensity_aware_and_in_the_readme_style():
    assert "The portrait is watching a horror movie with jump scares." in prompts.bank("fear", 3)
    assert not any("horror movie" in t for t in prompts.bank("fear", 1))
    assert "The portrait is experiencing chronic illness or pain." in prompts.bank("sad", 2)
    assert "A person is talking with intense anger." in prompts.bank("angry", 3)
    assert not set(prompts.bank("happy", 1)) & set(prompts.bank("happy", 3))


def test_sampling_is_reproducible_for_a_seed():
    a = prompts.sample_prompts("fear", 2, n=4, seed="0:M003__video__front__fear__level_2__001")
    b = prompts.sample_prompts("fear", 2, n=4, seed="0:M003__video__front__fear__level_2__001")
    assert a == b and len(set(a)) == 4 and set(a) <= set(prompts.bank("fear", 2))
    others = {tuple(prompts.sample_prompts("fear", 2, n=4, seed=s)) for s in range(10)}
    assert len(others) > 5
    assert len(prompts.sample_prompts("sad", 1, n=500, seed=1)) == len(prompts.bank("sad", 1))
    assert prompts.make_prompts(None, None, 3, seed=0) == []


# ------------------------------------------------------------------------------------------------ LLM hook
def test_llm_command_hook():
    cmd = (f"{sys.executable} -c \"import sys; n=int(sys.argv[2]); "
           f"print('\\n'.join(f'{{i+1}}. The portrait feels {{sys.argv[1]}} in scene {{i}}.' for i in range(n)))\" "
           "{emotion} {n}")
    llm = prompts.LLMPrompter(command=cmd)
    out = llm.generate("Anger", 2, 3)
    assert out == [f"The portrait feels angry in scene {i}." for i in range(3)]
    bad = prompts.LLMPrompter(command=f"{sys.executable} -c \"import sys; sys.exit(3)\"")
    with pytest.raises(InputError, match="exited with 3"):
        bad.generate("sad", 1, 2)
    assert prompts.make_prompts("sad", 1, 2, seed=0, llm=bad) == prompts.sample_prompts("sad", 1, 2, 0)


@pytest.fixture
def stub_llm_server():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body, self.headers.get("Authorization")))
            content = "- The portrait is lost in a dark forest.\n- \"The portrait hears a scream.\"\n"
            data = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()
    server.server_close()


def test_llm_openai_compatible_endpoint(stub_llm_server, monkeypatch):
    url, seen = stub_llm_server
    monkeypatch.setenv("EMOCAST_TEST_KEY", "sk-test")
    llm = prompts.LLMPrompter(endpoint=url, model="local-model", api_key_env="EMOCAST_TEST_KEY")
    out = llm.generate("fear", 3, 2)
    assert out == ["The portrait is lost in a dark forest.", "The portrait hears a scream."]
    path, body, auth = seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "local-model" and auth == "Bearer sk-test"
    assert "fear" in body["messages"][0]["content"]


def test_llm_endpoint_failure_is_a_clear_error():
    llm = prompts.LLMPrompter(endpoint="http://127.0.0.1:9/v1", timeout=2)
    with pytest.raises(InputError, match="llm_endpoint"):
        llm.generate("happy", 1, 1)
    with pytest.raises(ConfigError):
        prompts.LLMPrompter()
