"""The checkpoint card: ``net.json`` beside every ``net.pth`` we export, saying how to sample it.

A card records what sampling needs and cannot read from the weights: the network config, the image size, frames
per clip and motion frames, the noise schedule (betas, prediction type, zero-SNR, timestep spacing), the VAE's
latent scaling factor, the reference pairing, the audio window, the sampler, and where the weights come from
(stage, phase, step, config hash). Inference uses the card by default; the released ``net.pth`` has no card and is
sampled with :data:`RELEASE_CARD` (the release's values). Cards written before this format (``{"producer",
"task", "step", "reference_pairing"}``) are read as the release card with their reference pairing.

Training writes the card and the weights as one unit (:func:`emocast.training.checkpointing.export_state_dict`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import option, section, to_dict
from ..errors import CheckpointError, ConfigError
from .scheduler import Schedule

log = logging.getLogger("emocast.card")

CARD_FILE = "net.json"
FORMAT = "emocast-checkpoint-card"
VERSION = 1
SD_VAE_SCALING_FACTOR = 0.18215  # SD-1.x latent scaling (sd-vae-ft-mse's config); what the release hard-codes


@dataclass
class CheckpointCard:
    """How a checkpoint is sampled. The defaults are the released ``net.pth``'s settings (spec §8)."""

    format: str = option(FORMAT, "file format tag")
    version: int = option(VERSION, "card format version", ge=1)
    net: dict[str, Any] | None = option(None, "NetConfig fields (null: read the architecture from the weights)")
    image_size: int = option(512, "square resolution the network was trained at", ge=64)
    clip_length: int = option(16, "frames per clip", ge=1)
    motion_frames: int = option(2, "motion frames carried between clips", ge=0)
    audio_margin: int = option(2, "audio window: wav2vec2 frames i-margin..i+margin", ge=0)
    schedule: Schedule = section(Schedule, "the noise schedule the network was trained on")
    vae_scaling_factor: float = option(SD_VAE_SCALING_FACTOR, "latent scaling of the VAE it was trained with", gt=0)
    reference_pairing: Literal["release", "matched"] = option("release", "conditioning of the reference pass")
    sampler: Literal["ddim", "consistency"] = option("ddim", "ddim: the release's sampler; consistency: a "
                                                             "distilled few-step student")
    sampler_options: dict[str, Any] = option(factory=dict, help="sampler-specific settings (e.g. a student's "
                                                                 "step count and guidance range)")
    provenance: dict[str, Any] = option(factory=dict, help="stage, phase, step, config_hash, source")

    def to_json(self) -> str:
        return json.dumps(to_dict(self), indent=2, sort_keys=False) + "\n"

    def write(self, folder) -> Path:
        """``<folder>/net.json`` (plain write: callers writing a whole export make the unit atomic)."""
        path = Path(folder) / CARD_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path


RELEASE_CARD = CheckpointCard(provenance={"source": "released net.pth (no card): the release's settings"})


def card_path(checkpoint) -> Path:
    """The card of a checkpoint file (``net.json`` beside ``net.pth``) or folder."""
    path = Path(checkpoint)
    return path / CARD_FILE if path.is_dir() else path.with_name(CARD_FILE)


def parse_card(data: dict, where: str = CARD_FILE) -> CheckpointCard:
    """A card from its JSON mapping (legacy sidecars: the release card with their reference pairing)."""
    from ..config import _build, run_checks

    if not isinstance(data, dict):
        raise CheckpointError(f"{where} must hold a JSON object (the checkpoint card), got {type(data).__name__}")
    if data.get("format") != FORMAT:  # a sidecar of the first trainer version
        pairing = data.get("reference_pairing", "release")
        if pairing not in ("release", "matched"):
            raise CheckpointError(f"{where}: reference_pairing must be release or matched, got {pairing!r}")
        legacy = {k: v for k, v in data.items() if k != "reference_pairing"}
        return CheckpointCard(reference_pairing=pairing, provenance={"legacy_card": legacy})
    try:
        card = _build(CheckpointCard, dict(data), "", f"in {where}", False, CheckpointCard)
        run_checks(card)
    except ConfigError as err:
        raise CheckpointError(f"checkpoint card {err}. Fix: re-export the checkpoint (scripts/export_checkpoint.py) "
                              "or delete the card to sample with the release's settings") from None
    if card.version > VERSION:
        raise CheckpointError(f"{where} is a version-{card.version} card; this EmoCAST reads up to version "
                              f"{VERSION}: update EmoCAST")
    return card


def read_card(checkpoint) -> tuple[CheckpointCard, bool]:
    """``(card, found)``: the card beside ``checkpoint`` (a ``net.pth`` or its folder), or the release card."""
    path = card_path(checkpoint)
    if not path.is_file():
        return RELEASE_CARD, False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read the checkpoint card {path} ({err}). Fix: re-export the checkpoint "
                              "(scripts/export_checkpoint.py) or delete the file to use the release's settings") from None
    return parse_card(data, str(path)), True


def resolve(card: CheckpointCard, requested: dict[str, Any], found: bool, where: str = "the checkpoint card") \
        -> dict[str, Any]:
    """Effective sampling settings: the card's value for each key of ``requested`` whose value is None/"auto";
    an explicit value wins, with one warning line when it contradicts a card that exists.

    ``requested`` keys are card attributes (``image_size``, ``clip_length``, ...) or ``schedule.<field>``.
    """
    out = {}
    for key, value in requested.items():
        own = _get(card, key)
        if value is None or value == "auto":
            out[key] = own
            continue
        out[key] = value
        if found and value != own:
            log.warning("%s=%s overrides %s (%s=%s)", key, value, where, key, own)
    return out


def _get(card: CheckpointCard, key: str):
    obj: Any = card
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj
