"""The emotive prompt -> CLIP ViT-L/14 text tokens (spec §3), from ``pretrained_models/clip-vit-large-patch14``.

Tokenisation as the release: ``padding="max_length"``, ``max_length=77`` (pad = ``<|endoftext|>``), and the
tokenizer's ``attention_mask`` **is passed to** ``CLIPTextModel`` (padding positions are masked inside the
encoder; this changes the embeddings at those positions relative to the usual SD practice and is needed for
parity). The output is ``last_hidden_state`` ``(B, 77, 768)``. The unconditional branch uses the empty prompt
``""`` (:meth:`TextEncoder.uncond`). Prompts longer than 77 tokens (the release crashes on them) are
truncated to 77 tokens (keeping the end-of-text token) with a warning.
"""
from __future__ import annotations

import warnings
from typing import Sequence

from .. import registry
from .quiet import quiet_transformers

COMPONENT = "clip-vit-large-patch14"
MAX_LENGTH = 77


class TextEncoder:
    """CLIPTokenizer + CLIPTextModel; ``encode(prompts) -> (B, 77, D)`` in ``dtype`` on ``device``."""

    def __init__(self, models_root=None, device=None, dtype=None):
        folder = registry.component_dir(COMPONENT, models_root)
        import torch
        from transformers import CLIPTextModel, CLIPTokenizer

        from ..runtime import select_device, select_dtype

        self.device = select_device(device)
        self.dtype = select_dtype(dtype, self.device)
        with quiet_transformers():  # openai's file also holds the vision tower: no load report for it
            self.tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = CLIPTextModel.from_pretrained(folder, local_files_only=True, dtype=self.dtype)
        self.model.to(self.device).eval()
        self._torch = torch

    def tokenize(self, prompts: str | Sequence[str]):
        """``BatchEncoding`` (input_ids, attention_mask) ``(B, 77)``; warns about each truncated prompt."""
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        lengths = [len(ids) for ids in self.tokenizer(prompts, truncation=False)["input_ids"]]
        for prompt, n in zip(prompts, lengths):
            if n > MAX_LENGTH:
                warnings.warn(f"the prompt is {n} tokens long; CLIP reads at most {MAX_LENGTH} (with start/end "
                              f"tokens), so it was cut to: {self._kept_text(prompt)!r}", UserWarning, stacklevel=3)
        return self.tokenizer(prompts, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                              return_tensors="pt")

    def _kept_text(self, prompt: str) -> str:
        ids = self.tokenizer(prompt, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def encode(self, prompts: str | Sequence[str]):
        """Prompts -> ``last_hidden_state`` ``(B, 77, D)`` with the attention mask passed to the encoder."""
        tokens = self.tokenize(prompts)
        with self._torch.inference_mode():
            out = self.model(input_ids=tokens["input_ids"].to(self.device),
                             attention_mask=tokens["attention_mask"].to(self.device))
        return out.last_hidden_state

    def uncond(self, batch: int = 1):
        """The unconditional text tokens: the empty prompt, ``(batch, 77, D)``."""
        return self.encode([""] * batch)
