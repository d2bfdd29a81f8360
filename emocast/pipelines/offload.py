"""``--offload model``: every model lives on the CPU and is moved whole to the GPU only while it runs.

Built on accelerate's offload hooks: each model gets ``cpu_offload_with_hook`` (its forward moves it to the
execution device; diffusers' VAE ``encode``/``decode`` call the same hook), preceded by a hook that first moves the
model that ran before back to the CPU — so one model is on the GPU at a time. Work that does not go through a
model's ``forward`` (the EmoCAST networks' per-clip preparation and steps, wav2vec2's layer-by-layer pass) calls
:meth:`ModelOffload.use` first.

GPU memory is then the largest model plus its activations instead of every model plus the largest activations:
the EmoCAST networks (2.49 B parameters, 4.99 GB in fp16) dominate; the VAE (84 M), CLIP's text tower (123 M) and
wav2vec2 (94 M, fp32) leave the GPU while they are not needed, and the VAE decodes with the networks on the CPU.
"""
from __future__ import annotations

from typing import Mapping

import torch
from accelerate import cpu_offload_with_hook
from accelerate.hooks import ModelHook, add_hook_to_module
from torch import nn


class _OneAtATime(ModelHook):
    """Before the model's forward: move every other resident model back to the CPU."""

    def __init__(self, manager: "ModelOffload", name: str):
        self.manager, self.name = manager, name

    def pre_forward(self, module, *args, **kwargs):
        self.manager._evict(keep=self.name)
        self.manager.resident = self.name
        return args, kwargs


class ModelOffload:
    """``models``: name -> module, all offloaded to the CPU now; ``device``: where each runs."""

    def __init__(self, models: Mapping[str, nn.Module], device):
        self.device = torch.device(device)
        self.models = dict(models)
        self.resident: str | None = None
        self.hooks = {}
        for name, model in self.models.items():
            add_hook_to_module(model, _OneAtATime(self, name))
            _, self.hooks[name] = cpu_offload_with_hook(model, execution_device=self.device)  # appended after it

    def use(self, name: str) -> None:
        """Make model ``name`` the resident one (before work that does not call its forward)."""
        if self.resident == name:
            return
        self._evict(keep=name)
        self.hooks[name].hook.pre_forward(self.models[name])
        self.resident = name

    def _evict(self, keep: str) -> None:
        if self.resident is not None and self.resident != keep:
            self.hooks[self.resident].offload()
            self.resident = None

    def offload_all(self) -> None:
        self._evict(keep="")

    def remove(self) -> None:
        """Take the hooks off (the models stay on the CPU)."""
        self.offload_all()
        for hook in self.hooks.values():
            hook.remove()
