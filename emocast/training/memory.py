"""Training-memory estimate without a GPU: ``python -m emocast.training.memory`` (docs/training.md §6).

Builds the full-size networks on the ``meta`` device (no memory), runs one training forward of a stage in bf16
and sums the bytes of every tensor autograd saves for the backward pass, deduplicated by storage. Saved softmax
probabilities (kept only by the math attention path, not by flash/memory-efficient SDPA on a GPU) and saved
weights (under autocast: bf16 copies) are reported separately, as is the largest single checkpointable module
(the extra peak while it is recomputed under gradient checkpointing).
"""
from __future__ import annotations

import argparse
import sys

import torch

GIB = 2 ** 30
STAGES = {
    "stage1": (1, ["reference_unet", "denoising_spatial", "ip_adapter", "face_locator", "imageproj"]),
    "stage2_phase1": (2, ["motion_modules", "audio_modules", "audio_emo", "audioproj"]),
    "stage2_phase3": (2, ["audio_modules", "audio_emo", "audioproj"]),
}


def saved_activation_bytes(stage: int, groups, batch: int, checkpointing: bool, frames: int = 14, motion: int = 2,
                           size: int = 512, dtype=torch.bfloat16) -> dict:
    from diffusers.models.resnet import ResnetBlock2D

    from ..models import SD15, build_net
    from ..models.audio_module import AudioModule
    from ..models.motion_module import MotionModule
    from ..models.spatial_transformer import SpatialTransformer
    from .params import count, set_trainable
    from .common import StepModule

    net = build_net(SD15, device="meta").to(dtype)
    trainable = set_trainable(net, groups)
    net.enable_gradient_checkpointing(checkpointing)
    params = {p.untyped_storage()._cdata for p in net.parameters()}
    acts, probs, weights, hold = {}, {}, {}, []
    stack, per_module = [], {}

    def pre(module, *args):
        stack.append(len(acts))

    def post(module, args, out):
        start = stack.pop()
        per_module[id(module)] = sum(list(acts.values())[start:])

    for m in net.modules():
        if isinstance(m, (ResnetBlock2D, SpatialTransformer, AudioModule, MotionModule)):
            m.register_forward_pre_hook(pre)
            m.register_forward_hook(post)

    def pack(t):
        storage = t.untyped_storage()
        hold.append(storage)  # keep storages alive so their ids stay unique (meta storages cost nothing)
        key, nbytes = storage._cdata, storage.nbytes()
        if key in params:
            weights[key] = nbytes
        elif t.grad_fn is not None and "Softmax" in type(t.grad_fn).__name__:
            probs[key] = nbytes
        elif key not in probs:
            acts[key] = max(acts.get(key, 0), nbytes)
        return None

    h, dev, b = size // 8, "meta", batch
    keep = {k: torch.ones(b, dtype=torch.bool) for k in ("reference", "audio", "text", "face", "face_region")}
    text = torch.empty(b, 77, 768, device=dev, dtype=dtype)
    common = dict(text_emb=text, empty_text=text[:1], face_emb=torch.empty(b, 512, device=dev, dtype=dtype),
                  face_region=torch.empty(b, 3, size, size, device=dev, dtype=dtype), keep=keep)
    t = torch.zeros(b, dtype=torch.long, device=dev)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        if stage == 1:
            StepModule(net)(torch.empty(b, 4, 1, h, h, device=dev, dtype=dtype), t,
                            ref_latents=torch.empty(b, 1, 4, h, h, device=dev, dtype=dtype), **common)
        else:
            masks = {lv: tuple(torch.empty(b, (h >> lv) ** 2, device=dev, dtype=dtype) for _ in range(3))
                     for lv in range(4)}
            StepModule(net)(torch.empty(b, 4, frames, h, h, device=dev, dtype=dtype), t,
                            ref_latents=torch.empty(b, 1 + motion, 4, h, h, device=dev, dtype=dtype),
                            audio=torch.empty(b, frames, 5, 12, 768, device=dev, dtype=dtype), masks=masks, **common)
    return {"params": sum(p.numel() for p in net.parameters()), "trainable": count(trainable),
            "activations": sum(acts.values()), "softmax": sum(probs.values()), "weights": sum(weights.values()),
            "largest_module": max(per_module.values(), default=0)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m emocast.training.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=14)
    args = p.parse_args(argv)
    for name, (stage, groups) in STAGES.items():
        for ckpt in (False, True):
            for batch in (1, 2):
                r = saved_activation_bytes(stage, groups, batch, ckpt, frames=args.frames, size=args.size)
                print(f"{name:14s} batch {batch} checkpointing {str(ckpt):5s} params {r['params'] / 1e6:.1f} M "
                      f"trainable {r['trainable'] / 1e6:.1f} M | saved activations {r['activations'] / GIB:.2f} GiB, "
                      f"saved weights {r['weights'] / GIB:.2f} GiB, softmax (math SDPA only) "
                      f"{r['softmax'] / GIB:.2f} GiB, largest module {r['largest_module'] / GIB:.2f} GiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
