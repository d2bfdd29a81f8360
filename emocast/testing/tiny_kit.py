"""A complete ``pretrained_models`` folder of small random models in the real on-disk formats.

:func:`write_tiny_models(root)` writes every component of :data:`emocast.registry.COMPONENTS` that has a tiny
writer, with the same folder names, file names and formats as the real downloads, so the package's real loaders
(which all call :func:`emocast.registry.require`) load them unchanged:

| component | written as |
|---|---|
| ``stable-diffusion-v1-5/unet`` | diffusers ``UNet2DConditionModel`` config + safetensors (the networks' TINY config) |
| ``sd-vae-ft-mse`` | diffusers ``AutoencoderKL``, 4 levels (8x downsampling like SD), SD-like latent statistics, scaling factor 4.0 (not 0.18215, on purpose: see :func:`write_vae`) |
| ``clip-vit-large-patch14`` | ``CLIPTextModel`` (small hidden size) + the **real** CLIP BPE tokenizer (49,408 tokens) |
| ``wav2vec/wav2vec2-base-960h`` | ``Wav2Vec2ForCTC`` (keys prefixed ``wav2vec2.`` like the real file) with the real conv strides (320 samples per frame), feature extractor / preprocessor configs and the CTC tokenizer files |
| ``motion_module/mm_sd_v15_v2.ckpt`` | ``torch.save`` of a plain dict with AnimateDiff-v2 key names for the tiny UNet (small residual ``proj_out``, see :func:`motion_module_state_dict`) |
| ``emocast/net.pth`` | ``torch.save`` of ``EmoCASTNet(TINY).state_dict()`` |
| ``face_analysis/models`` | :func:`emocast.testing.tiny_face_models.write_tiny_face_models` |
| ``audio_separator`` | :func:`emocast.testing.tiny_separator.write_tiny_separator` |
| ``eval/`` | :func:`emocast.testing.tiny_eval_models.write_tiny_eval_models` (``eval_models=True``) |

Weights are random but seeded: the same call writes the same files.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .. import registry
from ..models import configs as net_configs
from .clip_tokenizer import VOCAB_SIZE, write_clip_tokenizer

SEED = 1234

# the SD-1.5 unet/config.json keys that NetConfig does not describe (the sizes come from the networks' TINY)
_UNET_CONFIG_BASE = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 32, 32, 32],
    "layers_per_block": 1,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
}


# ------------------------------------------------------------------------------------------------ the TINY spec
def tiny_net_config():
    """The networks' TINY :class:`~emocast.models.configs.NetConfig`."""
    return net_configs.TINY


def unet_config_from_net(cfg) -> dict:
    """The SD-1.5-style diffusers ``unet/config.json`` of a NetConfig (same layout as SD-1.5, its sizes)."""
    n = len(cfg.block_out_channels)
    out = dict(_UNET_CONFIG_BASE)
    out.update(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels,
        down_block_types=["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
        block_out_channels=list(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups, norm_eps=cfg.norm_eps, cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.num_heads, flip_sin_to_cos=cfg.flip_sin_to_cos, freq_shift=cfg.freq_shift)
    return out


def tiny_unet_config() -> dict:
    """The diffusers UNet config of the tiny architecture (the networks' TINY config)."""
    return unet_config_from_net(tiny_net_config())


def tiny_audio_dims() -> dict:
    """wav2vec2 hidden size and layer count the tiny audio projection expects."""
    cfg = tiny_net_config()
    return {"hidden_size": int(cfg.audio_feature_dim), "num_hidden_layers": int(cfg.audio_layers)}


# ------------------------------------------------------------------------------------------------ writers
def _seed(offset: int) -> None:
    torch.manual_seed(SEED + offset)


def write_sd_unet(folder, config: dict | None = None) -> Path:
    """``stable-diffusion-v1-5/unet``: config.json + diffusion_pytorch_model.safetensors."""
    from diffusers import UNet2DConditionModel

    _seed(1)
    UNet2DConditionModel(**(config or tiny_unet_config())).save_pretrained(folder, safe_serialization=True)
    return Path(folder)


# The kit's VAE (see write_vae): latent scale like SD's, but its own scaling factor so that a hard-coded 0.18215
# anywhere changes what the tests see (training and inference must both read the VAE config).
VAE_SCALING_FACTOR = 4.0
VAE_LOGVAR = -12.0  # posterior std exp(-6) ~ 0.0025 (raw units): ~1 % of the latents' spread, like SD's VAE
# latent channels = gains x (luminance, R-G, (R+G)/2-B, G-B) of the 8x8-average RGB in [-1, 1]; the gains give
# each channel about the same spread on face photos and latents x VAE_SCALING_FACTOR a std of about 1
_VAE_COLOURS = ((1 / 3, 1 / 3, 1 / 3), (1.0, -1.0, 0.0), (0.5, 0.5, -1.0), (0.0, 1.0, -1.0))
_VAE_GAINS = (0.55, 2.75, 1.9, 2.75)
_VAE_RESIDUAL = 0.01  # scale of the random residual branches (resnets, attention) around the pooling path
_VAE_CONST, _VAE_SHIFT = 50.0, 16.0  # GroupNorm-stabilising constant channels; SiLU operating point


def write_vae(folder) -> Path:
    """``sd-vae-ft-mse``: an AutoencoderKL with SD's 4-level layout (8x spatial downsampling, 4 latent channels)
    that behaves like SD's where tests need it: the posterior mean is a fixed linear function of the 8x8-average
    colour (:data:`_VAE_COLOURS` x :data:`_VAE_GAINS`), the posterior std is ~1 % of the latents' spread
    (``logvar = VAE_LOGVAR``), ``latents x scaling_factor`` have a std of about 1 on face images, and the decoder
    inverts the encoder up to the 8x8 averaging (it renders the nearest-upsampled block colours). So training
    targets are mostly signal (the old random VAE's were ~98 % posterior noise) and a net that predicts the
    right latents renders frames close to the video.

    ``scaling_factor`` is :data:`VAE_SCALING_FACTOR` = 4.0, not SD's 0.18215: code that hard-codes 0.18215
    instead of reading the VAE config scales the kit's latents 22x wrong, which the tests see.

    How: every resnet and attention residual branch keeps its seeded random weights, scaled by
    :data:`_VAE_RESIDUAL`; the main path (``conv_in``, 2x2-average downsamplers, the 1x1 shortcuts, nearest
    upsamplers, ``quant_conv``/``post_quant_conv``, ``conv_out``) is set to the linear maps above. The final
    GroupNorm + SiLU of encoder and decoder would normalise each image's colours away; there every colour
    enters a group as zero-mean +/- pairs next to a +/-``_VAE_CONST`` pair, so the group mean is exactly 0 and its
    std is set by the constant (image-dependent only at second order, < 0.1 %), and the SiLU runs at
    ``+_VAE_SHIFT`` where it is linear to ~1e-6.
    """
    from diffusers import AutoencoderKL
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D

    _seed(2)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=2, sample_size=64,
        scaling_factor=VAE_SCALING_FACTOR)
    c, shift = _VAE_CONST, _VAE_SHIFT
    to_latent = torch.tensor(_VAE_GAINS)[:, None] * torch.tensor(_VAE_COLOURS)  # (4, 3): RGB -> latent mean
    enc, dec = vae.encoder, vae.decoder
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, ResnetBlock2D):
                m.conv2.weight.mul_(_VAE_RESIDUAL)
                m.conv2.bias.mul_(_VAE_RESIDUAL)
            elif isinstance(m, Attention):
                m.to_out[0].weight.mul_(_VAE_RESIDUAL)
                m.to_out[0].bias.mul_(_VAE_RESIDUAL)
        # encoder: RGB in channels 0-2, 2x2 averages down to 1/8
        _set_conv(enc.conv_in, _embed(8, 3))
        for block in enc.down_blocks:
            for down in block.downsamplers or []:
                down.conv.weight.zero_()
                down.conv.bias.zero_()
                for ch in range(down.conv.out_channels):
                    down.conv.weight[ch, ch, :2, :2] = 0.25  # (padding right/bottom is never read)
        # 8 -> 16 channels, per GroupNorm group of 8: (C, -C, R, -R, G, -G, B, -B)
        layout, const = torch.zeros(16, 8), torch.zeros(16)
        for g in (0, 8):
            const[g], const[g + 1] = c, -c
            for i in range(3):
                layout[g + 2 + 2 * i, i], layout[g + 3 + 2 * i, i] = 1.0, -1.0
        _set_conv(enc.down_blocks[2].resnets[0].conv_shortcut, layout, const)
        enc.conv_norm_out.weight.fill_(c / 2)  # the group std is ~C/2: GroupNorm + SiLU return x + shift
        enc.conv_norm_out.bias.fill_(shift)
        read = torch.zeros(8, 16)  # RGB = (colour - (-colour)) / 2; logvar channels 4-7 stay 0
        for i in range(3):
            read[i, 2 + 2 * i], read[i, 3 + 2 * i] = 0.5, -0.5
        _set_conv(enc.conv_out, read)
        quant, quant_bias = torch.zeros(8, 8), torch.zeros(8)
        quant[:4, :3] = to_latent
        quant_bias[4:] = VAE_LOGVAR
        _set_conv(vae.quant_conv, quant, quant_bias)
        # decoder: latents -> RGB in channels 0-2, nearest upsampling
        _set_conv(vae.post_quant_conv, _embed(4, 3) @ torch.linalg.pinv(to_latent))
        _set_conv(dec.conv_in, _embed(16, 3) @ _embed(4, 3).T)
        for block in dec.up_blocks:
            for up in block.upsamplers or []:
                _set_conv(up.conv, torch.eye(up.conv.out_channels))
        # 16 -> 8 channels, GroupNorm groups of 4: (C + G, -C + G, R - G, -R - G), (C + B, -C + B, -B, -B)
        layout, const = torch.zeros(8, 16), torch.tensor([c, -c, 0, 0, c, -c, 0, 0])
        layout[0, 1] = layout[1, 1] = 1.0
        layout[2, 0], layout[2, 1], layout[3, 0], layout[3, 1] = 1.0, -1.0, -1.0, -1.0
        layout[4, 2] = layout[5, 2] = 1.0
        layout[6, 2] = layout[7, 2] = -1.0
        _set_conv(dec.up_blocks[2].resnets[0].conv_shortcut, layout, const)
        dec.conv_norm_out.weight.fill_(c / math.sqrt(2))  # the group std is ~C/sqrt(2)
        dec.conv_norm_out.bias.fill_(shift)
        read, read_bias = torch.zeros(3, 8), torch.tensor([0.0, shift, shift])
        read[0, 2], read[0, 3] = 0.5, -0.5  # R
        read[1, 2], read[1, 3] = -0.5, -0.5  # G (+ shift)
        read[2, 6], read[2, 7] = -0.5, -0.5  # B (+ shift)
        _set_conv(dec.conv_out, read, read_bias)
    vae.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def _embed(n: int, k: int) -> torch.Tensor:
    """(n, k): the first k of n channels."""
    return torch.eye(n)[:, :k]


def _set_conv(conv, matrix: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """A conv that applies ``matrix`` (out, in) per pixel: centre tap only; bias 0 unless given."""
    conv.weight.zero_()
    k = conv.weight.shape[-1] // 2
    conv.weight[:, :, k, k] = matrix
    conv.bias.copy_(bias if bias is not None else torch.zeros(conv.out_channels))


def write_clip(folder, hidden_size: int | None = None) -> Path:
    """``clip-vit-large-patch14``: a small CLIPTextModel (hidden = the UNet's cross-attention dim) + real tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModel

    hidden = hidden_size or int(tiny_unet_config()["cross_attention_dim"])
    heads = 4 if hidden % 4 == 0 else 1
    _seed(3)
    cfg = CLIPTextConfig(vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=2 * hidden,
                         projection_dim=hidden, num_hidden_layers=2, num_attention_heads=heads,
                         max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=1)
    CLIPTextModel(cfg).save_pretrained(folder, safe_serialization=True)
    write_clip_tokenizer(folder)
    return Path(folder)


_W2V_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L", "U",
              "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q", "Z"]


def write_wav2vec(folder, hidden_size: int | None = None, num_hidden_layers: int | None = None) -> Path:
    """``wav2vec/wav2vec2-base-960h``: the seven files of the real folder.

    The model is a ``Wav2Vec2ForCTC`` like facebook/wav2vec2-base-960h (weights under ``wav2vec2.``, plus
    ``lm_head``), with the real feature-encoder strides, so 1 s of 16 kHz audio gives 49 frames.
    """
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    dims = tiny_audio_dims()
    hidden = hidden_size or dims["hidden_size"]
    layers = num_hidden_layers or dims["num_hidden_layers"]
    folder = Path(folder)
    _seed(4)
    cfg = Wav2Vec2Config(
        vocab_size=len(_W2V_VOCAB), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, conv_dim=(8,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="group", do_stable_layer_norm=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        architectures=["Wav2Vec2ForCTC"])
    Wav2Vec2ForCTC(cfg).save_pretrained(folder, safe_serialization=True)
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=False)
    fe.save_pretrained(folder)
    (folder / "feature_extractor_config.json").write_text((folder / "preprocessor_config.json").read_text())
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(_W2V_VOCAB)}))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "Wav2Vec2CTCTokenizer", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>",
         "pad_token": "<pad>", "word_delimiter_token": "|", "do_lower_case": False}))
    return folder


MOTION_PROJ_OUT_SCALE = 0.1  # see motion_module_state_dict


def motion_module_state_dict(unet_config: dict | None = None, pe_len: int = 32) -> dict[str, torch.Tensor]:
    """Random AnimateDiff-v2 motion-module weights for a UNet config (the key names of ``mm_sd_v15_v2.ckpt``).

    Per block: ``down_blocks.i.motion_modules.j`` (j < layers_per_block), ``mid_block.motion_modules.0``,
    ``up_blocks.i.motion_modules.j`` (j <= layers_per_block), each ``.temporal_transformer.`` + norm, proj_in,
    proj_out, ``transformer_blocks.0.attention_blocks.{0,1}`` (to_q/k/v, to_out.0, pos_encoder.pe (1, 32, C)),
    ``norms.{0,1}``, ``ff.net.0.proj`` (8C x C), ``ff.net.2`` (C x 4C), ``ff_norm``.

    Like trained AnimateDiff modules, which refine the frame features rather than replace them, each module's
    residual ``proj_out`` is small (:data:`MOTION_PROJ_OUT_SCALE` x a random ``1/sqrt(C)`` matrix): a stage-1
    export renders through them at inference, and full-size random residuals would bury the spatial layers'
    output (tests/test_train_inference_agree.py, 50 stage-1 steps: the render error falls x0.40 with 0.1, only
    x0.64 with full-size residuals).
    """
    cfg = unet_config or tiny_unet_config()
    ch = list(cfg["block_out_channels"])
    lpb = int(cfg["layers_per_block"])
    places = [(f"down_blocks.{i}.motion_modules.{j}", c) for i, c in enumerate(ch) for j in range(lpb)]
    places.append(("mid_block.motion_modules.0", ch[-1]))
    places += [(f"up_blocks.{i}.motion_modules.{j}", c) for i, c in enumerate(reversed(ch)) for j in range(lpb + 1)]
    g = torch.Generator().manual_seed(SEED + 5)
    sd: dict[str, torch.Tensor] = {}

    def lin(key, out_f, in_f, bias=True):
        sd[f"{key}.weight"] = torch.randn(out_f, in_f, generator=g) / math.sqrt(in_f)
        if bias:
            sd[f"{key}.bias"] = torch.zeros(out_f)

    def norm(key, c):
        sd[f"{key}.weight"] = torch.ones(c)
        sd[f"{key}.bias"] = torch.zeros(c)

    for place, c in places:
        p = f"{place}.temporal_transformer"
        norm(f"{p}.norm", c)
        lin(f"{p}.proj_in", c, c)
        lin(f"{p}.proj_out", c, c)
        sd[f"{p}.proj_out.weight"] *= MOTION_PROJ_OUT_SCALE
        b = f"{p}.transformer_blocks.0"
        for a in range(2):
            for qkv in ("to_q", "to_k", "to_v"):
                lin(f"{b}.attention_blocks.{a}.{qkv}", c, c, bias=False)
            lin(f"{b}.attention_blocks.{a}.to_out.0", c, c)
            sd[f"{b}.attention_blocks.{a}.pos_encoder.pe"] = _sinusoid(pe_len, c)
            norm(f"{b}.norms.{a}", c)
        lin(f"{b}.ff.net.0.proj", 8 * c, c)
        lin(f"{b}.ff.net.2", c, 4 * c)
        norm(f"{b}.ff_norm", c)
    return sd


def _sinusoid(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(pos * div)
    pe[0, :, 1::2] = torch.cos(pos * div)
    return pe


def write_motion_module(path, unet_config: dict | None = None) -> Path:
    """``motion_module/mm_sd_v15_v2.ckpt``: ``torch.save`` of the plain key -> tensor dict (like the release)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(motion_module_state_dict(unet_config), path)
    return path


def write_net(path) -> Path:
    """``emocast/net.pth``: ``torch.save`` of the tiny EmoCASTNet's state dict."""
    from ..models import build_net

    _seed(6)
    net = build_net(tiny_net_config())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


# ------------------------------------------------------------------------------------------------ the kit
def write_tiny_models(root, *, eval_models: bool = True) -> Path:
    """Write a complete ``pretrained_models``-shaped folder of tiny random models into ``root``; returns ``root``.

    ``eval_models=False`` leaves out ``eval/``. Existing files are overwritten.
    """
    from .tiny_eval_models import write_tiny_eval_models
    from .tiny_face_models import write_tiny_face_models
    from .tiny_separator import write_tiny_separator

    root = Path(root)
    comp = registry.COMPONENTS
    unet_cfg = tiny_unet_config()
    write_sd_unet(comp["stable-diffusion-v1-5"].path(root), unet_cfg)
    write_vae(comp["sd-vae-ft-mse"].path(root))
    write_clip(comp["clip-vit-large-patch14"].path(root), int(unet_cfg["cross_attention_dim"]))
    write_wav2vec(comp["wav2vec"].path(root))
    write_motion_module(comp["motion_module"].path(root) / "mm_sd_v15_v2.ckpt", unet_cfg)
    write_net(comp["emocast"].path(root) / "net.pth")
    write_tiny_face_models(comp["face_analysis"].path(root))
    write_tiny_separator(comp["audio_separator"].path(root))
    if eval_models:
        write_tiny_eval_models(root)
    return root


def main(argv=None) -> int:
    """``python -m emocast.testing.tiny_kit DIR``: write the kit into DIR (for manual experiments)."""
    import argparse

    p = argparse.ArgumentParser(description="Write a pretrained_models-shaped folder of tiny random models.")
    p.add_argument("root", help="folder to write (e.g. /tmp/tiny_models); use it with --root / EMOCAST_MODELS")
    args = p.parse_args(argv)
    write_tiny_models(args.root)
    for name in registry.COMPONENTS:
        print(f"{registry.status(name, args.root)[0]:<10} {name}")
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main(main))
