"""Reading and writing the networks' weights.

- :func:`load_net` — the released ``net.pth`` (fp16 or fp32) or one of our safetensors files, strictly: the
  architecture is built from configs only (meta device: no SD-1.5 or AnimateDiff weights are read), then every
  key and shape must match. Anything else raises :class:`~emocast.errors.CheckpointError` naming the key.
- :func:`init_from_pretrained` — training initialisation from SD-1.5 ``unet/`` + ``mm_sd_v15_v2.ckpt`` (+ an
  optional earlier-stage checkpoint), with a report of what was newly initialised; shape mismatches fail.
- :func:`save_safetensors` / :func:`load_safetensors` — our own checkpoints (config stored in the metadata).

``.pth/.ckpt/.bin`` files are only read with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import json
import pickle
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .. import registry
from ..errors import CheckpointError, ConfigError
from .configs import SD15, TINY, NetConfig, from_unet_config, resolve_config
from .net import EmoCASTNet

NET_PREFIXES = ("reference_unet.", "denoising_unet.", "face_locator.", "imageproj.", "audioproj.")
SD_UNET_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
CONFIG_METADATA_KEY = "emocast_net_config"
GUIDANCE_KEY = "denoising_unet.guidance_embedding.linear_1.weight"  # only a consistency student has it
_SHOW = 5


# ---------------------------------------------------------------------------------------------------------------
# reading files
# ---------------------------------------------------------------------------------------------------------------
def load_safetensors(path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file (CheckpointError if it is not one)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}); re-download or re-save it") from None


def safetensors_metadata(path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:
        return {}


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` dict from ``.safetensors`` or a pickled ``.pth/.ckpt/.bin`` (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    obj = None
    for mmap in (True, False):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
            break
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"{path} cannot be loaded as plain weights (torch.load weights_only=True refused it: "
                f"{str(err).splitlines()[0]}); only tensor checkpoints are accepted — re-download the file "
                "from its official source") from None
        except RuntimeError as err:
            if mmap and "mmap" in str(err).lower():
                continue  # legacy (non-zip) format: read it without memory mapping
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({str(err).splitlines()[0]}); "
                                  "re-download it") from None
        except (EOFError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({err}); re-download it") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # AnimateDiff/lightning-style wrapper
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a flat mapping of names to tensors)")
    return obj


def describe_keys(keys) -> str:
    """A guess of what kind of checkpoint a key set belongs to (for error messages)."""
    keys = list(keys)
    has = lambda p: any(k.startswith(p) for k in keys)  # noqa: E731
    if has("model.diffusion_model."):
        return "an original-format (ldm/A1111) Stable Diffusion checkpoint"
    if has("down_blocks.") and all(".motion_modules." in k for k in keys):
        return "an AnimateDiff motion-module checkpoint (mm_sd_v15_v2.ckpt)"
    if has("conv_in.") and has("down_blocks.") and has("time_embedding."):
        return "a diffusers UNet (e.g. stable-diffusion-v1-5/unet/diffusion_pytorch_model)"
    if has("encoder.") and has("decoder."):
        return "a VAE"
    if has("text_model."):
        return "a CLIP text encoder"
    if has("wav2vec2.") or has("feature_extractor."):
        return "a wav2vec2 model"
    return f"an unknown model (first keys: {keys[:3]})"


def _fmt_shape(t) -> str:
    return "x".join(str(s) for s in t) if len(t) else "scalar"


def check_keys(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str, fix: str,
               allow_missing: bool = False) -> None:
    """CheckpointError naming the missing, unexpected and mis-shaped keys (the first few of each)."""
    missing = [] if allow_missing else [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        shown = ", ".join(f"{k} (file {_fmt_shape(state[k].shape)}, model {_fmt_shape(expected[k].shape)})"
                          for k in shapes[:_SHOW])
        parts.append(f"{len(shapes)} key(s) with the wrong shape: {shown}")
    if missing:
        parts.append(f"{len(missing)} missing key(s): {', '.join(missing[:_SHOW])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:_SHOW])}")
    more = " (and more)" if max(len(missing), len(unexpected), len(shapes)) > _SHOW else ""
    raise CheckpointError(f"{source} does not match the network: " + "; ".join(parts) + more + f". {fix}")


# ---------------------------------------------------------------------------------------------------------------
# net.pth
# ---------------------------------------------------------------------------------------------------------------
def _get(state, key):
    if key not in state:
        raise ConfigError(f"cannot infer the network config: key {key} is missing")
    return state[key].shape


def infer_config(state: Mapping[str, torch.Tensor], base: NetConfig = SD15) -> NetConfig:
    """The :class:`NetConfig` a net state dict was built with (head count and norm settings from ``base``)."""
    du = "denoising_unet."
    ch = []
    while f"{du}down_blocks.{len(ch)}.resnets.0.conv1.weight" in state:
        ch.append(_get(state, f"{du}down_blocks.{len(ch)}.resnets.0.conv1.weight")[0])
    layers = 0
    while f"{du}down_blocks.0.resnets.{layers}.conv1.weight" in state:
        layers += 1
    text_dim = _get(state, f"{du}down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight")[1]
    audio_dim = _get(state, "audioproj.norm.weight")[0]
    proj_out, face_dim = _get(state, "imageproj.proj.weight")
    inter, audio_in = _get(state, "audioproj.proj1.weight")
    emo = _get(state, f"{du}down_blocks.0.audio_modules.0.transformer_blocks.0.attn_audioemo.to_q.weight")[0]
    pe = _get(state, f"{du}down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0"
                     ".attention_blocks.0.pos_encoder.pe")
    fl = [_get(state, "face_locator.conv_in.weight")]
    i = 1
    while f"face_locator.blocks.{i}.weight" in state:
        fl.append(_get(state, f"face_locator.blocks.{i}.weight"))
        i += 2
    layout = next(((c.audio_window, c.audio_layers, c.audio_feature_dim) for c in (base, TINY, SD15)
                   if c.audio_window * c.audio_layers * c.audio_feature_dim == audio_in), None)
    if layout is None:
        raise ConfigError(f"cannot infer the audio feature layout (window x layers x channels = {audio_in})")
    return base.replace(
        block_out_channels=tuple(ch), layers_per_block=layers,
        in_channels=_get(state, f"{du}conv_in.weight")[1], out_channels=_get(state, f"{du}conv_out.weight")[0],
        cross_attention_dim=text_dim, num_face_tokens=proj_out // text_dim, face_embedding_dim=face_dim,
        audio_window=layout[0], audio_layers=layout[1], audio_feature_dim=layout[2],
        audio_intermediate_dim=inter, audio_context_tokens=_get(state, "audioproj.proj3.weight")[0] // audio_dim,
        audio_attention_dim=audio_dim, audio_emo_head_dim=emo // base.num_heads, motion_max_len=pe[1],
        face_locator_in_channels=fl[0][1], face_locator_channels=tuple(s[0] for s in fl),
        guidance_embed_dim=state[GUIDANCE_KEY].shape[1] if GUIDANCE_KEY in state else 0)


def _default_device_dtype(device, dtype):
    """Devices are never hard-coded: None = CUDA when available else CPU; dtype None = fp16 on CUDA else fp32."""
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    return device, dtype or (torch.float16 if device.type == "cuda" else torch.float32)


def load_net(path=None, config: NetConfig | Mapping[str, Any] | str | None = None, *, root=None,
             dtype: torch.dtype | None = None, device=None) -> EmoCASTNet:
    """Load the released ``net.pth`` (or our safetensors) strictly into networks built from configs only.

    path: the file; None = ``<models root>/emocast/net.pth`` (checked with the registry first).
    config: the architecture (NetConfig / dict / preset name); None = the config stored in a safetensors file,
    else inferred from the checkpoint's shapes (release sizes give the SD-1.5 config).
    device: default CUDA when available, else CPU; dtype: default float16 on CUDA, float32 elsewhere.
    The net is returned in eval mode.
    """
    if path is None:
        path = registry.component_dir("emocast", root) / "net.pth"
    path = Path(path)
    state = read_state_dict(path)
    if not any(k.startswith(NET_PREFIXES) for k in state):
        raise CheckpointError(
            f"{path} is not an EmoCAST net.pth: it looks like {describe_keys(state)}. The EmoCAST weights file "
            f"has keys starting with {', '.join(p.rstrip('.') for p in NET_PREFIXES)}; fix: "
            f"{registry.fix_command('emocast', root)}")
    if config is None and path.suffix == ".safetensors":
        stored = safetensors_metadata(path).get(CONFIG_METADATA_KEY)
        config = NetConfig.from_dict(json.loads(stored)) if stored else None
    if any(".audio_modules." in k for k in state) and not any(".attn_audioemo." in k for k in state):
        raise CheckpointError(f"{path} looks like a Hallo net.pth (audio modules without EmoCAST's emotive audio "
                              f"attention), not EmoCAST's; fix: {registry.fix_command('emocast', root)}")
    if config is None:
        try:
            cfg = infer_config(state)
        except ConfigError as err:
            raise CheckpointError(f"{path}: {err}; pass the network config explicitly") from None
    else:
        cfg = resolve_config(config)
    with torch.device("meta"):
        net = EmoCASTNet(cfg)
    check_keys(state, net.state_dict(), str(path),
               "Use the official net.pth (or a checkpoint written by this package) with the matching network config.")
    net.load_state_dict(state, strict=True, assign=True)
    device, dtype = _default_device_dtype(device, dtype)
    return net.to(device=device, dtype=dtype).eval()


def save_safetensors(net_or_state, path, config: NetConfig | None = None, metadata: Mapping[str, str] | None = None):
    """Write a net (or any state dict) as safetensors; a net's config goes into the metadata."""
    from safetensors.torch import save_file

    if isinstance(net_or_state, EmoCASTNet):
        config = config or net_or_state.config
        state = net_or_state.state_dict()
    else:
        state = dict(net_or_state)
    meta = {"format": "pt"}
    if config is not None:
        meta[CONFIG_METADATA_KEY] = config.to_json()
    meta.update(metadata or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# training initialisation
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class InitReport:
    """Where every state-dict entry of a freshly initialised net came from."""

    sources: dict[str, str] = field(default_factory=dict)  # key -> "sd_unet" | "motion_module" | "stage" | "new"
    num_levels: int = 4

    @property
    def new(self) -> list[str]:
        return [k for k, s in self.sources.items() if s == "new"]

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.sources.values()))

    def summary(self) -> str:
        from .parameter_groups import group_of

        lines = [f"{src}: {n} tensors" for src, n in sorted(self.counts().items())]
        groups = Counter(group_of(k, self.num_levels) for k in self.new)
        if groups:
            lines.append("newly initialised by group: " + ", ".join(f"{g} {n}" for g, n in sorted(groups.items())))
        return "\n".join(lines)


def _sd_unet_file(folder: Path) -> Path:
    for name in SD_UNET_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"no UNet weights in {folder} (expected {' or '.join(SD_UNET_FILES)}); "
                          f"fix: {registry.fix_command('stable-diffusion-v1-5')}")


def _load_part(net: EmoCASTNet, state: Mapping[str, torch.Tensor], source: str, fix: str):
    with torch.no_grad():
        own = net.state_dict()
        check_keys(state, own, source, fix, allow_missing=True)
        for k, v in state.items():
            own[k].copy_(v)


def init_from_pretrained(sd_unet_dir=None, motion_module_path=None, stage_checkpoint=None, *,
                         config: NetConfig | Mapping[str, Any] | str | None = None, root=None,
                         device="cpu", dtype: torch.dtype = torch.float32) -> tuple[EmoCASTNet, InitReport]:
    """Networks for training: both UNets from SD-1.5, motion modules from AnimateDiff, the rest fresh.

    sd_unet_dir: the SD-1.5 ``unet/`` folder (config.json + weights); None = the registry's.
    motion_module_path: ``mm_sd_v15_v2.ckpt`` (names loaded unchanged); None = the registry's; False = skip.
    stage_checkpoint: optional earlier-stage net checkpoint (net.pth layout, may be partial) loaded last.
    config: non-UNet sizes (the UNet sizes come from ``config.json``); None = release sizes.
    Returns ``(net, report)``; any key of a file that the net lacks or has with another shape is an error.
    """
    if sd_unet_dir is None:
        sd_unet_dir = registry.component_dir("stable-diffusion-v1-5", root)
    if motion_module_path is None:
        motion_module_path = registry.component_dir("motion_module", root) / "mm_sd_v15_v2.ckpt"
    sd_unet_dir = Path(sd_unet_dir)
    config_file = sd_unet_dir / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{config_file} not found; fix: {registry.fix_command('stable-diffusion-v1-5', root)}")
    base = resolve_config(config)
    cfg = from_unet_config(json.loads(config_file.read_text()), base=base, source=str(config_file))
    net = EmoCASTNet(cfg)
    report = InitReport({k: "new" for k in net.state_dict()}, cfg.num_levels)

    sd_file = _sd_unet_file(sd_unet_dir)
    sd = read_state_dict(sd_file)
    fix = "use the stable-diffusion-v1-5 unet/ folder whose config.json matches its weights"
    ref = {f"reference_unet.{k}": v for k, v in sd.items() if not k.startswith(("conv_norm_out.", "conv_out."))}
    den = {f"denoising_unet.{k}": v for k, v in sd.items()}
    _load_part(net, ref, str(sd_file), fix)
    _load_part(net, den, str(sd_file), fix)
    report.sources.update({k: "sd_unet" for k in (*ref, *den)})
    del sd, ref, den

    if motion_module_path:
        mm = read_state_dict(motion_module_path)
        mm = {f"denoising_unet.{k}": v for k, v in mm.items()}
        _load_part(net, mm, str(motion_module_path),
                   "use AnimateDiff's mm_sd_v15_v2.ckpt (SD-1.5 motion modules, 32-frame positional table)")
        report.sources.update({k: "motion_module" for k in mm})
        del mm

    if stage_checkpoint is not None:
        stage = read_state_dict(stage_checkpoint)
        if not any(k.startswith(NET_PREFIXES) for k in stage):
            raise CheckpointError(f"{stage_checkpoint} is not an EmoCAST net checkpoint: it looks like "
                                  f"{describe_keys(stage)}")
        _load_part(net, stage, str(stage_checkpoint), "use a checkpoint of the same network config")
        report.sources.update({k: "stage" for k in stage})
    return net.to(device=device, dtype=dtype), report
