"""Dataset layout (info.json, atomic folders, readers), meta files (round trip, filters) and statistics / CLIs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from emocast import config
from emocast.cli import run_main
from emocast.data import layout, meta, stats
from emocast.errors import InputError

N = 12


def make_sample(root: Path, vid: str, n: int = N, audio_rows: int | None = None, skip: tuple = (), **info) -> Path:
    """A small but complete sample folder written with the layout's own writers."""
    with layout.staging(root, vid) as d:
        frames = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(n)]
        layout.write_frames(d / layout.FRAMES, frames)
        layout.write_wav(d / layout.AUDIO, np.zeros(n * 640, np.float32))
        layout.write_face_emb(d / layout.FACE_EMB, np.ones(512))
        layout.write_audio_emb(d / layout.AUDIO_EMB, np.zeros((audio_rows or n, 2, 4)))
        for f in (layout.FACE_REGION, layout.MASK_FULL, layout.MASK_FACE, layout.MASK_LIP):
            layout.write_png(d / f, np.full((32, 32) if f == layout.FACE_REGION else (64, 64), 255))
        rec = layout.VideoRecord(video_id=vid, source=f"/raw/{vid}.mp4", num_frames=n, num_audio_frames=n, size=32,
                                 crop_box=[0, 0, 64, 64], **info)
        layout.write_info(d, rec)
        for f in skip:
            (d / f).unlink()
    return layout.sample_dir(root, vid)


# ------------------------------------------------------------------------------------------------ layout
def test_info_round_trip_and_readers(tmp_path):
    d = make_sample(tmp_path, "v1", identity="M003", emotion="sad", intensity=2, prompts=["A.", "B."],
                    sync={"offset": 1, "confidence": 6.5, "min_dist": 7.0})
    rec = layout.read_info(d)
    assert (rec.identity, rec.emotion, rec.intensity, rec.prompts) == ("M003", "sad", 2, ["A.", "B."])
    assert rec.sync["confidence"] == 6.5 and rec.format_version == layout.FORMAT_VERSION
    assert layout.count_frames(d) == N
    picked = layout.read_frames(d, [5, 0, 5])
    assert picked.shape == (3, 32, 32, 3)
    assert abs(int(picked[0].mean()) - 50) <= 3 and int(picked[1].mean()) <= 3 and (picked[0] == picked[2]).all()
    with pytest.raises(IndexError):
        layout.read_frames(d, [N])
    assert layout.read_audio_emb(d).shape == (N, 2, 4)
    assert layout.read_face_emb(d).dtype == np.float32
    rec2 = layout.update_info(d, prompts=["C."])
    assert layout.read_info(d).prompts == ["C."] == rec2.prompts
    assert layout.is_complete(tmp_path, "v1") and layout.list_samples(tmp_path) == ["v1"]


def test_bad_info_is_a_clear_error(tmp_path):
    d = make_sample(tmp_path, "v1")
    (d / layout.INFO).write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        layout.read_info(d)
    (d / layout.INFO).write_text(json.dumps({"format_version": 99}), encoding="utf-8")
    with pytest.raises(InputError, match="format_version 99"):
        layout.read_info(d)
    with pytest.raises(InputError, match="incomplete"):
        layout.read_face_emb(tmp_path / "nothing")


def test_staging_is_atomic(tmp_path):
    with pytest.raises(RuntimeError):
        with layout.staging(tmp_path, "v1") as d:
            (d / layout.FRAMES).write_bytes(b"partial")
            raise RuntimeError("killed")
    assert list(layout.samples_dir(tmp_path).iterdir()) == []
    make_sample(tmp_path, "v1")
    with pytest.raises(FileExistsError):
        with layout.staging(tmp_path, "v1"):
            pass
    with layout.staging(tmp_path, "v1", overwrite=True) as d:
        (d / "marker").write_text("new")
    assert (layout.sample_dir(tmp_path, "v1") / "marker").read_text() == "new"
    assert [p.name for p in layout.samples_dir(tmp_path).iterdir()] == ["v1"]
    layout.tmp_dir(tmp_path, "v2").mkdir()
    assert layout.clean_stale(tmp_path) == [".tmp-v2"]


def test_video_ids_are_unique_and_safe():
    assert layout.video_id_for("/d/M003/video/front/angry/level_1/001.mp4", "/d") == \
        "M003__video__front__angry__level_1__001"
    assert layout.video_id_for("/d/a b/x.y.mp4", "/d") == "a_b__x.y"
    assert layout.video_id_for("/d/a/x.mp4", "/d") != layout.video_id_for("/d/b/x.mp4", "/d")


def test_meta_round_trip_relative_paths(tmp_path):
    root = tmp_path / "ds"
    make_sample(root, "v1", identity="M003", emotion="happy", intensity=3, prompts=["P."])
    res = meta.write_stage_meta(root, "stage2", meta.MetaFilter(), root / "meta" / "ds_stage2.json")
    raw = json.loads((root / "meta" / "ds_stage2.json").read_text())
    assert raw["format_version"] == 1 and raw["stage"] == "stage2" and raw["root"] == ".."
    assert raw["videos"] == res.entries
    assert raw["videos"][0] == {"id": "v1", "dir": "samples/v1", "identity": "M003", "emotion": "happy",
                                "intensity": 3, "prompts": ["P."], "num_frames": N, "sync": None}
    # the dataset moved together with its meta files still resolves; paths are never absolute
    moved = tmp_path / "elsewhere"
    shutil.move(str(root), str(moved))
    m = layout.read_meta(moved / "meta" / "ds_stage2.json")
    assert m.stage == "stage2" and m.root == moved.resolve()
    assert layout.read_info(m.video_dir(m.videos[0])).video_id == "v1"
    assert layout.read_meta(moved / "meta" / "ds_stage2.json", root=tmp_path / "x").root == (tmp_path / "x").resolve()


def test_meta_rejects_foreign_files(tmp_path):
    p = tmp_path / "hallo.json"
    p.write_text(json.dumps([{"video_path": "/abs/x.mp4"}]))
    with pytest.raises(InputError, match="Hallo"):
        layout.read_meta(p)
    with pytest.raises(InputError, match="not found"):
        layout.read_meta(tmp_path / "missing.json")
    with pytest.raises(ValueError):
        layout.write_meta(tmp_path / "m.json", "stage2", tmp_path, [{"id": "a", "dir": str(tmp_path.resolve())}])


def test_meta_filters(tmp_path):
    sync_ok = {"offset": 0, "confidence": 7.0, "min_dist": 6.5}
    make_sample(tmp_path, "good", emotion="sad", intensity=1, prompts=["P."], sync=sync_ok)
    make_sample(tmp_path, "short", n=4, emotion="sad", sync=sync_ok)
    make_sample(tmp_path, "no_audio_emb", skip=(layout.AUDIO_EMB,))
    make_sample(tmp_path, "mismatch", audio_rows=N - 6)
    make_sample(tmp_path, "bad_sync", emotion="happy", sync={"offset": 9, "confidence": 1.0, "min_dist": 11.0})
    make_sample(tmp_path, "no_sync", emotion="happy")
    f = meta.MetaFilter(min_frames=8, min_sync_confidence=3.0, max_sync_dist=9.0, max_sync_offset=3)
    res = meta.collect(tmp_path, "stage2", f)
    assert [e["id"] for e in res.entries] == ["good", "no_sync"]
    assert res.rejected["short"].startswith("too short")
    assert "audio_emb.safetensors" in res.rejected["no_audio_emb"]
    assert res.rejected["mismatch"].startswith("audio/video length mismatch")
    assert res.rejected["bad_sync"].startswith("sync confidence")
    f.missing_sync = "drop"
    assert "no_sync" in meta.collect(tmp_path, "stage2", f).rejected
    # stage 1 reads no audio features: that sample is fine there
    s1 = meta.collect(tmp_path, "stage1", meta.MetaFilter())
    assert "no_audio_emb" in [e["id"] for e in s1.entries] and "mismatch" in [e["id"] for e in s1.entries]
    emo = meta.collect(tmp_path, "stage1", config.load(meta.MetaFilter, {"emotions": ["Sadness"],
                                                                          "require_prompts": True}))
    assert [e["id"] for e in emo.entries] == ["good"]


def test_stats_table1_and_histograms(tmp_path):
    entries = [{"id": "a", "identity": "M003", "emotion": "angry", "intensity": 3, "num_frames": 25 * 3600,
                "prompts": ["x."], "sync": {"offset": 0}},
               {"id": "b", "identity": "M003", "emotion": "neutral", "intensity": 1, "num_frames": 25 * 1800,
                "prompts": ["y."]},
               {"id": "c", "identity": "W009", "emotion": None, "intensity": None, "num_frames": 25 * 1800}]
    st = stats.compute("mine", entries)
    assert st.hours == pytest.approx(2.0) and len(st.identities) == 2 and st.videos == 3
    assert st.emotions == {"angry": 1, "neutral": 1, "unlabelled": 1}
    assert st.intensities == {("angry", 3): 1, ("neutral", 1): 1}
    row = stats.table1([st]).splitlines()[2]
    assert row == "| mine | 2 | 2.00 | yes (2/3) | 2 | yes (2 distinct) |"
    hist = stats.histograms(st)
    assert "| angry | 1 | 1.000 | 0 | 0 | 1 |" in hist and "| unlabelled | 1 | 0.500 | 0 | 0 | 0 |" in hist


def test_meta_and_stats_scripts(tmp_path, capsys):
    from scripts.dataset_stats import main as stats_main
    from scripts.extract_meta_info import main as meta_main

    root = tmp_path / "ds"
    make_sample(root, "a", identity="M005", emotion="angry", intensity=2, prompts=["P."])
    make_sample(root, "b", n=4, identity="M005", emotion="neutral", intensity=1)
    make_sample(root, "t", identity="W009", emotion="sad", intensity=1)  # a MEAD test subject: held out
    assert run_main(meta_main, ["--root", str(root), "--name", "mine", "--out", str(tmp_path / "meta"),
                                "stage2.min_frames=8"]) == 0
    assert "1 held out: identities M003, M030, W009, W015" in capsys.readouterr().out
    s1 = layout.read_meta(tmp_path / "meta" / "mine_stage1.json")
    s2 = layout.read_meta(tmp_path / "meta" / "mine_stage2.json")
    assert [v["id"] for v in s1.videos] == ["a", "b"] and [v["id"] for v in s2.videos] == ["a"]
    rejected = json.loads((tmp_path / "meta" / "mine_rejected.json").read_text())
    assert rejected["stage2"]["b"].startswith("too short")
    capsys.readouterr()
    assert run_main(stats_main, [str(tmp_path / "meta" / "mine_stage1.json"), str(root),
                                 "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "| mine_stage1 | 1 |" in out and "| total | 3 |" in out  # IDs summed over the inputs
    assert json.loads((tmp_path / "s.json").read_text())[0]["videos"] == 2
    # user errors: message and exit code 2, no traceback
    assert run_main(meta_main, ["--root", str(tmp_path / "nope")]) == 2
    assert "not a prepared dataset" in capsys.readouterr().err
    # --holdout none keeps every identity; a custom list holds out those
    assert run_main(meta_main, ["--root", str(root), "--out", str(tmp_path / "all"), "--holdout", "none"]) == 0
    assert [v["id"] for v in layout.read_meta(tmp_path / "all" / "ds_stage1.json").videos] == ["a", "b", "t"]
    assert run_main(meta_main, ["--root", str(root), "--out", str(tmp_path / "m5"), "--holdout", "m005"]) == 0
    assert [v["id"] for v in layout.read_meta(tmp_path / "m5" / "ds_stage1.json").videos] == ["t"]


def test_random_access_frames_match_sequential_decoding(tmp_path):
    n = 130  # several keyframe intervals
    frames = []
    for i in range(n):
        f = np.zeros((32, 32, 3), np.uint8)
        f[:16] = (i * 7) % 256
        f[16:, :, 1] = (i // 10) * 20
        frames.append(f)
    (tmp_path / "s").mkdir()
    layout.write_frames(tmp_path / "s" / layout.FRAMES, frames)
    every = layout.read_frames(tmp_path / "s")
    assert every.shape == (n, 32, 32, 3) and layout.count_frames(tmp_path / "s") == n
    rng = np.random.default_rng(0)
    for _ in range(3):
        idx = list(rng.integers(0, n, 12)) + [n - 1, 0, 64, 64]
        assert (layout.read_frames(tmp_path / "s", idx) == every[idx]).all()
    assert abs(int(every[100, 0, 0, 0]) - 700 % 256) <= 4  # the frames are the ones written, in order
    with pytest.raises(IndexError):
        layout.read_frames(tmp_path / "s", [n])


def test_data_configs_are_typed_and_strict():
    from emocast.data.config import DataPrepConfig, MetaConfig
    from emocast.errors import ConfigError

    cfg = config.load(DataPrepConfig, overrides=["emotion.default=Neutral"])
    assert cfg.prep.size == 512 and cfg.emotion.default == "neutral" and cfg.emotion.default_intensity == 1
    assert config.load(DataPrepConfig, overrides=["emotion.default=Anger"]).emotion.default_intensity is None
    for bad, key in ((["prep.bogus=1"], "prep.bogus"), (["sync.enable=true"], "sync.enabled"),
                     (["prep.size=30"], "prep.size"), (["prep.size=100"], "prep.size"),
                     (["prep.identity_from=folder"], "prep.identity_from"), (["emotion.default=bored"], "emotion.default"),
                     (["emotion.thresholds=[0.8,0.5]"], "emotion.thresholds"), (["prep.crop_scale=0.5"], "prep.crop_scale"),
                     (["prep.max_no_face_ratio=2"], "prep.max_no_face_ratio")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            config.load(DataPrepConfig, overrides=bad)
    mcfg = config.load(MetaConfig)
    assert (mcfg.stage1.min_frames, mcfg.stage2.min_frames) == (1, 25)  # stage-specific defaults
    assert config.load(MetaConfig, overrides=["stage1.emotions=[Sadness, happy]"]).stage1.emotions == ["sad", "happy"]
    for bad, key in ((["stage2.min_sync_conf=3"], "stage2.min_sync_confidence"),
                     (["stage2.missing_sync=maybe"], "stage2.missing_sync"), (["stage1.min_frames=0"], "stage1.min_frames")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            config.load(MetaConfig, overrides=bad)
    repo = Path(__file__).resolve().parents[1]
    for example, schema in (("configs/data/hdtf.yaml", DataPrepConfig), ("configs/data/meta_lipsync.yaml", MetaConfig)):
        config.load(schema, repo / example)  # the shipped examples load


def test_prompts_only_rewrites_prompts_and_nothing_else(tmp_path):
    import sys

    from scripts.data_preprocess import main as prep_main

    make_sample(tmp_path, "a", emotion="fear", intensity=3, prompts=["old."])
    make_sample(tmp_path, "b", prompts=["kept empty: no label."])
    frames = (layout.sample_dir(tmp_path, "a") / layout.FRAMES).read_bytes()
    cmd = f"{sys.executable} -c \"print('The portrait is in a haunted house.')\""
    assert run_main(prep_main, ["--output", str(tmp_path), "--prompts-only", "--no-progress",
                                f"prompts.llm_command={cmd}", "prompts.per_video=1"]) == 0
    assert layout.read_info(layout.sample_dir(tmp_path, "a")).prompts == ["The portrait is in a haunted house."]
    assert layout.read_info(layout.sample_dir(tmp_path, "b")).prompts == []
    assert (layout.sample_dir(tmp_path, "a") / layout.FRAMES).read_bytes() == frames
    assert run_main(prep_main, ["--output", str(tmp_path)]) == 2  # no --input without --prompts-only
