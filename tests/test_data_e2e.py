"""End to end: raw synthetic videos -> scripts/data_preprocess.py -> scripts/extract_meta_info.py -> one step of
stage-2 training (scripts/train_stage2.py) on the result, all through the real entry points and the tiny kit."""
from __future__ import annotations

from pathlib import Path

from test_train_data import run_train_script, tiny_overrides

from helpers import load_script
from emocast.cli import run_main
from emocast.data import layout
from emocast.testing import synthetic

REPO = Path(__file__).resolve().parents[1]


def test_raw_videos_to_one_training_step(tiny_models, tmp_path):
    raw, data = tmp_path / "raw", tmp_path / "data"
    synthetic.make_talking_video(raw / "M005/video/front/neutral/level_1/001.mp4", seconds=1.6, fps=30)
    synthetic.make_talking_video(raw / "M005/video/front/happy/level_3/001.mp4", seconds=1.6, fps=24)
    assert run_main(load_script("data_preprocess").main, [
        "--input", str(raw), "--output", str(data), "--models-root", str(tiny_models), "--size", "64",
        "--no-progress", "prep.min_frames=20"]) == 0
    assert len(layout.list_samples(data)) == 2
    assert run_main(load_script("extract_meta_info").main, ["--root", str(data), "--name", "raw",
                                                   "stage2.min_frames=20"]) == 0
    meta = data / "raw_stage2.json"
    assert [v["emotion"] for v in layout.read_meta(meta).videos] == ["happy", "neutral"]
    from emocast.data.datasets import DatasetSpec, Stage2Dataset, VideoIndex

    item = Stage2Dataset(VideoIndex([DatasetSpec(meta=str(meta))]), size=64, seed=0, n_sample_frames=6)[0]
    assert tuple(item["frames"].shape) == (6, 3, 64, 64) and item["audio"].shape[:2] == (6, 5)
    assert item["prompt"] and item["emotion"] in ("happy", "neutral")
    out = tmp_path / "train"
    rc = run_train_script(2, ["--config", str(REPO / "configs/train/stage2_phase1.yaml"), "--output_dir", str(out),
                              "--models", str(tiny_models), "--max_steps", "1", *tiny_overrides(meta, 2),
                              "models.init_checkpoint=null", "models.net=tiny"])
    assert rc == 0
    assert (out / "final" / "net.pth").is_file()
