"""Parity with the official EmoCAST network on the golden fixtures (tests/fixtures/parity/README.md).

For every fixture: build the architecture of its meta, fill every state-dict entry with the README's
``golden_tensor`` rule, run the described step through emocast.pipelines.conditioning and compare.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emocast.models import parity_config
from emocast.models.golden import golden_net
from emocast.pipelines import conditioning

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "parity").glob("*.pt"))
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def golden_nets():
    """Fixtures sharing a UNet config share one filled net (filling ~300M values dominates the runtime)."""
    cache = {}
    yield lambda config: cache[config] if config in cache else cache.setdefault(config, golden_net(config))
    cache.clear()


def rel_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape, (tuple(ours.shape), tuple(ref.shape))
    return float((ours.float() - ref.float()).norm() / ref.float().norm())


def run_fixture_step(net, inputs, meta):
    guidance = bool(meta["classifier_free_guidance"])
    video = conditioning.prepare_video(
        net, text_emb=inputs["text_emb"], uncond_text_emb=inputs["uncond_text_emb"], face_emb=inputs["face_emb"],
        face_region=inputs["face_region"], full_masks=inputs["full_masks"], face_masks=inputs["face_masks"],
        lip_masks=inputs["lip_masks"], guidance=guidance)
    clip = conditioning.prepare_clip(net, video, ref_latents=inputs["ref_latents"],
                                     audio_windows=inputs["audio_windows"])
    out = conditioning.model_output(net, video, clip, inputs["latents"], meta["timestep"],
                                    audio_weights=meta["motion_scale"])
    frames = inputs["latents"].shape[2]
    return {
        "face_tokens": video.face_tokens,
        "audio_tokens": clip.audio_tokens[-1:],
        "face_locator": video.face_locator_feature[-1:].expand(-1, -1, frames, -1, -1),
        "model_output": out,
    }


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_parity(path, golden_nets):
    data = torch.load(path, map_location="cpu", weights_only=True)
    meta, inputs, expected = data["meta"], data["inputs"], data["outputs"]
    assert inputs["ref_latents"].shape[0] == 1 + meta["n_motion_frames"]
    assert inputs["latents"].shape[2] == meta["frames"]
    net = golden_nets(parity_config(meta["unet_config"]))
    if "n_params" in meta:
        assert sum(p.numel() for p in net.parameters()) == meta["n_params"]
    with torch.no_grad():
        ours = run_fixture_step(net, inputs, meta)
    errors = {name: rel_error(ours[name], expected[name]) for name in expected}
    assert set(errors) >= {"face_tokens", "audio_tokens", "face_locator", "model_output"}
    assert all(e < TOLERANCE for e in errors.values()), errors


def test_fixtures_present():
    assert len(FIXTURES) >= 2
