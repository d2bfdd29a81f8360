"""Training datasets: emotion-aware sampling rate, mixing weights, stage-2 windows, bad-sample skipping, resume keys.

``make_prepared_dataset`` (also used by the other ``test_train_*`` files) writes a small prepared dataset in the
``emocast.data.layout`` format directly: per identity (two real face photos) a neutral and an emotional video
animated from the photo, speech audio, masks, an identity embedding, wav2vec2-shaped features and prompts.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import load_script
from emocast.data import layout
from emocast.data.datasets import (DatasetExhaustedError, Stage1Dataset, Stage2Dataset, StreamSampler, build_index,
                                   collate)

IDENTITIES = {"astro": "astronaut", "hanks": "hanks"}


def _face_frames(face: str, n: int, size: int, emotion: str, seed: int) -> list[np.ndarray]:
    import cv2

    from emocast.testing.synthetic import face_image

    img, (mx, my), r = face_image(face)
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].astype(np.float32)
    mx, my = mx - (w - s) // 2, my - (h - s) // 2
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:s, 0:s]
    mouth = np.clip(1.2 - ((xx - mx) / r) ** 2 - ((yy - my) / (0.45 * r)) ** 2, 0, 1)[..., None]
    tint = np.array([1.15, 1.0, 0.9]) if emotion != "neutral" else np.ones(3)  # an "expression" change
    frames = []
    for i in range(n):
        opening = 0.5 + 0.5 * np.sin(i * 0.9 + seed)
        f = img * tint * (1 - 0.5 * opening * mouth)
        f = np.roll(f, int(rng.integers(-2, 3)), axis=1)
        frames.append(np.clip(cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA), 0, 255).astype(np.uint8))
    return frames


def make_prepared_dataset(root, size: int = 64, num_frames: int = 24, audio_layers: int = 4, audio_dim: int = 32,
                          emotions=("neutral", "happy"), identities=IDENTITIES, stage: str = "stage2",
                          meta_name: str = "meta.json") -> Path:
    """Write ``root/samples/<id>`` folders + ``root/<meta_name>``; returns the meta path."""
    from emocast.testing.synthetic import speech

    root = Path(root)
    entries = []
    for k, (ident, face) in enumerate(identities.items()):
        for j, emo in enumerate(emotions):
            vid = f"{ident}_{emo}"
            seed = 10 * k + j
            if not layout.is_complete(root, vid):
                with layout.staging(root, vid, overwrite=True) as d:
                    layout.write_frames(d / layout.FRAMES, _face_frames(face, num_frames, size, emo, seed))
                    wave = speech("Hello there, how are you today?", num_frames / 25, seed=seed)
                    layout.write_wav(d / layout.AUDIO, wave)
                    region = np.zeros((size, size), np.uint8)
                    region[size // 8: 7 * size // 8, size // 6: 5 * size // 6] = 255
                    layout.write_png(d / layout.FACE_REGION, region)
                    yy, xx = np.mgrid[0:64, 0:64]
                    soft = (np.exp(-((xx - 32) ** 2 + (yy - 30) ** 2) / 300.0) * 255).astype(np.uint8)
                    lip = (np.exp(-((xx - 32) ** 2 + (yy - 44) ** 2) / 40.0) * 255).astype(np.uint8)
                    layout.write_png(d / layout.MASK_FULL, 255 - soft)
                    layout.write_png(d / layout.MASK_FACE, soft)
                    layout.write_png(d / layout.MASK_LIP, lip)
                    rng = np.random.default_rng(100 + k)  # same identity -> same embedding
                    layout.write_face_emb(d / layout.FACE_EMB, rng.standard_normal(512))
                    env = np.abs(wave[: num_frames * 640].reshape(num_frames, 640)).mean(1)
                    feats = torch.from_numpy(env)[:, None, None] * torch.linspace(-1, 1, audio_dim)
                    feats = feats.expand(num_frames, audio_layers, audio_dim).float()
                    layout.write_audio_emb(d / layout.AUDIO_EMB, feats)
                    layout.write_info(d, layout.VideoRecord(
                        video_id=vid, source=f"{vid}.mp4", num_frames=num_frames, num_audio_frames=num_frames,
                        size=size, crop_box=[0, 0, size, size], identity=ident, emotion=emo,
                        intensity=1 if emo == "neutral" else 2,
                        prompts=[f"A person is talking with {emo} emotion.", f"Someone speaks, looking {emo}."]))
            entries.append(layout.meta_entry(layout.read_info(layout.sample_dir(root, vid))))
    return layout.write_meta(root / meta_name, stage, root, entries)


@pytest.fixture(scope="module")
def dataset_meta(tmp_path_factory):
    return make_prepared_dataset(tmp_path_factory.mktemp("ds"))


def test_emotion_aware_sampling_draws_neutral_references_at_the_configured_rate(dataset_meta):
    index = build_index([{"meta": str(dataset_meta)}])
    emotional = [e for entries in index.videos for e in entries if e.emotion != "neutral"]
    n = 300
    for rate in (1.0, 0.5, 0.2, 0.0):
        ds = Stage1Dataset(index, 64, seed=3, neutral_ref_rate=rate, sample_margin=3)
        rng = np.random.default_rng(0)
        draws = [(e, *ds.choose_reference(e, rng)) for e in emotional for _ in range(n)]
        share = sum(src == "neutral" for _, _, src in draws) / len(draws)
        assert abs(share - rate) < 0.06, (rate, share)
        for target, ref, src in draws:
            if src == "neutral":  # a neutral video of the same identity
                assert ref.emotion == "neutral" and ref.identity == target.identity and ref is not target
            else:
                assert src == "same_video" and ref is target
    # full items: the reference of an emotional target comes from the neutral video of the same identity
    ds = Stage1Dataset(index, 64, seed=3, neutral_ref_rate=1.0, sample_margin=3)
    items = [ds[k] for k in range(12)]
    for it in items:
        tgt, ref = it["sample_id"].split("<-")
        if it["emotion"] == "happy":
            assert it["ref_source"] == "neutral"
            assert ref.split("@")[0] == tgt.split("_")[0] + "_neutral"
        else:
            assert it["ref_source"] == "same_video"
        assert it["target"].shape == (3, 64, 64) and it["reference"].min() >= -1 and it["reference"].max() <= 1


def test_fallback_when_identity_has_no_neutral_video(tmp_path):
    meta = make_prepared_dataset(tmp_path, emotions=("happy", "sad"), identities={"astro": "astronaut"})
    ds = Stage1Dataset(build_index([{"meta": str(meta)}]), 64, seed=0, neutral_ref_rate=1.0)
    assert ds.identities_without_neutral() == [("meta", "astro")]
    sources = Counter(ds[k]["ref_source"] for k in range(6))
    assert sources == {"fallback": 6}
    ds2 = Stage2Dataset(ds.index, 64, seed=0, n_sample_frames=4, neutral_ref_rate=1.0)  # stage 2 counts them too
    assert Counter(ds2[k]["ref_source"] for k in range(2)) == {"fallback": 2}


def test_face_region_is_resized_as_inference_resizes_it():
    from emocast.data.datasets import face_region_tensor
    from emocast.preprocess.masks import face_region_from_mask

    mask = np.zeros((32, 32), np.uint8)
    mask[5:20, 9:27] = 255  # a face box prepared at another size than data.size
    got = face_region_tensor(mask, 64)
    assert got.shape == (3, 64, 64) and got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), face_region_from_mask(mask, 64))  # bilinear, soft edges
    assert ((got > 0) & (got < 1)).any()  # nearest-neighbour resizing kept only 0 and 1


def test_mixture_weights(tmp_path):
    a = make_prepared_dataset(tmp_path / "a", identities={"astro": "astronaut"}, emotions=("neutral",))
    b = make_prepared_dataset(tmp_path / "b", identities={"hanks": "hanks"}, emotions=("neutral",))
    index = build_index([{"meta": str(a), "weight": 3.0}, {"meta": str(b), "weight": 1.0}])
    rng = np.random.default_rng(0)
    share = np.mean([index.draw(rng).dataset == 0 for _ in range(2000)])
    assert abs(share - 0.75) < 0.04


def test_stage2_clip_uses_real_audio_neighbours_and_motion_frames(dataset_meta):
    index = build_index([{"meta": str(dataset_meta)}])
    ds = Stage2Dataset(index, 64, seed=1, n_sample_frames=14, n_motion_frames=2, audio_margin=2, start_ratio=0.0)
    lo, hi = ds.clip_start_range(24, 24)
    assert (lo, hi) == (2, 8)
    for k in range(6):
        it = ds[k]
        s = int(it["sample_id"].split("@")[1])
        assert lo <= s <= hi
        feats = layout.read_audio_emb(layout.sample_dir(Path(dataset_meta).parent, it["video_id"]),
                                      dtype=torch.float32)
        assert it["audio"].shape == (14, 5, 4, 32)
        assert torch.equal(it["audio"][0, 0], feats[s - 2]) and torch.equal(it["audio"][-1, -1], feats[s + 13 + 2])
        frames = to_frames(Path(dataset_meta).parent, it["video_id"], [s - 2, s - 1, s])
        assert torch.allclose(it["motion"], frames[:2], atol=1e-6) and torch.allclose(it["frames"][0], frames[2])
    start = Stage2Dataset(index, 64, seed=1, start_ratio=1.0)[0]
    assert torch.equal(start["motion"][0], start["reference"]) and start["clip_start"]


def to_frames(root, vid, idx):
    from emocast.data.datasets import to_pixels

    return to_pixels(layout.read_frames(layout.sample_dir(root, vid), idx), 64)


def test_bad_samples_are_skipped_counted_and_items_are_deterministic(tmp_path):
    meta = make_prepared_dataset(tmp_path)
    (layout.sample_dir(tmp_path, "hanks_happy") / layout.AUDIO_EMB).unlink()  # a broken sample
    index = build_index([{"meta": str(meta)}])
    ds = Stage2Dataset(index, 64, seed=5)
    items = [ds[k] for k in range(16)]
    assert sum(it["skipped"] for it in items) > 0
    assert all("hanks_happy" not in it["video_id"] for it in items)
    assert all(set(it["skipped_ids"]) <= {"hanks_happy"} for it in items)
    again = ds[7]
    assert again["sample_id"] == items[7]["sample_id"] and torch.equal(again["frames"], items[7]["frames"])
    batch = collate(items[:2])
    assert batch["frames"].shape == (2, 14, 3, 64, 64) and batch["skipped"].shape == (2,)
    assert set(batch["masks"]) == {0, 1, 2, 3} and batch["masks"][1][2].shape == (2, 16)
    # everything broken -> a clear error instead of an endless loop
    for vid in layout.list_samples(tmp_path):
        (layout.sample_dir(tmp_path, vid) / layout.FACE_EMB).unlink(missing_ok=True)
    with pytest.raises(DatasetExhaustedError):
        Stage2Dataset(index, 64, seed=5, max_retries=5)[0]


def test_stream_sampler_restarts_at_position_and_strides_by_rank():
    it = iter(StreamSampler(rank=1, world_size=3, start=4))
    assert [next(it) for _ in range(3)] == [13, 16, 19]


# ---------------------------------------------------------------------------------------------------------------
# helpers for the other test_train_* files
# ---------------------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def tiny_overrides(meta, stage: int) -> list[str]:
    """Dotlist overrides that make any training config run in seconds on the CPU with the tiny model kit.

    Stage 1 trains at 128 px: at 64 px the tiny UNet's lowest level is 1x1 with one channel per GroupNorm group,
    where GroupNorm outputs its bias only (torch even refuses it in training mode for a single sample), which
    would leave some trainable weights without gradient. Stage 2 runs 6 frames per clip at 64 px."""
    per_stage = ["data.size=128", "data.sample_margin=3"] if stage == 1 else ["data.size=64", "data.n_sample_frames=6"]
    return per_stage + [f"data.datasets=[{{meta: '{meta}'}}]", "data.batch_size=1", "models.net=tiny", "data.num_workers=0",
            "logging.every=1", "checkpointing.every=0", "checkpointing.keep_last=2",
            "optimizer.name=adamw", "optimizer.weight_decay=0.0", "optimizer.lr=1e-3", "train.mixed_precision=no",
            "validation.every=0"]


def run_train_script(stage: int, args: list[str]) -> int:
    """Run scripts/train_stage<stage>.py in this process through its real entry point (run_main(main))."""
    from emocast.cli import run_main

    return run_main(load_script(f"train_stage{stage}").main, args)
