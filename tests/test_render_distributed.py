"""Distributed rendering of a manifest (``emocast.pipelines.render_run``) and launcher-aware data preparation.

Acceptance: ``accelerate launch`` starts 2 CPU processes over a 5-row manifest on the tiny kit: 5 videos, each
written once (by one process), one merged report from rank 0; a second launch renders nothing and reports 5
skipped. Units: the completeness check behind the resume, the split of rows, the launcher's environment.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from helpers import REPO, free_port, load_script
from emocast.cli import run_main
from emocast.runtime import Launch, launch_from_env
from emocast.testing.synthetic import face_image, speech

FAST = ["--steps", "1", "--no-separator", "--device", "cpu", "--no-progress", "data.n_sample_frames=8"]
ROWS = 5

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist_inputs")
    Image.fromarray(face_image("astronaut")[0]).save(d / "portrait.png")
    lines = ["image,audio,prompt"]
    for i in range(ROWS):
        sf.write(d / f"speech{i}.wav", speech("Hello there.", 0.16 + 0.04 * i, sr=16000, seed=i), 16000)
        lines.append(f"portrait.png,speech{i}.wav,\"A person is talking, take {i}.\"")
    (d / "jobs.csv").write_text("\n".join(lines) + "\n")
    return d / "jobs.csv"


def launch(manifest, tiny_models, outputs, cwd):
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           str(REPO / "scripts" / "inference.py"), "--manifest", str(manifest), "--models", str(tiny_models),
           "--outputs", str(outputs), *FAST]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=cwd)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res


def test_two_processes_render_each_row_once_and_a_relaunch_skips_them(manifest, tiny_models, tmp_path):
    out = tmp_path / "renders"
    first = launch(manifest, tiny_models, out, tmp_path)
    videos = sorted(out.glob("*.mp4"))
    assert [v.name for v in videos] == [f"portrait_speech{i}.mp4" for i in range(ROWS)]
    printed = [line for line in first.stdout.splitlines() if line.endswith(".mp4")]
    assert sorted(printed) == [str(v) for v in videos]  # every output written (and announced) exactly once
    report = json.loads((out / "render_report.json").read_text())
    assert (report["processes"], report["rows"], report["rendered"], report["skipped"], report["failed"]) == \
        (2, ROWS, ROWS, 0, 0)
    assert [v["rank"] for v in report["videos"]] == [0, 1, 0, 1, 0] and report["seconds_per_video"] > 0
    assert first.stderr.count("render_report.json") == 1  # one merged report, from rank 0
    assert not list(out.glob("*.partial*")) and not list(out.glob(".*"))
    stamps = {v: v.stat().st_mtime_ns for v in videos}

    second = launch(manifest, tiny_models, out, tmp_path)
    assert not [line for line in second.stdout.splitlines() if line.endswith(".mp4")]
    assert "0 rendered, 5 skipped (already complete), 0 failed of 5 rows on 2 process(es)" in second.stderr
    report = json.loads((out / "render_report.json").read_text())
    assert (report["rendered"], report["skipped"]) == (0, ROWS)
    assert {v["status"] for v in report["videos"]} == {"skipped"}
    assert {v: v.stat().st_mtime_ns for v in videos} == stamps  # nothing rewritten
    assert "loading models" not in second.stderr  # nothing to render: no model was loaded


def test_completeness_check_behind_the_resume(manifest, tmp_path):
    from emocast.media.video_writer import VideoWriter
    from emocast.pipelines.render_run import is_complete

    audio = manifest.parent / "speech2.wav"  # 0.24 s = 6 frames
    frames = np.zeros((6, 16, 16, 3), np.uint8)
    with VideoWriter(tmp_path / "ok.mp4", audio_path=audio) as w:
        w.write(frames)
    assert is_complete(tmp_path / "ok.mp4", audio)
    with VideoWriter(tmp_path / "short.mp4", audio_path=audio) as w:  # a render of fewer frames than the audio
        w.write(frames[:2])
    assert not is_complete(tmp_path / "short.mp4", audio)
    with VideoWriter(tmp_path / "silent.mp4") as w:
        w.write(frames)
    assert not is_complete(tmp_path / "silent.mp4", audio)
    (tmp_path / "cut.mp4").write_bytes((tmp_path / "ok.mp4").read_bytes()[:300])
    assert not is_complete(tmp_path / "cut.mp4", audio) and not is_complete(tmp_path / "none.mp4", audio)


def test_rows_are_split_by_rank_and_complete_ones_skipped(manifest, tmp_path):
    from dataclasses import replace

    from emocast.pipelines.batch import read_manifest
    from emocast.pipelines.render_run import split_rows

    jobs = [replace(j, output=tmp_path / f"{j.row}.mp4") for j in read_manifest(manifest)]
    parts = [split_rows(jobs, Launch(r, 2), False) for r in range(2)]
    assert [[j.row for j in todo] for todo, _ in parts] == [[2, 4, 6], [3, 5]]  # manifest lines (header = 1)
    (tmp_path / "2.mp4").write_bytes(b"not a video")  # exists but is not complete: rendered again
    todo, skipped = split_rows(jobs, None, False)
    assert len(todo) == ROWS and skipped == []


def test_launcher_environment():
    assert launch_from_env({}) is None
    assert launch_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None  # one process: not a distributed run
    assert launch_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Launch(1, 2, 1)
    from emocast.errors import ConfigError

    with pytest.raises(ConfigError, match="not in"):
        launch_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_data_preparation_takes_rank_and_world_size_from_the_launcher(tmp_path, capsys, monkeypatch):
    cli = load_script("data_preprocess")
    (tmp_path / "ds" / "samples").mkdir(parents=True)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert run_main(cli.main, ["--output", str(tmp_path / "ds"), "--prompts-only", "--no-progress"]) == 0
    assert "rank 1/3:" in capsys.readouterr().out
    assert run_main(cli.main, ["--output", str(tmp_path / "ds"), "--prompts-only", "--no-progress", "--rank", "0",
                               "--world-size", "1"]) == 0  # the flags still win
    assert "rank 0/1:" in capsys.readouterr().out


def test_failed_rows_are_reported_with_reasons_and_fail_the_run(manifest, tmp_path):
    from dataclasses import replace

    from emocast.errors import InputError
    from emocast.pipelines.batch import failed_rows_error, read_manifest
    from emocast.pipelines.render_run import render_rows, write_report

    class Pipe:  # stands in for EmoCASTPipeline: line 3 has "no face", line 4 hits a bug
        def render(self, image, audio, prompt, out, progress=True):
            if audio.name == "speech1.wav":
                raise InputError("no face found in portrait.png")
            if audio.name == "speech2.wav":
                raise RuntimeError("boom")
            out.write_bytes(b"video")
            return out

    jobs = [replace(j, output=tmp_path / f"{j.row}.mp4") for j in read_manifest(manifest)]
    results, stopped = render_rows(Pipe(), jobs, tmp_path, progress=False)
    assert [r.status for r in results] == ["rendered", "failed", "failed", "rendered", "rendered"] and not stopped
    path, report = write_report(results, tmp_path, 1)
    assert (report["rendered"], report["failed"]) == (3, 2) and path == tmp_path / "render_report.json"
    reasons = {v["row"]: v.get("reason") for v in json.loads(path.read_text())["videos"]}
    assert reasons[3] == "no face found in portrait.png" and reasons[4] == "RuntimeError: boom" and reasons[2] is None
    message = str(failed_rows_error([r.problem() for r in results if r.status == "failed"], [], len(results)))
    assert message.startswith("2 of 5 manifest rows failed") and "line 3 (portrait.png, speech1.wav): no face" in message
    results, stopped = render_rows(Pipe(), jobs, tmp_path, progress=False, fail_fast=True)
    assert [r.status for r in results] == ["rendered", "failed"] and stopped  # --fail-fast: the rest is left
