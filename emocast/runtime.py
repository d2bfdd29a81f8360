"""Device and dtype selection: CUDA + fp16 when a GPU is present, else CPU + fp32 (never hard-coded elsewhere); the
rank of a process started by a launcher (accelerate launch / torchrun) and the share of the work it takes."""
from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import ConfigError

_DTYPES = {
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None``/``"auto"`` = ``cuda`` when available, else ``cpu``.

    Asking for CUDA on a machine without it is a :class:`ConfigError`, not a crash deep inside a model.
    """
    if device is None or str(device) in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(device))
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was requested but PyTorch sees no CUDA GPU on this machine: "
                              "run with --device cpu (and --dtype fp32)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} "
                              "CUDA device(s); pick one of them with --device cuda:N")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} was requested but MPS is not available: run with --device cpu")
    return dev


def select_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The weight dtype; ``None``/``"auto"`` = fp16 on CUDA, fp32 elsewhere (fp16 convs are slow/unsupported on CPU)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or str(dtype) in ("", "auto"):
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}: use one of fp16, bf16, fp32 or auto") from None


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}.get(dtype, str(dtype))


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (for honest timings); a no-op on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


M_TOP_PAD = -2  # glibc mallopt parameter
TOP_PAD_BYTES = 512 << 20


def tune_cpu_allocator() -> bool:
    """On Linux/glibc, keep up to 512 MB of freed heap memory for reuse (``mallopt(M_TOP_PAD)``) instead of returning
    it to the system after every large tensor. CPU inference allocates and frees large buffers at every layer
    (activations, oneDNN's reordered convolution weights); without this each of them costs fresh page faults
    (measured: ~0.9 s of system time per full-size 128x128 denoising step, about 10 % of it; docs/benchmarks.md).
    Results are unchanged. ``EMOCAST_CPU_ALLOCATOR=default`` leaves the allocator alone. Returns whether it applied."""
    if os.environ.get("EMOCAST_CPU_ALLOCATOR", "") == "default":
        return False
    return _glibc_call("mallopt", M_TOP_PAD, TOP_PAD_BYTES)


def release_free_memory() -> bool:
    """On Linux/glibc, return freed heap memory to the system now (``malloc_trim(0)``). After a phase that
    allocates and frees many transient buffers (vocal separation), the freed memory would otherwise stay resident
    (:func:`tune_cpu_allocator` keeps up to 512 MB of it, and freed holes inside the heap are never returned), so
    the later phases' peak would sit on top of it. Results are unchanged. Returns whether it applied."""
    return _glibc_call("malloc_trim", 0)


def _glibc_call(name: str, *args) -> bool:
    """``name(*args)`` of glibc on Linux; False where there is no glibc (or no such function)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(getattr(ctypes.CDLL("libc.so.6"), name)(*args))
    except (OSError, AttributeError):  # not glibc
        return False


# ------------------------------------------------------------------------------------------ process launchers
@dataclass(frozen=True)
class Launch:
    """This process's place among the processes a launcher started (``accelerate launch``, ``torchrun``)."""

    rank: int
    world_size: int
    local_rank: int = 0


def launch_from_env(environ=None) -> Launch | None:
    """The launcher's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (set by ``accelerate launch --num_processes N`` and
    ``torchrun``, on one node or many); None when the process was not started by one (or as its only process)."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        launch = Launch(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))
    except ValueError:
        raise ConfigError(f"the launcher's RANK={env['RANK']!r} / WORLD_SIZE={env['WORLD_SIZE']!r} are not "
                          "integers") from None
    if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size:
        raise ConfigError(f"the launcher's RANK={launch.rank} is not in [0, WORLD_SIZE={launch.world_size})")
    return launch if launch.world_size > 1 else None


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """Item ``i`` belongs to process ``i % world_size``: this ``rank``'s items, in order."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank {rank}, world_size {world_size}")
    return [x for i, x in enumerate(items) if i % world_size == rank]


def rank_device(device: str | None, launch: Launch | None) -> str | None:
    """One GPU per launched process: ``auto``/``cuda`` becomes ``cuda:<local rank>`` (an explicit ``cuda:N`` or
    ``cpu`` is kept)."""
    if launch is None or str(device) not in ("", "None", "auto", "cuda"):
        return device
    if str(device) == "cuda" or torch.cuda.is_available():
        return f"cuda:{launch.local_rank % max(torch.cuda.device_count(), 1)}"
    return device
