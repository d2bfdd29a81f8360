"""Device and dtype selection: CUDA + fp16 when a GPU is present, else CPU + fp32 (never hard-coded elsewhere)."""
from __future__ import annotations

import ctypes
import os
import sys

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
    if not sys.platform.startswith("linux") or os.environ.get("EMOCAST_CPU_ALLOCATOR", "") == "default":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_TOP_PAD, TOP_PAD_BYTES))
    except (OSError, AttributeError):  # not glibc
        return False
