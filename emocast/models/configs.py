"""Architecture configurations of the EmoCAST networks.

One frozen dataclass, :class:`NetConfig`, describes every size in the five networks. Three presets:

- :data:`SD15` — the released checkpoint (SD-1.5 UNet, 768-d CLIP/audio tokens, wav2vec2-base features);
  the numbers spec §1-4 hard-codes.
- :func:`parity_config` — the UNet config of a parity fixture (``meta["unet_config"]``) with everything else
  at release size.
- :data:`TINY` — a few-hundred-thousand-parameter net for fast tests; its CLIP/audio sizes match the tiny model
  kit (``emocast.testing``). Use ``TINY.replace(cross_attention_dim=48, ...)`` for other sizes.

Build a net with ``emocast.models.build_net(config)`` (``config`` may be a :class:`NetConfig`, a dict of its
fields, or a preset name ``"sd15" | "tiny"``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ConfigError


@dataclass(frozen=True)
class NetConfig:
    # --- UNet (both UNets share it; diffusers SD-1.5 names in brackets) ---
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    in_channels: int = 4
    out_channels: int = 4
    num_heads: int = 8  # [attention_head_dim]: the release treats SD's value 8 as the number of heads
    cross_attention_dim: int = 768  # text (CLIP) and face tokens
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    # --- decoupled text/face cross-attention (spec §3) ---
    num_face_tokens: int = 4
    face_embedding_dim: int = 512  # insightface identity embedding
    # --- audio (spec §1.6, §4) ---
    audio_window: int = 5  # frames per audio window (±2)
    audio_layers: int = 12  # wav2vec2 hidden layers stacked
    audio_feature_dim: int = 768  # wav2vec2 hidden size
    audio_intermediate_dim: int = 512
    audio_context_tokens: int = 32
    audio_attention_dim: int = 768  # audio token dim (AudioProj output, keys of the emotive audio attention)
    audio_emo_head_dim: int = 80  # attn_audioemo: num_heads x 80 inner dim
    # --- motion modules (AnimateDiff v2, spec §2.6) ---
    motion_max_len: int = 32  # positional-encoding table length (frames + motion frames)
    # --- FaceLocator (spec §1.4) ---
    face_locator_in_channels: int = 3
    face_locator_channels: tuple[int, ...] = (16, 32, 64, 128)
    # --- consistency-distilled student (emocast.training.distill) ---
    guidance_embed_dim: int = 0  # sinusoidal features of the guidance scale w fed to the denoising UNet; 0 = none

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        object.__setattr__(self, "face_locator_channels", tuple(int(c) for c in self.face_locator_channels))
        problems = []
        for c in self.block_out_channels:
            if c % self.num_heads:
                problems.append(f"block_out_channels {c} is not divisible by num_heads {self.num_heads}")
            if c % self.norm_num_groups:
                problems.append(f"block_out_channels {c} is not divisible by norm_num_groups {self.norm_num_groups}")
        if len(self.block_out_channels) < 2:
            problems.append("block_out_channels needs at least 2 levels")
        if self.guidance_embed_dim < 0 or self.guidance_embed_dim % 2:
            problems.append(f"guidance_embed_dim must be 0 or a positive even number, got {self.guidance_embed_dim}")
        if problems:
            raise ConfigError("invalid network config: " + "; ".join(problems))

    # convenient helpers --------------------------------------------------------------------------------
    @property
    def num_levels(self) -> int:
        return len(self.block_out_channels)

    @property
    def time_embed_dim(self) -> int:
        return self.block_out_channels[0] * 4

    def replace(self, **changes) -> "NetConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        d["face_locator_channels"] = list(self.face_locator_channels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NetConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown network config keys {unknown}; valid keys: {sorted(names)}")
        return cls(**dict(d))


SD15 = NetConfig()

TINY = NetConfig(
    block_out_channels=(32, 32, 32, 32),
    layers_per_block=1,
    cross_attention_dim=32,
    face_embedding_dim=512,
    audio_window=5,
    audio_layers=4,
    audio_feature_dim=32,
    audio_intermediate_dim=32,
    audio_context_tokens=8,
    audio_attention_dim=32,
    audio_emo_head_dim=8,
    face_locator_channels=(8, 8, 16, 16),
)

# SD-1.5 ``unet/config.json`` keys that define the architecture, and how they map to NetConfig.
_UNET_KEYS = {
    "block_out_channels": "block_out_channels",
    "layers_per_block": "layers_per_block",
    "in_channels": "in_channels",
    "out_channels": "out_channels",
    "attention_head_dim": "num_heads",
    "cross_attention_dim": "cross_attention_dim",
    "norm_num_groups": "norm_num_groups",
    "norm_eps": "norm_eps",
    "flip_sin_to_cos": "flip_sin_to_cos",
    "freq_shift": "freq_shift",
}
_EXPECTED_UNET = {
    "act_fn": "silu",
    "center_input_sample": False,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
}


def from_unet_config(unet_config: Mapping[str, Any], base: NetConfig = SD15, source: str = "unet config") -> NetConfig:
    """A :class:`NetConfig` from a diffusers SD-1.5-style ``unet/config.json`` dict (other sizes from ``base``).

    Raises :class:`ConfigError` for UNet variants the EmoCAST architecture does not support.
    """
    changes = {}
    for key, name in _UNET_KEYS.items():
        if key in unet_config and unet_config[key] is not None:
            value = unet_config[key]
            if key == "attention_head_dim" and isinstance(value, (list, tuple)):
                if len(set(value)) != 1:
                    raise ConfigError(f"{source}: per-block attention_head_dim {value} is not supported "
                                      "(EmoCAST uses one head count everywhere, SD-1.5 has 8)")
                value = value[0]
            changes[name] = tuple(value) if isinstance(value, list) else value
    bad = [f"{k}={unet_config[k]!r} (expected {v!r})" for k, v in _EXPECTED_UNET.items()
           if k in unet_config and unet_config[k] != v]
    n = len(changes.get("block_out_channels", base.block_out_channels))
    down = unet_config.get("down_block_types")
    if down is not None and [("CrossAttn" in t) for t in down] != [True] * (n - 1) + [False]:
        bad.append(f"down_block_types={down} (expected CrossAttnDownBlock2D x{n - 1} then DownBlock2D)")
    up = unet_config.get("up_block_types")
    if up is not None and [("CrossAttn" in t) for t in up] != [False] + [True] * (n - 1):
        bad.append(f"up_block_types={up} (expected UpBlock2D then CrossAttnUpBlock2D x{n - 1})")
    if unet_config.get("use_linear_projection"):
        bad.append("use_linear_projection=True (SD-1.5 uses 1x1 conv projections)")
    if bad:
        raise ConfigError(f"{source}: unsupported UNet architecture: " + "; ".join(bad))
    return base.replace(**changes)


def parity_config(unet_config: Mapping[str, Any]) -> NetConfig:
    """The config of a parity fixture: its ``meta["unet_config"]``, everything else at release size."""
    return from_unet_config(unet_config, base=SD15, source="parity fixture unet_config")


def resolve_config(config: "NetConfig | Mapping[str, Any] | str | None") -> NetConfig:
    """Accept a NetConfig, a dict of its fields, a preset name (``"sd15"``, ``"tiny"``) or None (= SD15)."""
    if config is None:
        return SD15
    if isinstance(config, NetConfig):
        return config
    if isinstance(config, str):
        presets = {"sd15": SD15, "tiny": TINY}
        if config.lower() not in presets:
            raise ConfigError(f"unknown network preset {config!r}; choose one of {sorted(presets)}")
        return presets[config.lower()]
    if hasattr(config, "items"):
        d = dict(config.items())
        if "block_out_channels" in d and "attention_head_dim" in d:  # a diffusers unet config
            return from_unet_config(d)
        return NetConfig.from_dict(d)
    raise ConfigError(f"cannot interpret {type(config).__name__} as a network config")
