"""Behaviour of the networks on a tiny config: release semantics, switches, dtypes, gradient checkpointing."""
from __future__ import annotations

import copy

import pytest
import torch

from emocast.models import TINY
from emocast.models.golden import golden_net, random_step_inputs
from emocast.models.parameter_groups import GROUPS, set_trainable, trainable_parameter_groups
from emocast.pipelines import conditioning

FRAMES = 2


@pytest.fixture(scope="module")
def net():
    return golden_net(TINY)  # every weight non-zero: every branch matters


@pytest.fixture(scope="module")
def inputs():
    return random_step_inputs(TINY, frames=FRAMES, latent_size=8, seed=3)


def step(net, inputs, guidance=True, pairing="release", audio_weights=(1.0, 1.0, 1.0), **overrides):
    x = {**inputs, **overrides}
    video = conditioning.prepare_video(
        net, text_emb=x["text_emb"], uncond_text_emb=x["uncond_text_emb"], face_emb=x["face_emb"],
        face_region=x["face_region"], full_masks=x["full_masks"], face_masks=x["face_masks"],
        lip_masks=x["lip_masks"], guidance=guidance)
    clip = conditioning.prepare_clip(net, video, ref_latents=x["ref_latents"], audio_windows=x["audio_windows"],
                                     pairing=pairing)
    return conditioning.model_output(net, video, clip, x["latents"], 400, audio_weights)


def differs(a, b, tol=1e-4):
    return float((a - b).norm() / b.norm()) > tol


@pytest.fixture(scope="module")
def base(net, inputs):
    with torch.no_grad():
        return step(net, inputs)


def test_shapes_with_and_without_guidance(net, inputs, base):
    assert base.shape == (2, TINY.out_channels, FRAMES, 8, 8)
    with torch.no_grad():
        single = step(net, inputs, guidance=False)
    assert single.shape == (1, TINY.out_channels, FRAMES, 8, 8)
    assert torch.isfinite(base).all()
    guided = conditioning.guide(base, 3.5)
    torch.testing.assert_close(guided, base[:1] + 3.5 * (base[1:] - base[:1]))


def test_eval_and_train_mode_give_the_same_output(net, inputs, base):
    net.train()
    try:
        with torch.no_grad():
            trained = step(net, inputs)
    finally:
        net.eval()
    torch.testing.assert_close(trained, base, rtol=0, atol=0)


def test_pairing_switch(net, inputs, base):
    with torch.no_grad():
        matched = step(net, inputs, pairing="matched")
        single_release = step(net, inputs, guidance=False)
        single_matched = step(net, inputs, guidance=False, pairing="matched")
    assert differs(matched[1], base[1]) and differs(matched[0], base[0])
    torch.testing.assert_close(single_release, single_matched, rtol=0, atol=0)  # identical for batch 1


def test_unconditional_row_ignores_the_reference_image_but_uses_motion_frames(net, inputs, base):
    ref = inputs["ref_latents"].clone()
    ref[0] += 1.0  # another reference image, same motion frames
    with torch.no_grad():
        other_ref = step(net, inputs, ref_latents=ref)
    torch.testing.assert_close(other_ref[0], base[0], rtol=1e-5, atol=1e-6)
    assert differs(other_ref[1], base[1])
    ref = inputs["ref_latents"].clone()
    ref[1:] += 1.0  # other motion frames
    with torch.no_grad():
        other_motion = step(net, inputs, ref_latents=ref)
    assert differs(other_motion[0], base[0]) and differs(other_motion[1], base[1])


def test_audio_weights_weights_the_audio_branches(net, inputs, base):
    with torch.no_grad():
        scaled = step(net, inputs, audio_weights=(1.0, 1.0, 1.3))
    assert differs(scaled, base)


def test_low_resolution_motion_modules_exist_but_do_not_run(net, inputs, base):
    unet = net.denoising_unet
    skipped = [unet.down_blocks[-1].motion_modules, unet.up_blocks[0].motion_modules]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in skipped]
    try:
        with torch.no_grad():
            for m in skipped:
                for p in m.parameters():
                    p.add_(1.0)
            out = step(net, inputs)
    finally:
        for m, s in zip(skipped, saved):
            m.load_state_dict(s)
    torch.testing.assert_close(out, base, rtol=0, atol=0)
    active = unet.down_blocks[0].motion_modules[0].temporal_transformer.proj_out
    with torch.no_grad():
        active.bias.add_(1.0)
        try:
            changed = step(net, inputs)
        finally:
            active.bias.sub_(1.0)
    assert differs(changed, base)


def test_bfloat16(net, inputs, base):  # float16: tests/test_models_loading.py
    dtype = torch.bfloat16
    low = copy.deepcopy(net).to(dtype)
    with torch.no_grad():
        out = step(low, inputs)
    assert out.dtype == dtype
    assert float((out.float() - base).norm() / base.norm()) < 0.05


def test_bank_dtype_option(net, inputs):
    with torch.no_grad():
        video = conditioning.prepare_video(
            net, text_emb=inputs["text_emb"], uncond_text_emb=inputs["uncond_text_emb"],
            face_emb=inputs["face_emb"], face_region=inputs["face_region"], full_masks=inputs["full_masks"],
            face_masks=inputs["face_masks"], lip_masks=inputs["lip_masks"])
        clip = conditioning.prepare_clip(net, video, ref_latents=inputs["ref_latents"],
                                         audio_windows=inputs["audio_windows"], bank_dtype=torch.float16)
    assert all(t.dtype == torch.float16 for t in clip.reference.reference.values())
    assert clip.reference.num_motion_frames == inputs["ref_latents"].shape[0] - 1


def test_gradient_checkpointing_keeps_output_and_gradients(inputs):
    torch.manual_seed(0)
    net = golden_net(TINY).train()
    probes = ["denoising_unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
              "denoising_unet.mid_block.audio_modules.0.transformer_blocks.0.attn_audioemo.to_k.weight",
              "denoising_unet.up_blocks.3.motion_modules.0.temporal_transformer.proj_out.weight",
              "reference_unet.down_blocks.0.attentions.0.transformer_blocks.0.norm1.weight",
              "audioproj.proj1.weight"]
    params = dict(net.named_parameters())
    results = []
    for enabled in (False, True):
        net.enable_gradient_checkpointing(enabled)
        net.zero_grad()
        out = step(net, inputs)
        out.square().mean().backward()
        results.append((out.detach(), {k: params[k].grad.clone() for k in probes}))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=0)
    for k in probes:
        torch.testing.assert_close(results[1][1][k], results[0][1][k], rtol=1e-5, atol=1e-7, msg=k)
        assert results[0][1][k].abs().sum() > 0, k


def test_no_reference_runs_with_zero_motion_frames(net, inputs):
    """Training with the reference pass dropped (Hallo's uncond_img_fwd): no reference, 4 zero motion frames."""
    b = 1
    masks = {lvl: tuple(m[lvl].reshape(1, -1) for m in (inputs["full_masks"], inputs["face_masks"],
                                                        inputs["lip_masks"])) for lvl in range(TINY.num_levels)}
    with torch.no_grad():
        audio = net.audioproj(inputs["audio_windows"])
        ehs = torch.cat([inputs["text_emb"], net.imageproj(inputs["face_emb"])], dim=1)
        out = net.denoising_unet(inputs["latents"], torch.tensor([10]), ehs, audio, inputs["text_emb"], masks,
                                 face_locator_feature=None, reference=None)
    assert out.shape == inputs["latents"].shape and torch.isfinite(out).all() and b == out.shape[0]


def test_parameter_groups_are_disjoint_and_complete(net):
    groups = trainable_parameter_groups(net)
    assert tuple(groups) == GROUPS
    names = [n for params in groups.values() for n, _ in params]
    assert len(names) == len(set(names)) == len(list(net.parameters()))
    assert all(".to_k_ip." in n or ".to_v_ip." in n for n, _ in groups["ip_adapter"])
    assert all("audioemo" in n for n, _ in groups["audio_emo"])
    assert groups["motion_modules"] and groups["audio_modules"] and groups["denoising_spatial"]
    assert {n.split(".motion_modules")[0] for n, _ in groups["unused_motion_modules"]} == {
        "denoising_unet.down_blocks.3", "denoising_unet.up_blocks.0"}
    trainable = set_trainable(net, ["motion_modules", "audio_emo"])
    try:
        assert {id(p) for p in trainable} == {id(p) for g in ("motion_modules", "audio_emo") for _, p in groups[g]}
        assert sum(p.requires_grad for p in net.parameters()) == len(trainable)
    finally:
        net.requires_grad_(True)


def test_image_stage_pass_skips_audio_and_motion_modules(net, inputs):
    """``temporal=False`` (stage 1): audio/motion weights do not matter, the reference attention does."""
    unet = net.denoising_unet
    inputs = random_step_inputs(TINY, frames=1, latent_size=16, seed=4)  # one frame: 1x1 level too small for GroupNorm
    ehs = torch.cat([inputs["text_emb"], net.imageproj(inputs["face_emb"])], dim=1).detach()
    with torch.no_grad():
        ref = net.reference_features(inputs["ref_latents"][:1], ehs, pairing="matched")
        run = lambda r: unet(inputs["latents"], 300, ehs, None, None, None,  # noqa: E731
                             reference=r, temporal=False)
        before, no_ref = run(ref), run(None)
        temporal = [p for n, p in unet.named_parameters() if "audio_modules" in n or "motion_modules" in n]
        for p in temporal:
            p.add_(0.5)
        after = run(ref)
        for p in temporal:
            p.sub_(0.5)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert differs(no_ref, before)
    with pytest.raises(ValueError, match="temporal pass needs"):
        unet(inputs["latents"], 300, ehs, None, None, None)
