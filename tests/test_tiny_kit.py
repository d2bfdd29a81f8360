"""The tiny model kit writes the real on-disk formats, and the real libraries load them offline."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emocast import registry
from emocast.models import build_net, configs
from emocast.preprocess import audio, text
from emocast.testing import tiny_kit

REFERENCE_IMAGES = Path(__file__).resolve().parents[1] / "examples" / "reference_images"


def test_kit_has_every_component_with_a_writer(tiny_models):
    expected = ["stable-diffusion-v1-5", "sd-vae-ft-mse", "clip-vit-large-patch14", "wav2vec", "motion_module",
                "face_analysis", "audio_separator", "emocast"]
    assert tiny_kit.tiny_net_config() == configs.TINY
    registry.require(expected, tiny_models)  # raises with the report otherwise
    assert not (tiny_models / "face_analysis" / "models" / "face_landmarker_v2_with_blendshapes.task").exists()


def test_unet_config_matches_networks_tiny(tiny_models):
    from diffusers import UNet2DConditionModel

    unet_dir = registry.component_dir("stable-diffusion-v1-5", tiny_models)
    cfg = json.loads((unet_dir / "config.json").read_text())
    assert cfg["_class_name"] == "UNet2DConditionModel"
    unet = UNet2DConditionModel.from_pretrained(unet_dir)
    assert len(unet.down_blocks) == 4 and unet.config.cross_attention_dim == cfg["cross_attention_dim"]
    assert configs.from_unet_config(cfg) == configs.TINY.replace(
        audio_layers=configs.SD15.audio_layers, audio_feature_dim=configs.SD15.audio_feature_dim,
        audio_intermediate_dim=configs.SD15.audio_intermediate_dim,
        audio_context_tokens=configs.SD15.audio_context_tokens,
        audio_attention_dim=configs.SD15.audio_attention_dim, audio_emo_head_dim=configs.SD15.audio_emo_head_dim,
        face_locator_channels=configs.SD15.face_locator_channels)  # the UNet part of TINY round-trips


def test_vae_downsamples_8x_with_its_own_scaling_factor(tiny_models):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(registry.component_dir("sd-vae-ft-mse", tiny_models))
    # in config.json like SD's, but not SD's 0.18215: a hard-coded constant shows up in the tests
    assert vae.config.scaling_factor == tiny_kit.VAE_SCALING_FACTOR and abs(vae.config.scaling_factor - 0.18215) > 1
    with torch.no_grad():
        lat = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
        out = vae.decode(lat).sample
    assert lat.shape == (1, 4, 8, 8) and out.shape == (1, 3, 64, 64)


def _face_pixels(size: int = 64) -> torch.Tensor:
    """Three face photos (the bundled example, skimage's astronaut crop, insightface's Tom Hanks) in [-1, 1]."""
    import cv2
    import numpy as np
    from PIL import Image

    from emocast.testing.synthetic import face_image

    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(REFERENCE_IMAGES.glob("*.png"))]
    images += [face_image(name)[0] for name in ("astronaut", "hanks")]
    out = []
    for img in images:
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        out.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_vae_latents_are_signal_like_sds(tiny_models):
    """Like SD's VAE: the posterior noise is small next to how latents differ between images, latents x
    scaling_factor have a std of order 1, and decoding the mean gives the image back (here: up to the 8x8
    averaging). Statistics of fixed weights on fixed images, asserted with wide margins (measured: noise/spread
    0.014, scaled std 1.04 with every channel 0.94-1.03, reconstruction error 5e-4 of the image variance)."""
    import torch.nn.functional as F
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(registry.component_dir("sd-vae-ft-mse", tiny_models))
    x = _face_pixels()
    assert len(x) >= 3
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
        rec = vae.decode(dist.mean).sample
    spread = float(dist.mean.std(dim=0).mean())  # per latent element, across images
    noise = float(dist.std.mean())
    assert noise <= 0.1 * spread, (noise, spread)
    scaled = dist.mean * vae.config.scaling_factor
    assert 0.5 <= float(scaled.std()) <= 2.0
    per_channel = scaled.std(dim=(0, 2, 3))
    assert bool(((per_channel > 0.3) & (per_channel < 3.0)).all()), per_channel  # no dead or dominant channel
    blocks = F.interpolate(F.avg_pool2d(x, 8), scale_factor=8, mode="nearest")
    assert float(((rec - blocks) ** 2).mean()) <= 0.02 * float(x.var())
    assert float(((rec - x) ** 2).mean()) <= 0.5 * float(x.var())  # a real (blurry) reconstruction


def test_clip_tokenizer_is_the_real_one(tiny_models):
    from transformers import CLIPTextModel, CLIPTokenizer

    d = registry.component_dir("clip-vit-large-patch14", tiny_models)
    tok = CLIPTokenizer.from_pretrained(d)
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    ids = tok(["A person is talking with happy emotion.", ""], padding="max_length", max_length=77,
              truncation=True, return_tensors="pt")
    assert ids.input_ids.shape == (2, 77) and ids.input_ids[1, 2].item() == 49407  # pads with <|endoftext|>
    model = CLIPTextModel.from_pretrained(d)
    with torch.no_grad():
        hidden = model(ids.input_ids, attention_mask=ids.attention_mask).last_hidden_state
    assert hidden.shape == (2, 77, json.loads((d / "config.json").read_text())["hidden_size"])


def test_wav2vec_loads_like_the_real_checkpoint(tiny_models):
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    d = registry.component_dir("wav2vec", tiny_models)
    model, info = Wav2Vec2Model.from_pretrained(d, output_loading_info=True)
    assert not info["missing_keys"]  # the "wav2vec2." prefix of the CTC checkpoint is resolved
    fe = Wav2Vec2FeatureExtractor.from_pretrained(d)
    x = fe(torch.randn(16000).numpy(), sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
    dims = tiny_kit.tiny_audio_dims()
    assert out.last_hidden_state.shape == (1, 49, dims["hidden_size"])  # 320 samples per frame, like the real one
    assert len(out.hidden_states) == dims["num_hidden_layers"] + 1
    for f in ("feature_extractor_config.json", "vocab.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (d / f).stat().st_size > 0


def test_motion_module_has_animatediff_layout(tiny_models):
    path = registry.component_dir("motion_module", tiny_models) / "mm_sd_v15_v2.ckpt"
    sd = torch.load(path, map_location="cpu", weights_only=True)
    cfg = tiny_kit.tiny_unet_config()
    lpb, n = cfg["layers_per_block"], len(cfg["block_out_channels"])
    modules = {k.split(".temporal_transformer")[0] for k in sd}
    assert len(modules) == n * lpb + 1 + n * (lpb + 1)
    c = cfg["block_out_channels"][0]
    key = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    assert sd[key].shape == (1, 32, c)
    assert sd["mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.ff.net.0.proj.weight"].shape == (
        8 * cfg["block_out_channels"][-1], cfg["block_out_channels"][-1])
    assert not any(k.startswith(("module.", "state_dict")) for k in sd)
    t = "mid_block.motion_modules.0.temporal_transformer"
    proj_in, proj_out = sd[f"{t}.proj_in.weight"], sd[f"{t}.proj_out.weight"]
    assert float(proj_out.std()) > 0 and float(proj_out.std()) <= 0.2 * float(proj_in.std())  # a small residual


def test_motion_module_keys_fit_the_denoising_unet(tiny_models):
    """AnimateDiff keys must land on the network's own motion modules (no renaming, like the release)."""
    net_keys = build_net(tiny_kit.tiny_net_config()).denoising_unet.state_dict()
    mm = torch.load(registry.component_dir("motion_module", tiny_models) / "mm_sd_v15_v2.ckpt",
                    map_location="cpu", weights_only=True)
    missing = [k for k in mm if k not in net_keys]
    assert not missing, missing[:5]
    assert all(net_keys[k].shape == v.shape for k, v in mm.items())


def test_net_pth_is_the_tiny_state_dict(tiny_models):
    sd = torch.load(registry.component_dir("emocast", tiny_models) / "net.pth", map_location="cpu",
                    weights_only=True)
    prefixes = {k.split(".")[0] for k in sd}
    assert prefixes == {"reference_unet", "denoising_unet", "face_locator", "imageproj", "audioproj"}
    net = build_net(tiny_kit.tiny_net_config())
    net.load_state_dict(sd, strict=True)


def test_kit_is_deterministic(tmp_path):
    a = tiny_kit.motion_module_state_dict()
    b = tiny_kit.motion_module_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    tiny_kit.write_vae(tmp_path / "v1")
    tiny_kit.write_vae(tmp_path / "v2")
    f = "diffusion_pytorch_model.safetensors"
    assert (tmp_path / "v1" / f).read_bytes() == (tmp_path / "v2" / f).read_bytes()


def test_package_loaders_accept_the_kit(tiny_models):
    """The package's own loaders (registry check + from_pretrained) read the kit."""
    import numpy as np

    emb = text.TextEncoder(tiny_models, device="cpu", dtype=torch.float32).encode(
        ["A person is talking with happy emotion."])
    assert emb.shape == (1, 77, tiny_kit.tiny_unet_config()["cross_attention_dim"])
    wave = np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.1  # 1 s -> 25 video frames
    feats = audio.Wav2VecFeatures(tiny_models, device="cpu").extract(wave)
    dims = tiny_kit.tiny_audio_dims()
    assert feats.num_frames == 25
    assert tuple(feats.features.shape) == (25, dims["num_hidden_layers"], dims["hidden_size"])
