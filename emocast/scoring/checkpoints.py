"""Reading the metric models' weight files safely and loading them into our module definitions.

Every file is opened with ``torch.load(..., map_location="cpu", weights_only=True)``: the restricted unpickler
only rebuilds tensors and plain containers, so no code from the file runs. TorchScript archives are refused
(``torch.jit.load`` would execute the archive's code); none of the metric checkpoints we support is one.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Mapping

import torch

from ..errors import CheckpointError

# BatchNorm's step counter: files written before PyTorch 0.4.1 lack it and it never affects eval-mode outputs.
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/code/") or "/code/" in n for n in zf.namelist())


def read_weights(path, what: str, fix: str) -> object:
    """``torch.load(path, weights_only=True)`` with one-message errors naming ``what`` and the ``fix``."""
    path = Path(path)
    if _is_torchscript(path):
        raise CheckpointError(f"{path} is a TorchScript archive, not a weights file; {what} needs the state dict. "
                              f"{fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, non-allowlisted globals
        raise CheckpointError(f"cannot read {path} as {what} ({type(err).__name__}: {str(err).splitlines()[0]}). "
                              f"{fix}") from None


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path, what: str, fix: str) -> None:
    """Load ``state`` into ``module``: every key and shape must match, except missing BatchNorm counters."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es), e.g. {'; '.join(wrong[:2])}")
        raise CheckpointError(f"{path} is not a {what} checkpoint: {'; '.join(parts)}. {fix}")
    full = dict(state)
    for k in own:
        if k not in full:  # only the optional counters can be absent here
            full[k] = own[k]
    module.load_state_dict(full, strict=True)


def load_state_file(module: torch.nn.Module, path, what: str, fix: str, device="cpu") -> torch.nn.Module:
    """``module`` with the state dict in ``path`` loaded by :func:`load_strict` (a ``{"state_dict": ...}``
    container is unwrapped), in eval mode on ``device``; ``what`` names the model in messages."""
    state = read_weights(path, f"a {what} state dict", fix)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a {what} state dict. {fix}")
    load_strict(module, state, path, what, fix)
    return module.eval().to(device)
