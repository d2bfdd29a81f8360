"""The frozen text encoder training needs around the networks (the VAE is :class:`emocast.models.vae.VaeCodec`).

CLIP is loaded from the ``pretrained_models`` layout by the inference loader (same files, same encoding), kept
frozen in eval mode and run without gradients in the weight dtype (fp16/bf16 on GPU, fp32 on CPU). Text
embeddings are cached per prompt (a bounded LRU on the CPU): emotive prompts repeat across samples and steps,
and CFG's empty prompt is encoded exactly once.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from .. import registry
from ..errors import MissingModelError


class PromptEncoder:
    """CLIP text embeddings ``(B, 77, D)`` of prompts, exactly as inference encodes them
    (:class:`emocast.preprocess.text.TextEncoder`: attention mask passed, spec §3), cached per prompt."""

    def __init__(self, models_root, device, dtype, cache_size: int = 4096, text_encoder=None):
        if text_encoder is None:
            from ..preprocess.text import TextEncoder

            text_encoder = TextEncoder(models_root, device, dtype)
        self.text = text_encoder
        self.text.model.requires_grad_(False)
        self.device, self.dtype = torch.device(device), dtype
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_size = int(cache_size)
        self.hits = self.misses = 0

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        # clone outside inference mode: cached embeddings feed layers that autograd records
        return self.text.encode(prompts).float().cpu().clone()

    def empty(self) -> torch.Tensor:
        """``(1, 77, D)``: the empty prompt, what a row that drops the text gets (as the sampler's ``uncond``)."""
        return self.encode([""])

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Embeddings on the encoder's device, float32. Cached prompts are not re-encoded."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self.cache))
        self.hits += len(prompts) - len(missing)
        self.misses += len(missing)
        if missing:
            for p, e in zip(missing, self._encode(missing)):
                self.cache[p] = e
        out = torch.stack([self.cache[p] for p in prompts]).to(self.device)
        for p in prompts:
            self.cache.move_to_end(p)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return out


def require_training_models(models_root, names) -> None:
    """Fail early, with the download report, when a component training needs is missing."""
    try:
        registry.require(list(names), models_root)
    except MissingModelError as err:
        raise MissingModelError(f"training needs these pretrained components:\n{err}", err.missing) from None
