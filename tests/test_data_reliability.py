"""Data preparation and evaluation faults end in a right result: a failure report cut by a kill, videos where the
face detector (almost) never fires."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from emocast.data import prep_run


def test_a_report_line_cut_by_a_kill_never_swallows_the_next_entry(tmp_path, caplog):
    """A kill while an entry was written leaves a line without its end; the next entry starts on a new line (it
    used to be glued to the cut one, so that video was lost from the report and prepared again), and the cut line
    is ignored with a warning naming it."""
    report = prep_run.report_path(tmp_path, 0)
    report.parent.mkdir(parents=True)
    first = {"video": "a.mp4", "video_id": "a", "reason": "no_face", "message": "no face", "time": 1.0}
    report.write_text(json.dumps(first) + "\n" + '{"video": "b.mp4", "video_id": "b", "rea')
    prep_run._append(report, {"video": "c.mp4", "video_id": "c", "reason": "too_short", "message": "short",
                              "time": 3.0})
    with caplog.at_level(logging.WARNING, logger="emocast.data"):
        failures = prep_run.read_failures(tmp_path)
    assert sorted(failures) == ["a", "c"] and failures["c"]["reason"] == "too_short"
    assert f"{report}, line 2: not a complete entry" in caplog.text
    assert report.read_text().endswith('"time": 3.0}\n') and report.read_text().count("\n") == 3


def test_videos_with_too_few_face_frames_fail_instead_of_being_scored(tmp_path):
    """The face detector fires on 1 of 20 frames of a noise video: before, that box was spread over every frame
    and the noise was scored; now the video needs a face in crop.min_face_share (default 0.9) of its frames, the
    CSV says in how many frames one was found, and the video is failed, counted and left out of the averages."""
    import csv

    import cv2
    import skimage.data

    from helpers import load_script
    from emocast.cli import run_main
    from emocast.testing.tiny_eval_models import write_test_video, write_tiny_eval_models

    pytest.importorskip("mediapipe")
    write_tiny_eval_models(tmp_path / "models")
    face = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (20, 256, 256, 3), dtype=np.uint8)
    noise[10] = face
    audio = lambda: (rng.standard_normal(20 * 640) * 3000).astype(np.int16)  # noqa: E731
    videos = tmp_path / "videos"
    write_test_video(videos / "talking.mp4", np.stack([face] * 20), audio())
    write_test_video(videos / "noise.mp4", noise, audio())
    out = tmp_path / "eval"
    code = run_main(load_script("evaluate").main, [
        "--videos", str(videos), "--out", str(out), "--models-root", str(tmp_path / "models"), "--device", "cpu",
        "--metrics", "lse", "--no-progress", "lse.vshift=2", "lse.protocol=syncnet_python"])
    assert code == 0
    rows = {r["video"]: r for r in csv.DictReader((out / "per_video.csv").open(encoding="utf-8"))}
    assert rows["talking.mp4"]["face_frames"] == "20" and rows["talking.mp4"]["lse_d"] != ""
    assert rows["noise.mp4"]["face_frames"] == "1" and rows["noise.mp4"]["lse_d"] == ""
    assert "only 1 of 20 frames" in rows["noise.mp4"]["error"]
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert summary["num_face_failed"] == 1 and summary["face_failed"] == ["noise.mp4"]
    assert summary["lse_videos"] == 1 and summary["min_face_share"] == 0.9
    from emocast import config
    from emocast.errors import ConfigError
    from emocast.evaluation.config import EvalConfig

    assert config.load(EvalConfig, (), ["crop.min_face_share=0.02"]).crop.min_face_share == 0.02
    with pytest.raises(ConfigError, match="crop.min_face_share must be at most 1"):
        config.load(EvalConfig, (), ["crop.min_face_share=1.5"])
