"""End to end: scripts/evaluate.py on small synthetic videos with random-weight metric models in the real formats,
and scripts/make_testset_manifest.py producing a manifest the batch renderer accepts."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from helpers import load_script
from emocast.cli import run_main
from emocast.testing.tiny_eval_models import write_test_video, write_tiny_eval_models


def _frames(rng, n, size=64):
    base = rng.integers(0, 255, (1, size, size, 3))
    drift = rng.integers(-20, 20, (n, size, size, 3))
    return np.clip(base + drift, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_tiny_eval_models(root / "models", only=("syncnet", "inception_fid", "emotion_fan"))
    rng = np.random.default_rng(0)
    gen, gt = root / "generated", root / "gt"
    gen.mkdir()
    gt.mkdir()
    n = 9
    audio = lambda: (rng.standard_normal(n * 640) * 3000).astype(np.int16)  # noqa: E731
    write_test_video(gen / "M003_angry_level_1_001.mp4", _frames(rng, n), audio())
    write_test_video(gen / "portrait1_clip02.mp4", _frames(rng, n), audio())
    write_test_video(gen / "portrait2_sad.mp4", _frames(rng, n))  # no audio track: LSE error, Acc_emo still runs
    write_test_video(gt / "gt1.mp4", _frames(rng, n))
    write_test_video(gt / "gt2.mp4", _frames(rng, n))
    labels = root / "labels.csv"
    labels.write_text("video,emotion\nportrait1_clip02.mp4,happy\n", encoding="utf-8")
    return root


def test_evaluate_writes_table_csv_and_json(setup):
    out = setup / "out"
    code = run_main(load_script("evaluate").main, [
        "--videos", str(setup / "generated"), "--gt", str(setup / "gt"), "--labels", str(setup / "labels.csv"),
        "--out", str(out), "--models-root", str(setup / "models"), "--device", "cpu", "--no-progress",
        "--method", "Tiny", "fid.frames_per_video=2", "lse.vshift=2", "--protocol", "syncnet_python,pytorch_fid,blazeface",
        "crop.syncnet=full", "crop.emotion=full"])  # noise videos have no face to detect
    assert code == 0
    table = (out / "table.md").read_text(encoding="utf-8")
    assert "| Method | Acc_emo ↑ | LSE-D ↓ | LSE-C ↑ | FID ↓ |" in table
    row = [l for l in table.splitlines() if l.startswith("| Tiny |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].endswith("%") and all(c != "-" for c in cells[1:])

    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert summary["num_videos"] == 3 and summary["acc_emo_labelled"] == 3  # MEAD name, labels CSV, name word
    assert summary["lse_videos"] == 2 and summary["lse_vshift"] == 2
    assert summary["fid_frames_generated"] == 6 and summary["fid_frames_reference"] == 4
    assert summary["fid"] > 0 and summary["lse_d"] > 0 and summary["lse_c"] >= 0

    with (out / "per_video.csv").open(encoding="utf-8") as fh:
        rows = {r["video"]: r for r in csv.DictReader(fh)}
    assert rows["portrait1_clip02.mp4"]["target_emotion"] == "happy"
    assert rows["M003_angry_level_1_001.mp4"]["target_emotion"] == "angry"
    assert rows["portrait2_sad.mp4"]["lse_d"] == "" and "no audio track" in rows["portrait2_sad.mp4"]["error"]
    assert float(rows["M003_angry_level_1_001.mp4"]["lse_d"]) > 0
    assert -2 <= int(rows["M003_angry_level_1_001.mp4"]["av_offset"]) <= 2
    assert all(r["predicted_emotion"] for r in rows.values())
    np.testing.assert_allclose(np.mean([float(rows[v]["lse_d"]) for v in rows if rows[v]["lse_d"]]),
                               summary["lse_d"], rtol=1e-4)


def test_evaluate_metric_selection_and_missing_models(setup, capsys, tmp_path):
    code = run_main(load_script("evaluate").main, [
        "--videos", str(setup / "generated"), "--out", str(tmp_path / "o"), "--metrics", "acc_emo",
        "--models-root", str(setup / "models"), "--device", "cpu", "--no-progress", "crop.emotion=full",
        "--protocol", "blazeface"])
    assert code == 0
    summary = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))
    assert summary["metrics"] == ["acc_emo"] and summary["lse_d"] is None and summary["fid"] is None
    assert "| - | - | - |" in (tmp_path / "o" / "table.md").read_text(encoding="utf-8")

    code = run_main(load_script("evaluate").main, [
        "--videos", str(setup / "generated"), "--metrics", "lse,fid", "--gt", str(setup / "gt"),
        "--models-root", str(tmp_path / "empty"), "--no-progress", "--protocol", "syncnet_python,pytorch_fid"])
    err = capsys.readouterr().err
    assert code != 0 and "download_models.py --only syncnet" in err and "inception_fid" in err
    assert "Traceback" not in err

    pytest.importorskip("mediapipe")
    code = run_main(load_script("evaluate").main, [  # default crops detect faces; noise videos have none
        "--videos", str(setup / "generated"), "--out", str(tmp_path / "d"), "--metrics", "acc_emo",
        "--models-root", str(setup / "models"), "--device", "cpu", "--no-progress", "--protocol", "blazeface"])
    err = capsys.readouterr().err
    assert code != 0 and "no face detected" in err and "'full'" in err

    code = run_main(load_script("evaluate").main, ["--videos", str(setup / "generated"), "--metrics", "fid",
                                               "--models-root", str(setup / "models")])
    assert code != 0 and "--gt" in capsys.readouterr().err


def test_make_testset_manifest_cross_product(tmp_path):
    from emocast.pipelines.batch import read_manifest

    images, audios = tmp_path / "images", tmp_path / "audios"
    images.mkdir()
    audios.mkdir()
    for i in range(2):
        (images / f"person{i}.png").write_bytes(b"png")
    for name in ("speech01_happy.wav", "M003_angry_level_3_002.wav", "speech03.wav"):
        (audios / name).write_bytes(b"wav")
    emotions = tmp_path / "emotions.csv"
    emotions.write_text("audio,emotion\nspeech03.wav,contempt\n", encoding="utf-8")
    code = run_main(load_script("make_testset_manifest").main, [
        "--images", str(images), "--audios", str(audios), "--emotions", str(emotions),
        "--out", str(tmp_path / "sets" / "wild.csv"), "--outputs-dir", str(tmp_path / "renders")])
    assert code == 0
    jobs = read_manifest(tmp_path / "sets" / "wild.csv")  # the batch renderer's own parser accepts it
    assert len(jobs) == 6
    assert {j.output.name for j in jobs} == {f"person{i}_{a}.mp4" for i in range(2)
                                            for a in ("speech01_happy", "M003_angry_level_3_002", "speech03")}
    assert all(j.output.parent == tmp_path / "renders" for j in jobs)
    with (tmp_path / "sets" / "wild_labels.csv").open(encoding="utf-8") as fh:
        labels = {r["video"]: r for r in csv.DictReader(fh)}
    assert labels["person0_speech03.mp4"]["emotion"] == "contempt"
    assert labels["person1_M003_angry_level_3_002.mp4"]["emotion"] == "angry"
    assert labels["person1_M003_angry_level_3_002.mp4"]["intensity"] == "3"
    assert labels["person0_speech01_happy.mp4"]["emotion"] == "happy"
    prompts = {j.output.name: j.prompt for j in jobs}
    assert prompts["person0_speech01_happy.mp4"] == labels["person0_speech01_happy.mp4"]["prompt"] != ""

    # the labels file feeds evaluate.py's label lookup
    from emocast.evaluation.acc_emo import read_labels_csv
    assert read_labels_csv(tmp_path / "sets" / "wild_labels.csv")["person0_speech03"] == "contempt"


def test_make_testset_manifest_rows_and_errors(tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.wav").write_bytes(b"x")
    rows = tmp_path / "rows.csv"
    rows.write_text("image,audio,emotion,prompt\na.png,b.wav,sad,\na.png,b.wav,,A calm talk.\n", encoding="utf-8")
    code = run_main(load_script("make_testset_manifest").main, ["--rows", str(rows), "--out", str(tmp_path / "m.jsonl")])
    assert code != 0 and "same file" in capsys.readouterr().err  # both rows would render to a_b.mp4
    rows.write_text("image,audio,emotion,prompt,output\na.png,b.wav,sad,,x.mp4\na.png,b.wav,,A calm talk.,y.mp4\n",
                    encoding="utf-8")
    assert run_main(load_script("make_testset_manifest").main, ["--rows", str(rows), "--out", str(tmp_path / "m.jsonl"),
                                                            "--template-prompts"]) == 0
    lines = [json.loads(l) for l in (tmp_path / "m.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines[0]["prompt"] == "a person talking with a sad expression" and lines[1]["prompt"] == "A calm talk."
    (tmp_path / "audios").mkdir()
    (tmp_path / "audios" / "speech.wav").write_bytes(b"x")
    code = run_main(load_script("make_testset_manifest").main, [
        "--images", str(tmp_path), "--audios", str(tmp_path / "audios"), "--out", str(tmp_path / "w.csv")])
    assert code != 0 and "no emotion for speech.wav" in capsys.readouterr().err


def test_evaluate_tiny_kit_render(tiny_models, tmp_path):
    """A video rendered by scripts/inference.py with the tiny kit (whose eval/ holds the random metric models)."""
    import soundfile as sf
    from PIL import Image

    from emocast.testing.synthetic import face_image, speech

    Image.fromarray(face_image("astronaut")[0]).save(tmp_path / "portrait.png")
    sf.write(tmp_path / "speech.wav", speech("Hello there.", 0.42, sr=16000), 16000)
    renders = tmp_path / "renders"
    code = run_main(load_script("inference").main, [
        "--source_image", str(tmp_path / "portrait.png"), "--driving_audio", str(tmp_path / "speech.wav"),
        "--prompt_emo", "A person is talking with happy emotion.", "--models", str(tiny_models),
        "--output", str(renders / "M003_happy_level_1_001.mp4"), "--steps", "2", "--no-separator", "--device", "cpu",
        "--no-progress", "data.n_sample_frames=4"])
    assert code == 0  # rendering is tested in detail in test_inference_e2e.py; here it supplies the video
    out = tmp_path / "eval"
    code = run_main(load_script("evaluate").main, [
        "--videos", str(renders), "--gt", str(renders), "--out", str(out), "--models-root", str(tiny_models),
        "--device", "cpu", "--no-progress", "crop.syncnet=full", "crop.emotion=full", "lse.vshift=2",
        "fid.frames_per_video=3", "--protocol", "syncnet_python,pytorch_fid,blazeface"])
    assert code == 0
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert summary["acc_emo_labelled"] == 1 and summary["lse_videos"] == 1
    assert summary["fid"] == pytest.approx(0.0, abs=1e-3)  # the same frames on both sides
    assert "| EmoCAST |" in (out / "table.md").read_text(encoding="utf-8")
