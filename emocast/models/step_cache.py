"""What the denoising UNet computes once per clip instead of at every denoising step (the release recomputes it).

Over the steps of a clip only the latents and the timestep change. Everything the UNet derives from the rest is
the same at every step, and :meth:`~emocast.models.denoising_unet.DenoisingUNet.step_cache` computes it once:

- the decoupled cross-attention's keys/values of the text and face tokens (one row per batch row, not per frame);
- ``attn1``'s keys/values of the reference tokens (one row per reference row, not per frame);
- every audio module's emotive context (the text queries the audio; neither depends on the latents) and the
  three audio branches' keys/values of it;
- every motion module's motion-frame features after GroupNorm and ``proj_in``, and their first-attention q/k/v.

The cache travels to the blocks as an explicit argument (``BlockInputs.cache``), keyed by the spatial
transformer path of each layer. :meth:`StepCache.select` gives the cache of a subset of the batch rows (a
guidance plan step that runs only the conditional row), as views when the rows are contiguous.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from .motion_module import MotionPrefix


def take_rows(x: torch.Tensor, rows: Sequence[int], batch: int) -> torch.Tensor:
    """Rows ``rows`` of a tensor whose first dimension is ``batch`` groups of equal size (batch-major); a view
    when the rows are contiguous."""
    rows = tuple(rows)
    group = x.shape[0] // batch
    if rows == tuple(range(rows[0], rows[0] + len(rows))):
        return x[rows[0] * group: (rows[-1] + 1) * group]
    index = torch.tensor(rows, device=x.device)
    return x.reshape(batch, group, *x.shape[1:])[index].reshape(len(rows) * group, *x.shape[1:])


@dataclass
class LayerCache:
    """One (spatial transformer, audio module, motion module) layer's per-clip work."""

    cross: tuple[torch.Tensor, ...]  # text keys, values (B, T, C), face keys, values (B, K, C)
    reference: tuple[torch.Tensor, torch.Tensor] | None  # attn1 keys, values of the reference tokens (R, HW, C)
    audio: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None  # per audio branch: keys, values (B*F, 77, D)
    motion: MotionPrefix | None  # motion frames, (B*HW, M, C)


@dataclass
class StepCache:
    batch: int  # batch rows
    frames: int
    layers: dict[str, LayerCache]  # spatial transformer path -> its layer's cache

    def select(self, rows: Sequence[int]) -> "StepCache":
        """The cache of the batch rows ``rows`` (reference keys/values stay: they are indexed by reference row)."""
        rows = tuple(rows)
        if rows == tuple(range(self.batch)):
            return self
        b = self.batch

        def layer(c: LayerCache) -> LayerCache:
            return replace(
                c, cross=tuple(take_rows(t, rows, b) for t in c.cross),
                audio=None if c.audio is None else tuple(tuple(take_rows(t, rows, b) for t in kv) for kv in c.audio),
                motion=None if c.motion is None else c.motion.map(lambda t: take_rows(t, rows, b)))

        return StepCache(len(rows), self.frames, {path: layer(c) for path, c in self.layers.items()})

    def video_part(self) -> "StepCache":
        """Only what is the same for every clip of a video: the cross-attention and reference keys/values."""
        return StepCache(self.batch, self.frames,
                         {p: replace(c, audio=None, motion=None) for p, c in self.layers.items()})

    def nbytes(self) -> int:
        seen, total = set(), 0
        for c in self.layers.values():
            tensors = list(c.cross) + list(c.reference or ()) + [t for kv in (c.audio or ()) for t in kv]
            if c.motion is not None:
                tensors += [c.motion.tokens, c.motion.q, c.motion.k, c.motion.v]
            for t in tensors:
                key = t.untyped_storage().data_ptr()
                if key not in seen:
                    seen.add(key)
                    total += t.untyped_storage().nbytes()
        return total
