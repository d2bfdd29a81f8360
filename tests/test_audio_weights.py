"""--pose_weight / --face_weight / --lip_weight reach the three audio branches in that order: pose = the full
(background) branch attn2_0/zero_conv_full, face = attn2_1/zero_conv_face, lip = attn2_2/zero_conv_lip (spec §4.2).

The path under test is the whole chain: the script's flags -> the typed config -> the sampler settings -> the step
-> every audio module. A tiny net keeps exactly one branch alive (the other two zero-convs are zero), so the output
depends on that branch's weight only: swapping any two weights anywhere in the chain fails."""
from __future__ import annotations

import pytest
import torch

from helpers import load_script
from emocast.models import TINY, build_net
from emocast.pipelines import conditioning
from emocast.pipelines.card import RELEASE_CARD
from emocast.pipelines.inference import resolve_sampling

BRANCHES = ("zero_conv_full", "zero_conv_face", "zero_conv_lip")  # pose, face, lip


def settings_from_cli(pose, face, lip):
    cli = load_script("inference")
    args = cli.build_parser().parse_args(["--pose_weight", str(pose), "--face_weight", str(face),
                                          "--lip_weight", str(lip)])
    return resolve_sampling(cli.config_from_args(args), RELEASE_CARD, False).settings


@pytest.fixture(scope="module")
def step_inputs():
    g = torch.Generator().manual_seed(0)
    cfg, f, h = TINY, 2, 8
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    ones = [torch.ones((h >> lvl) ** 2) for lvl in range(cfg.num_levels)]
    return dict(text=r(1, 77, cfg.cross_attention_dim), face=r(1, 512), region=torch.rand(1, 3, 8 * h, 8 * h, generator=g),
                masks=ones, ref=r(3, 4, h, h), audio=r(1, f, cfg.audio_window, cfg.audio_layers, cfg.audio_feature_dim),
                latents=r(1, 4, f, h, h))


def net_with_one_branch(alive: str):
    torch.manual_seed(1)
    net = build_net(TINY).eval()
    with torch.no_grad():
        for name, module in net.denoising_unet.named_modules():
            if name.endswith(BRANCHES):
                alive_here = name.endswith(alive)
                module.weight.copy_(0.3 * torch.randn_like(module.weight) if alive_here else 0 * module.weight)
                module.bias.copy_(0.3 * torch.randn_like(module.bias) if alive_here else 0 * module.bias)
    return net


def output(net, x, audio_weights):
    with torch.no_grad():
        video = conditioning.prepare_video(net, text_emb=x["text"], face_emb=x["face"], face_region=x["region"],
                                           full_masks=x["masks"], face_masks=x["masks"], lip_masks=x["masks"],
                                           guidance=False)
        clip = conditioning.prepare_clip(net, video, ref_latents=x["ref"], audio_windows=x["audio"])
        return conditioning.model_output(net, video, clip, x["latents"], 500, audio_weights)


def test_the_flags_arrive_as_pose_face_lip():
    assert settings_from_cli(0.3, 0.5, 0.7).audio_weights == (0.3, 0.5, 0.7)


@pytest.mark.parametrize("index, alive", list(enumerate(BRANCHES)))
def test_each_weight_scales_its_own_branch_only(step_inputs, index, alive):
    net = net_with_one_branch(alive)
    weights = [0.0, 0.0, 0.0]
    off = output(net, step_inputs, settings_from_cli(*weights).audio_weights)
    weights[index] = 2.0
    on = output(net, step_inputs, settings_from_cli(*weights).audio_weights)
    assert (on - off).abs().max() > 1e-3  # this flag moves the only live branch
    others = [1.5 if i != index else 0.0 for i in range(3)]
    assert torch.equal(output(net, step_inputs, settings_from_cli(*others).audio_weights), off)  # the other two do not
