"""Named, disjoint parameter groups of :class:`~emocast.models.EmoCASTNet` for training recipes.

=================  ====================================================================================
group              parameters
=================  ====================================================================================
reference_unet     ``reference_unet.*`` except the IP-Adapter face projections
denoising_spatial  ``denoising_unet.*`` outside motion/audio modules, except the IP-Adapter projections
motion_modules     ``denoising_unet.*.motion_modules.*`` that run
unused_motion_modules  the motion modules of ``down_blocks.<last>`` and ``up_blocks.0``: in the checkpoint,
                   never run (spec §2.4), so never trainable (keep them frozen, e.g. for DDP)
audio_modules      ``denoising_unet.*.audio_modules.*`` except the emotive audio attention
audio_emo          ``attn_audioemo`` + ``postnorm_audioemo`` of every audio module (EmoCAST's addition)
ip_adapter         ``attn2.processor.to_k_ip/to_v_ip`` of both UNets (face tokens)
guidance_embedding ``denoising_unet.guidance_embedding.*``: a consistency student's guidance-scale embedding
                   (empty for every other net)
audioproj, imageproj, face_locator   the projection / FaceLocator networks
=================  ====================================================================================
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

GROUPS = ("reference_unet", "denoising_spatial", "motion_modules", "audio_modules", "audio_emo", "ip_adapter",
          "audioproj", "imageproj", "face_locator", "guidance_embedding", "unused_motion_modules")


def group_of(name: str, num_levels: int = 4) -> str:
    """The group of a parameter (or state-dict key) name of a net with ``num_levels`` UNet levels."""
    top = name.split(".", 1)[0]
    if ".to_k_ip." in name or ".to_v_ip." in name:
        return "ip_adapter"
    if top in ("audioproj", "imageproj", "face_locator", "reference_unet"):
        return top
    if top != "denoising_unet":
        raise KeyError(f"{name} is not an EmoCASTNet parameter")
    if name.startswith("denoising_unet.guidance_embedding."):
        return "guidance_embedding"
    if ".motion_modules." in name:
        plain = name.startswith(("denoising_unet.up_blocks.0.", f"denoising_unet.down_blocks.{num_levels - 1}."))
        return "unused_motion_modules" if plain else "motion_modules"
    if ".audio_modules." in name:
        return "audio_emo" if (".attn_audioemo." in name or ".postnorm_audioemo." in name) else "audio_modules"
    return "denoising_spatial"


def trainable_parameter_groups(net: nn.Module) -> "OrderedDict[str, list[tuple[str, nn.Parameter]]]":
    """``{group: [(name, parameter), ...]}`` for every group of :data:`GROUPS` (disjoint, covering the net)."""
    groups: OrderedDict[str, list] = OrderedDict((g, []) for g in GROUPS)
    levels = len(net.config.block_out_channels)
    for name, param in net.named_parameters():
        groups[group_of(name, levels)].append((name, param))
    return groups


def set_trainable(net: nn.Module, groups) -> list[nn.Parameter]:
    """Freeze everything except the named groups; returns the trainable parameters."""
    unknown = set(groups) - set(GROUPS[:-1])
    if unknown:
        from ..errors import ConfigError

        raise ConfigError(f"unknown or untrainable parameter groups {sorted(unknown)}; valid: {', '.join(GROUPS[:-1])}")
    trainable = []
    for group, params in trainable_parameter_groups(net).items():
        for _, p in params:
            p.requires_grad_(group in groups)
            if group in groups:
                trainable.append(p)
    return trainable
