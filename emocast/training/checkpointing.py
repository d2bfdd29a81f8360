"""Training checkpoints (atomic, keep-last-N, resumable) and the exported weights.

Layout below ``<output_dir>``::

    checkpoints/checkpoint-<step>/     accelerate ``save_state`` (model, optimizer, LR scheduler, grad scaler,
                                       RNG of every process) + ``trainer_state.json`` (step, data position,
                                       counters) — written to ``checkpoints/.tmp-checkpoint-<step>`` and renamed
                                       when complete, so a crash never leaves a half checkpoint that looks valid
    final/net.pth                      plain ``EmoCASTNet.state_dict()`` (``torch.save`` of a dict of tensors):
                                       the layout ``scripts/inference.py --checkpoint`` loads
    final/net.safetensors              the same tensors as safetensors
    final/net.json                     the checkpoint card (emocast.pipelines.card): how to sample the weights
    final/summary.json                 task, step and data counters of the run
                                       (final/ is written as one unit: the previous export or the new one)
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import uuid
from pathlib import Path

import torch

from ..errors import CheckpointError

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")
_DELETING = ".del-"  # a pruned checkpoint is renamed to .del-checkpoint-<step>-<id> before it is deleted


def list_checkpoints(ckpt_root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints ``[(step, path)]`` sorted by step (hidden folders: being written or deleted, are
    ignored)."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(ckpt_root) -> Path | None:
    ckpts = list_checkpoints(ckpt_root)
    return ckpts[-1][1] if ckpts else None


def resolve_resume(resume, ckpt_root) -> Path | None:
    """``resume``: ``None``/``""``/``"none"`` → no resume; ``"latest"`` → newest in ``ckpt_root`` (or none);
    anything else is a checkpoint folder that must exist."""
    if resume in (None, "", "none", "None", False):
        return None
    if resume == "latest":
        return latest_checkpoint(ckpt_root)
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"resume checkpoint {path} is not a complete training checkpoint (no {STATE_FILE}): "
                              f"pass a folder like {Path(ckpt_root) / 'checkpoint-500'} or resume_from=latest")
    return path


def save_checkpoint(accelerator, ckpt_root, step: int, trainer_state: dict, keep_last: int, card=None) -> Path:
    """Atomically write ``checkpoint-<step>`` (with the weights' checkpoint ``card`` as ``net.json``, which
    ``scripts/export_checkpoint.py`` carries into its export) and delete all but the newest ``keep_last``.

    Every process must call this (accelerate writes per-process RNG states); the main process renames and
    prunes after all processes have written.
    """
    root = Path(ckpt_root)
    final = root / f"checkpoint-{step:07d}"
    tmp = root / f".tmp-checkpoint-{step:07d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with open(tmp / STATE_FILE, "w") as f:
            json.dump(trainer_state, f, indent=2, sort_keys=True)
        if card is not None:
            card.write(tmp)
        if final.exists():  # re-saving the same step (e.g. after a resume): swapped in as one unit
            from ..atomic import replace_dir

            replace_dir(tmp, final)
        else:
            os.replace(tmp, final)
        prune_checkpoints(root, keep_last)
    accelerator.wait_for_everyone()
    return final


def prune_checkpoints(ckpt_root, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints (``keep_last <= 0`` keeps all).

    Each is first renamed to a hidden name (one atomic step) and then deleted, so a kill during the deletion
    never leaves a ``checkpoint-<step>`` folder that looks complete without its weights; hidden leftovers of a
    killed prune are deleted here."""
    root = Path(ckpt_root)
    for leftover in root.glob(f"{_DELETING}checkpoint-*") if root.is_dir() else ():
        shutil.rmtree(leftover, ignore_errors=True)
    if keep_last is None or keep_last <= 0:
        return []
    removed = []
    for _, path in list_checkpoints(root)[:-keep_last]:
        doomed = path.with_name(f"{_DELETING}{path.name}-{uuid.uuid4().hex[:8]}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(path)
    return removed


def _read_errors() -> tuple:
    """What loading a damaged or tampered checkpoint raises: a refused pickle (weights_only), a cut zip or
    safetensors file, a missing file, a state that does not fit."""
    from safetensors import SafetensorError

    return (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, SafetensorError)


def load_checkpoint(accelerator, path) -> dict:
    """Restore model/optimizer/scheduler/RNG via accelerate and return the saved trainer state. A checkpoint that
    cannot be loaded (cut short, tampered with: accelerate reads with ``weights_only``, so a pickle that would run
    code is refused) is one :class:`CheckpointError` naming it and the earlier checkpoint to resume from."""
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"{path} is not a complete training checkpoint (missing {STATE_FILE}); delete it or "
                              "resume from another one")
    try:
        accelerator.load_state(str(path))
        with open(state_file) as f:
            return json.load(f)
    except _read_errors() as err:
        if isinstance(err, pickle.UnpicklingError):  # not torch's advice to turn weights_only off: never do that
            detail = "a file holds something other than plain tensors, refused because loading it could run code"
        else:
            detail = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"
        m = _NAME.match(path.name)
        earlier = [p for step, p in list_checkpoints(path.parent) if m and step < int(m.group(1))]
        fix = (f"resume from the checkpoint before it: add train.resume_from={earlier[-1]} (or move {path} away and "
               "keep train.resume_from=latest)" if earlier else
               f"move {path} away and resume from another checkpoint, or start over with train.resume_from=none")
        raise CheckpointError(f"cannot resume from {path}: it is corrupt or unsafe, its files could not be loaded "
                              f"({detail}). Fix: {fix}") from None


def plain_state_dict(net: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A CPU, contiguous copy of ``net.state_dict()`` (optionally cast: floating tensors only)."""
    out = {}
    for k, v in net.state_dict().items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    return out


def export_weights(net: torch.nn.Module, out_dir, card, dtype: torch.dtype | None = None,
                   safetensors: bool = True, extra: dict | None = None) -> dict[str, Path]:
    """Export a network's weights with its checkpoint card (see :func:`export_state_dict`)."""
    return export_state_dict(plain_state_dict(net), out_dir, card, dtype, safetensors, extra)


NET_PREFIX = "net."  # the training module wraps the EmoCASTNet as its child ``net``


DEEPSPEED_TAG = "pytorch_model"  # the folder accelerate's save_state gives a DeepSpeed engine's checkpoint


def network_state_from_checkpoint(path) -> dict[str, torch.Tensor]:
    """The EmoCASTNet state dict inside an accelerate checkpoint folder (``model.safetensors`` of the training
    module, keys ``net.<name>``; a DeepSpeed ZeRO checkpoint's ``pytorch_model/`` is consolidated to fp32 with
    DeepSpeed's own ``get_fp32_state_dict_from_zero_checkpoint``)."""
    from safetensors.torch import load_file

    path = Path(path)
    files = sorted(path.glob("model*.safetensors"))
    if files:
        state = {}
        for f in files:
            state.update(load_file(str(f)))
    elif (path / DEEPSPEED_TAG).is_dir():
        try:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
        except ImportError:
            raise CheckpointError(f"{path} is a DeepSpeed checkpoint: reading it needs deepspeed (pip install -c "
                                  "requirements/constraints.txt --no-build-isolation -r requirements/deepspeed.txt)"
                                  ) from None
        state = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=DEEPSPEED_TAG)
    else:
        raise CheckpointError(f"{path} holds no model.safetensors (nor a DeepSpeed {DEEPSPEED_TAG}/ folder): it is "
                              "not an accelerate training checkpoint")
    net = {k[len(NET_PREFIX):]: v for k, v in state.items() if k.startswith(NET_PREFIX)}
    if not net:
        raise CheckpointError(f"{files[0]} has no '{NET_PREFIX}*' tensors; it was not written by emocast.training")
    return net


EXPORT_FILES = ("net.pth", "net.safetensors", "net.json", "summary.json")


def export_state_dict(state: dict[str, torch.Tensor], out_dir, card, dtype: torch.dtype | None = None,
                      safetensors: bool = True, extra: dict | None = None) -> dict[str, Path]:
    """Write an export folder as one unit: ``net.pth`` (plain state dict, what ``scripts/inference.py`` loads),
    ``net.safetensors``, ``net.json`` (the checkpoint card: how to sample these weights) and the ``extra`` JSON
    files (``{name: data}``). Everything is written into a hidden sibling folder and moved into place at once
    (:func:`emocast.atomic.replace_dir`): a kill leaves the previous export or the new one, never weights without
    their card; a stale temporary folder from a killed export is removed by the next one."""
    from safetensors.torch import save_file

    from ..atomic import replace_dir, staging_dir

    out = Path(out_dir)
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if p.name not in EXPORT_FILES]
        if foreign:
            raise CheckpointError(f"{out} holds files that are not an EmoCAST export ({', '.join(sorted(foreign)[:3])}"
                                  "): export into an empty or new folder")
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
             for k, v in state.items()}
    tmp = staging_dir(out)
    try:
        torch.save(state, tmp / "net.pth")
        if safetensors:
            save_file(state, str(tmp / "net.safetensors"), metadata={"format": "pt", "producer": "emocast.training"})
        card.write(tmp)
        for name, data in (extra or {}).items():
            (tmp / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    names = {"pth": "net.pth", "info": "net.json", **({"safetensors": "net.safetensors"} if safetensors else {})}
    return {k: out / v for k, v in names.items()}
