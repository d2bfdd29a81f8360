"""Loading: strict net.pth (fp16), clear errors, our safetensors, training initialisation from SD-1.5 + AnimateDiff."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from emocast.errors import CheckpointError, MissingModelError
from emocast.models import TINY, EmoCASTNet
from emocast.models.golden import golden_net, random_step_inputs
from emocast.models.loading import init_from_pretrained, load_net, read_state_dict, save_safetensors
from emocast.pipelines import conditioning


def step(net, inputs, guidance=True):
    with torch.no_grad():
        video = conditioning.prepare_video(
            net, text_emb=inputs["text_emb"], uncond_text_emb=inputs["uncond_text_emb"], face_emb=inputs["face_emb"],
            face_region=inputs["face_region"], full_masks=inputs["full_masks"], face_masks=inputs["face_masks"],
            lip_masks=inputs["lip_masks"], guidance=guidance)
        clip = conditioning.prepare_clip(net, video, ref_latents=inputs["ref_latents"],
                                         audio_windows=inputs["audio_windows"])
        return conditioning.model_output(net, video, clip, inputs["latents"], 500, (0.9, 1.1, 1.2))


@pytest.fixture(scope="module")
def tiny():
    net = golden_net(TINY).eval()
    half = {k: v.half() for k, v in net.state_dict().items()}
    net.load_state_dict({k: v.float() for k, v in half.items()})  # the fp16-representable weights
    return net, half, random_step_inputs(TINY, frames=2, latent_size=8)


def test_fp16_net_pth_loads_strictly_and_matches(tiny, tmp_path):
    net, half, inputs = tiny
    path = tmp_path / "net.pth"
    torch.save(half, path)
    loaded = load_net(path)  # config inferred from the shapes
    assert loaded.config == TINY
    assert loaded.dtype == torch.float32 and not loaded.training
    assert all(not t.is_meta for t in loaded.state_dict().values())
    torch.testing.assert_close(step(loaded, inputs), step(net, inputs), rtol=0, atol=0)
    explicit = load_net(path, config="tiny", dtype=torch.float16)
    assert explicit.dtype == torch.float16
    out = step(explicit, inputs).float()
    ref = step(net, inputs)
    assert float((out - ref).norm() / ref.norm()) < 0.05


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_bad_keys_fail_naming_the_key(tiny, tmp_path, change):
    _, half, _ = tiny
    state = dict(half)
    key = "denoising_unet.mid_block.audio_modules.0.transformer_blocks.0.attn_audioemo.to_q.weight"
    if change == "missing":
        del state[key]
    elif change == "unexpected":
        key = "denoising_unet.mid_block.extra.weight"
        state[key] = torch.zeros(2)
    else:
        state[key] = torch.zeros(3, 3, dtype=torch.float16)
    torch.save(state, tmp_path / "net.pth")
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")) as err:
        load_net(tmp_path / "net.pth", config=TINY)
    assert change if change != "shape" else "wrong shape" in str(err.value)


def test_wrong_config_is_reported(tiny, tmp_path):
    _, half, _ = tiny
    torch.save(half, tmp_path / "net.pth")
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_net(tmp_path / "net.pth", config=TINY.replace(cross_attention_dim=64))


def test_foreign_checkpoints_are_recognised(tmp_path, tiny_sd_unet, tiny):
    folder, sd = tiny_sd_unet
    hallo = {k: v for k, v in tiny[1].items() if "audioemo" not in k}
    torch.save(hallo, tmp_path / "hallo.pth")
    with pytest.raises(CheckpointError, match="Hallo net.pth"):
        load_net(tmp_path / "hallo.pth")
    torch.save(sd, tmp_path / "net.pth")
    with pytest.raises(CheckpointError, match="not an EmoCAST net.pth.*diffusers UNet"):
        load_net(tmp_path / "net.pth")
    (tmp_path / "evil.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_net(tmp_path / "evil.pth")

    torch.save({"x": argparse.Namespace(a=1)}, tmp_path / "code.pth")  # needs code to unpickle
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(tmp_path / "code.pth")


def test_default_path_goes_through_the_registry(tmp_path):
    with pytest.raises(MissingModelError, match="emocast"):
        load_net(root=tmp_path / "models")


def test_safetensors_roundtrip_keeps_config(tiny, tmp_path):
    net, _, inputs = tiny
    cfg = TINY.replace(audio_layers=8, audio_feature_dim=16)  # not inferable from shapes: from the metadata
    other = golden_net(cfg)
    path = save_safetensors(other, tmp_path / "ours" / "net.safetensors")
    loaded = load_net(path)
    assert loaded.config == cfg
    theirs = loaded.state_dict()
    for k, v in other.state_dict().items():
        assert torch.equal(theirs[k], v), k


# --- training initialisation ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sd_unet(tmp_path_factory):
    """A real diffusers UNet2DConditionModel with the TINY sizes, saved like SD-1.5's unet/ folder."""
    from diffusers import UNet2DConditionModel

    folder = tmp_path_factory.mktemp("sd") / "unet"
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=TINY.layers_per_block,
        block_out_channels=TINY.block_out_channels, norm_num_groups=32, cross_attention_dim=TINY.cross_attention_dim,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    unet.save_pretrained(folder)
    return folder, unet.state_dict()


def motion_module_state(config, seed=1):
    with torch.device("meta"):
        net = EmoCASTNet(config)
    g = torch.Generator().manual_seed(seed)
    return {k[len("denoising_unet."):]: torch.randn(v.shape, generator=g)
            for k, v in net.state_dict().items() if ".motion_modules." in k}


def test_init_from_pretrained(tiny_sd_unet, tmp_path):
    folder, sd = tiny_sd_unet
    mm = motion_module_state(TINY)
    torch.save(mm, tmp_path / "mm.ckpt")
    stage = {"audioproj.norm.weight": torch.full((TINY.audio_attention_dim,), 3.0)}
    torch.save(stage, tmp_path / "stage.pth")
    net, report = init_from_pretrained(folder, tmp_path / "mm.ckpt", tmp_path / "stage.pth", config=TINY)
    own = net.state_dict()
    for k, v in sd.items():
        assert torch.equal(own[f"denoising_unet.{k}"], v), k
        if not k.startswith(("conv_norm_out", "conv_out")):
            assert torch.equal(own[f"reference_unet.{k}"], v), k
    for k, v in mm.items():
        assert torch.equal(own[f"denoising_unet.{k}"], v), k
    assert torch.equal(own["audioproj.norm.weight"], stage["audioproj.norm.weight"])
    counts = report.counts()
    assert counts["sd_unet"] == 2 * len(sd) - 4 and counts["motion_module"] == len(mm) and counts["stage"] == 1
    new = set(report.new)
    assert "denoising_unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_ip.0.weight" in new
    assert "denoising_unet.mid_block.audio_modules.0.transformer_blocks.0.attn_audioemo.to_q.weight" in new
    assert "face_locator.conv_out.weight" in new and "imageproj.proj.weight" in new
    assert not any(".motion_modules." in k for k in new)
    assert len(new) + len(sd) * 2 - 4 + len(mm) + 1 == len(own)
    assert "ip_adapter" in report.summary() and "audio_emo" in report.summary()
    # zero-initialised where the release zero-initialises
    assert own["face_locator.conv_out.weight"].abs().sum() == 0
    assert own["denoising_unet.mid_block.audio_modules.0.transformer_blocks.0.zero_conv_lip.weight"].abs().sum() == 0


def test_init_from_pretrained_fails_on_shape_mismatch(tiny_sd_unet, tmp_path):
    folder, _ = tiny_sd_unet
    mm = motion_module_state(TINY)
    key = "down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
    mm[key] = torch.zeros(1, 24, TINY.block_out_channels[1])  # e.g. an AnimateDiff v1 table (24 frames)
    torch.save(mm, tmp_path / "mm.ckpt")
    with pytest.raises(CheckpointError, match=r"pos_encoder\.pe \(file 1x24x32, model 1x32x32\)"):
        init_from_pretrained(folder, tmp_path / "mm.ckpt", config=TINY)
    with pytest.raises(CheckpointError, match="unexpected key"):
        torch.save({"down_blocks.0.motion_modules.9.x": torch.zeros(1)}, tmp_path / "bad.ckpt")
        init_from_pretrained(folder, tmp_path / "bad.ckpt", config=TINY)


def test_init_reads_unet_sizes_from_config_json(tiny_sd_unet):
    folder, _ = tiny_sd_unet
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["block_out_channels"] == list(TINY.block_out_channels)
    net, _ = init_from_pretrained(folder, False, config=TINY.replace(block_out_channels=(64, 64, 64, 64)))
    assert net.config.block_out_channels == TINY.block_out_channels


def test_tiny_model_kit_loads_through_the_registry(tiny_models):
    """The foundation kit's net.pth / SD unet / AnimateDiff file load by registry path, strictly."""
    net = load_net(root=tiny_models)
    assert net.config == TINY
    trained, report = init_from_pretrained(root=tiny_models, config=TINY)
    assert report.counts()["motion_module"] > 0 and report.counts()["sd_unet"] > 0
    assert not any(".motion_modules." in k for k in report.new)
