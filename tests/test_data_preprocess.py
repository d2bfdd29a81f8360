"""Data preparation end to end on synthetic talking videos (real face photos, espeak-ng speech, PyAV mux).

One module-scoped run prepares a folder of good and bad videos; the other tests check its outputs, resuming,
atomicity under an exception and under a killed process, and sharding.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emocast.data import layout, prep_run
from emocast.data.video_io import list_videos
from emocast import config
from emocast.data.config import DataPrepConfig
from emocast.data.video_prep import PrepModels
from emocast.testing import synthetic

REPO = Path(__file__).resolve().parents[1]
SIZE = 96
MEAD_TREE = "M003/video/front/angry/level_2/001.mp4"
MEAD_FLAT = "W009_front_happy_level_3_002.mp4"
GOOD = {  # relative path -> expected frames at 25 fps
    MEAD_TREE: 50,  # 2.0 s at 30 fps, 256x224
    MEAD_FLAT: 40,  # 1.6 s at 24 fps, 200x200
}
BAD = {"noface.mp4": "no_face", "two_faces.mp4": "several_faces", "corrupt.mp4": "unreadable",
       "short.mp4": "too_short", "mismatch.mp4": "av_mismatch"}


def _cfg(**values) -> DataPrepConfig:
    """The typed config with the test sizes; ``values``: more dotted keys (``**{"sync.enabled": True}``)."""
    return config.load(DataPrepConfig, values={"prep.size": SIZE, "prep.min_frames": 20, "prompts.per_video": 2,
                                               **values})


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    synthetic.make_talking_video(root / MEAD_TREE, face="astronaut", seconds=2.0, fps=30)
    synthetic.make_talking_video(root / MEAD_FLAT, face="hanks", seconds=1.6, fps=24, size=(200, 200))
    synthetic.make_no_face_video(root / "noface.mp4", seconds=1.2)
    synthetic.make_two_face_video(root / "two_faces.mp4", seconds=1.2)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    synthetic.make_talking_video(root / "short.mp4", seconds=0.4, fps=25)
    synthetic.make_talking_video(root / "mismatch.mp4", seconds=1.6, fps=25, audio_seconds=1.0)
    return root


@pytest.fixture(scope="module")
def models(tiny_models):
    return PrepModels(_cfg(), tiny_models)


@pytest.fixture(scope="module")
def prepared(videos, models, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    summary = prep_run.run(list_videos(videos), videos, out, _cfg(), models=models, progress=False)
    return out, summary


def _vid(rel: str) -> str:
    return layout.video_id_for(rel, ".") if "/" in rel else Path(rel).stem


def test_every_artifact_with_expected_shapes(prepared, tiny_models):
    out, summary = prepared
    cfg = json.loads((tiny_models / "wav2vec/wav2vec2-base-960h/config.json").read_text())
    assert sorted(summary.done) == sorted(_vid(r) for r in GOOD)
    for rel, n in GOOD.items():
        d = layout.sample_dir(out, _vid(rel))
        assert layout.missing_files(d) == []
        rec = layout.read_info(d)
        assert rec.num_frames == rec.num_audio_frames == n
        frames = layout.read_frames(d)
        assert frames.shape == (n, SIZE, SIZE, 3) and frames.dtype == np.uint8
        assert frames.std() > 10  # real picture content, not a blank crop
        assert np.abs(frames[0].astype(int) - frames[n // 2].astype(int)).mean() > 0.5  # the face moves
        wave, sr = sf.read(str(d / layout.AUDIO))
        assert sr == 16000 and wave.ndim == 1 and len(wave) == n * 640 and np.abs(wave).max() > 0.05
        emb = layout.read_face_emb(d)
        assert emb.shape == (512,) and np.isfinite(emb).all() and np.abs(emb).sum() > 0
        feats = layout.read_audio_emb(d)
        assert tuple(feats.shape) == (n, cfg["num_hidden_layers"], cfg["hidden_size"])
        assert str(feats.dtype) == "torch.float16" and bool(feats.isfinite().all())
        region = layout.read_face_region(d)
        assert region.shape == (SIZE, SIZE) and set(np.unique(region)) == {0, 255}
        ys, xs = np.nonzero(region)  # one filled rectangle
        assert (region[ys.min():ys.max() + 1, xs.min():xs.max() + 1] == 255).all()
        masks = layout.read_masks(d)
        assert all(m.shape == (64, 64) and m.dtype == np.uint8 for m in masks.values())
        lip_peak = np.unravel_index(np.argmax(masks["lip"]), (64, 64))
        assert masks["full"][lip_peak] < 64  # the lips lie inside the face, away from the background mask
        assert lip_peak[0] > 32  # and in the lower half of the crop
        x0, y0, x1, y1 = rec.crop_box
        assert x1 - x0 == y1 - y0 > 0
        assert rec.fps == 25 and rec.size == SIZE and not layout.tmp_dir(out, rec.video_id).exists()


def test_labels_and_prompts_from_mead_names(prepared):
    out, _ = prepared
    tree = layout.read_info(layout.sample_dir(out, _vid(MEAD_TREE)))
    assert (tree.identity, tree.emotion, tree.intensity, tree.emotion_source) == ("M003", "angry", 2, "dataset")
    flat = layout.read_info(layout.sample_dir(out, _vid(MEAD_FLAT)))
    assert (flat.identity, flat.emotion, flat.intensity) == ("W009", "happy", 3)
    for rec in (tree, flat):
        assert len(rec.prompts) == 2 and len(set(rec.prompts)) == 2
    assert tree.source_fps == 30.0 and flat.source_fps == 24.0


def test_bad_videos_land_in_the_failure_report(prepared):
    out, summary = prepared
    report = prep_run.read_failures(out)
    for name, reason in BAD.items():
        vid = Path(name).stem
        assert summary.failed[vid] == reason, report.get(vid)
        assert report[vid]["reason"] == reason and report[vid]["message"]
        assert not layout.sample_dir(out, vid).exists()
    assert sorted(layout.list_samples(out)) == sorted(_vid(r) for r in GOOD)
    assert not [p for p in layout.samples_dir(out).iterdir() if p.name.startswith(".")]


def test_second_run_skips_finished_and_failed_videos(prepared, videos, monkeypatch):
    out, _ = prepared
    before = {v: (layout.sample_dir(out, v) / layout.FRAMES).stat().st_mtime_ns for v in layout.list_samples(out)}

    def no_models(*a, **k):
        raise AssertionError("models must not be loaded when there is nothing to do")

    monkeypatch.setattr(prep_run, "PrepModels", no_models)
    summary = prep_run.run(list_videos(videos), videos, out, _cfg(), progress=False)
    assert summary.done == [] and summary.failed == {}
    assert len(summary.skipped) == len(GOOD) + len(BAD)
    after = {v: (layout.sample_dir(out, v) / layout.FRAMES).stat().st_mtime_ns for v in layout.list_samples(out)}
    assert after == before


def _one_video_input(videos: Path, tmp: Path) -> Path:
    inp = tmp / "in"
    (inp / Path(MEAD_TREE).parent).mkdir(parents=True)
    shutil.copy(videos / MEAD_TREE, inp / MEAD_TREE)
    return inp


def _assert_complete(out: Path, vid: str, n: int):
    d = layout.sample_dir(out, vid)
    assert layout.missing_files(d) == []
    assert layout.read_frames(d).shape[0] == n
    assert layout.read_audio_emb(d).shape[0] == n
    assert layout.read_info(d).num_frames == n
    assert not [p for p in layout.samples_dir(out).iterdir() if p.name.startswith(".")]


def test_exception_midway_leaves_nothing_and_rerun_completes(videos, models, tmp_path, monkeypatch):
    inp = _one_video_input(videos, tmp_path)
    out = tmp_path / "out"
    vid = _vid(MEAD_TREE)

    def boom(*a, **k):
        raise RuntimeError("disk full (injected)")

    with monkeypatch.context() as m:
        m.setattr(layout, "write_audio_emb", boom)  # after frames, masks, embedding and audio were written
        summary = prep_run.run(list_videos(inp), inp, out, _cfg(), models=models, progress=False)
    assert summary.failed == {vid: "error"}
    assert "disk full" in prep_run.read_failures(out)[vid]["message"]
    assert list(layout.samples_dir(out).iterdir()) == []  # neither the sample nor its staging folder
    summary = prep_run.run(list_videos(inp), inp, out, _cfg(), models=models, progress=False)
    assert summary.done == [vid]  # unexpected errors are retried
    _assert_complete(out, vid, GOOD[MEAD_TREE])


KILL_SCRIPT = """
import os, sys
sys.path.insert(0, {repo!r})
import emocast.data.layout as L
real = L.write_wav
def killed(*a, **k):
    real(*a, **k)
    os._exit(9)  # the process dies here: no cleanup, no exception handlers
L.write_wav = killed
from scripts.data_preprocess import main
main(sys.argv[1:])
"""


def test_killed_process_then_restart_completes(videos, tiny_models, models, tmp_path):
    inp = _one_video_input(videos, tmp_path)
    out = tmp_path / "out"
    vid = _vid(MEAD_TREE)
    args = ["--input", str(inp), "--output", str(out), "--models-root", str(tiny_models), "--size", str(SIZE),
            "--no-progress", "prep.min_frames=20"]
    res = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(repo=str(REPO)), *args], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 9, res.stderr[-2000:]
    staged = layout.tmp_dir(out, vid)
    assert (staged / layout.FRAMES).is_file()  # half-written, but only in the staging folder
    assert not layout.sample_dir(out, vid).exists() and layout.list_samples(out) == []
    summary = prep_run.run(list_videos(inp), inp, out, _cfg(), models=models, progress=False)
    assert summary.done == [vid]
    _assert_complete(out, vid, GOOD[MEAD_TREE])


def test_sharding_splits_videos_between_workers(videos):
    vids = list_videos(videos)
    parts = [prep_run.shard(vids, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == sorted(vids)
    assert all(set(a).isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1:])
    with pytest.raises(ValueError):
        prep_run.shard(vids, 3, 3)


def test_unlabelled_video_with_classifier_and_sync_scores(videos, tiny_models, tmp_path):
    """A non-MEAD video: identity from its folder, emotion from Emotion-FAN (random tiny weights, real loader),
    SyncNet scores in info.json, prompts for the predicted label, and separated vocals (audio-separator needs the
    ffmpeg binary)."""
    inp = tmp_path / "in"
    (inp / "speaker7").mkdir(parents=True)
    shutil.copy(videos / MEAD_FLAT, inp / "speaker7" / "talk.mp4")
    vocals = shutil.which("ffmpeg") is not None
    cfg = _cfg(**{"emotion.classifier": "emotion_fan", "emotion.frames": 4, "sync.enabled": True,
                  "prep.vocals": vocals})
    summary = prep_run.run(list_videos(inp), inp, tmp_path / "out", cfg, models_root=tiny_models, progress=False)
    assert summary.done == ["speaker7__talk"], prep_run.read_failures(tmp_path / "out")
    rec = layout.read_info(layout.sample_dir(tmp_path / "out", "speaker7__talk"))
    assert rec.identity == "speaker7" and rec.emotion_source == "classifier"
    assert rec.emotion in ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
    assert rec.intensity in (1, 2, 3) and 0 < rec.emotion_confidence <= 1
    assert len(rec.prompts) == 2
    assert set(rec.sync) >= {"offset", "confidence", "min_dist"} and rec.sync["frames"] == GOOD[MEAD_FLAT]
    assert abs(rec.sync["offset"]) <= 15 and np.isfinite(rec.sync["min_dist"])
    d = layout.sample_dir(tmp_path / "out", "speaker7__talk")
    assert rec.has_vocals == vocals == (d / layout.VOCALS).is_file()
    if vocals:
        wave, sr = layout.read_audio(d, vocals=True)
        assert sr == 16000 and wave.shape == (rec.num_frames * 640,) and np.isfinite(wave).all()
