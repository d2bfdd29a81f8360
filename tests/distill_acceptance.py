#!/usr/bin/env python
"""The acceptance of issue 12 on CPU with the tiny model kit (too slow for the test suite; docs/training.md §8.4).

  python tests/distill_acceptance.py [--work DIR] [--teacher_steps 300] [--distill_steps 100] [--seeds 8]

1. teacher: the tiny net trained briefly on one prepared video (scripts/train_stage2.py, every denoising group plus
   the conditioning networks trainable), so its guided trajectories are not noise;
2. student: scripts/train_distill.py from that teacher, on the same video's clips;
3. on held-out seeds (initial noise no training step drew), one clip of the video's first frame, audio and prompt
   at w = 3.5: the latent MSE of the student's 4-step render and of the teacher's own 4-step guided render to the
   teacher's 40-step guided render; and the FLOPs of sampling that clip (FlopCounterMode: reference pass and every
   UNet call; 4 student rows against 40 x 2 teacher rows).

Prints the numbers and a JSON line; exits 1 when the student is not at least 2x closer or costs more than 1/10.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path[:0] = [str(REPO), str(TESTS)]

W = 3.5


def _run(script: str, args: list[str]) -> None:
    from emocast.cli import run_main
    from helpers import load_script

    if run_main(load_script(script).main, args) != 0:
        raise SystemExit(f"{script} failed")


def train(work: Path, teacher_steps: int, distill_steps: int) -> tuple[Path, Path, Path]:
    from emocast.testing.tiny_kit import write_tiny_models
    from test_train_data import make_prepared_dataset, tiny_overrides

    models = work / "models"
    if not (models / "emocast").is_dir():
        write_tiny_models(models)
    meta = make_prepared_dataset(work / "data", identities={"astro": "astronaut"}, emotions=("neutral",))
    teacher, student = work / "teacher", work / "student"
    if not (teacher / "final" / "net.pth").is_file():
        _run("train_stage2", [
            "-c", str(REPO / "configs/train/stage2_phase1.yaml"), "--output_dir", str(teacher), "--models", str(models),
            "--max_steps", str(teacher_steps), *tiny_overrides(meta, 2), "models.init_checkpoint=null",
            "logging.tracker=none", "logging.every=10", "train.gradient_checkpointing=false",
            "train.find_unused_parameters=true", "train.trainable=[denoising_spatial,motion_modules,audio_modules,"
            "audio_emo,audioproj,imageproj,face_locator,ip_adapter]"])
    if not (student / "final" / "net.pth").is_file():
        _run("train_distill", [
            "-c", str(REPO / "configs/train/distill.yaml"), "--output_dir", str(student), "--models", str(models),
            "--teacher", str(teacher / "final"), "--max_steps", str(distill_steps), f"data.datasets=[{{meta: '{meta}'}}]",
            "data.batch_size=1", "data.num_workers=0", "train.mixed_precision=no", "train.gradient_checkpointing=false",
            "optimizer.lr=1e-4", "distill.guidance_embed_dim=32", "logging.tracker=none", "logging.every=10",
            "checkpointing.every=0"])
    return models, teacher / "final", student / "final"


def evaluate(models: Path, teacher_dir: Path, student_dir: Path, seeds: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from emocast.data import layout
    from emocast.data.datasets import to_pixels
    from emocast.models.loading import load_net
    from emocast.models.vae import VaeCodec, load_vae
    from emocast.pipelines.card import read_card
    from emocast.pipelines.sampler import ClipSampler, SamplerSettings
    from emocast.pipelines.scheduler import make_generator
    from emocast.preprocess.audio import audio_windows
    from emocast.training.encoders import PromptEncoder
    from emocast.training.validation import sample_conditioning

    card, _ = read_card(teacher_dir)
    scard, _ = read_card(student_dir)
    assert scard.sampler == "consistency" and card.sampler == "ddim"
    teacher = load_net(teacher_dir / "net.pth", device="cpu", dtype=torch.float32)
    student = load_net(student_dir / "net.pth", config=scard.net, device="cpu", dtype=torch.float32)
    codec = VaeCodec(load_vae(models, "cpu", torch.float32), scaling_factor=card.vae_scaling_factor)
    text = PromptEncoder(models, "cpu", torch.float32)
    folder = next((layout.sample_dir(models.parent / "data", v) for v in layout.list_samples(models.parent / "data")))
    prompt = layout.read_info(folder).prompts[0]
    (frame,) = layout.read_frames(folder, [0])
    ref = codec.encode(to_pixels(frame, card.image_size)[None])
    ref_latents = torch.cat([ref, ref.expand(card.motion_frames, *ref.shape[1:])])  # a video's first clip
    features = layout.read_audio_emb(folder, dtype=torch.float32)
    windows = audio_windows(features, 0, card.clip_length, card.audio_margin)[None]

    def sampler(net, steps):
        return ClipSampler(net, codec, SamplerSettings(
            steps=steps, cfg_scale=W, clip_length=card.clip_length, motion_frames=card.motion_frames,
            reference_pairing=card.reference_pairing, audio_margin=card.audio_margin, schedule=card.schedule))

    def render(net, steps, seed, counter=None):
        s = sampler(net, steps)
        with torch.inference_mode():
            video = sample_conditioning(s, text, folder, prompt, card.image_size, masks=True)
            if counter is None:
                return s.sample_clip(video, ref_latents, windows, make_generator(seed), progress=False)
            with counter:
                return s.sample_clip(video, ref_latents, windows, make_generator(seed), progress=False)

    rows = []
    for seed in range(10_000, 10_000 + seeds):  # training noise comes from per-step generators, never these seeds
        ref40 = render(teacher, 40, seed)
        mse = lambda x: float(((x - ref40) ** 2).mean())  # noqa: E731
        rows.append({"seed": seed, "teacher_4": mse(render(teacher, 4, seed)), "student_4": mse(render(student, 4, seed)),
                     "student_1": mse(render(student, 1, seed)), "student_8": mse(render(student, 8, seed)),
                     "render_var": float(ref40.var())})
        print(json.dumps(rows[-1]), flush=True)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "seed"}
    flops = {}
    for name, net, steps in (("teacher_40", teacher, 40), ("student_4", student, 4)):
        counter = FlopCounterMode(display=False)
        render(net, steps, 0, counter)
        flops[name] = counter.get_total_flops()
    return {"mean_mse": mean, "closer_factor": mean["teacher_4"] / mean["student_4"],
            "worst_seed_factor": min(r["teacher_4"] / r["student_4"] for r in rows),
            "flops": flops, "flops_ratio": flops["student_4"] / flops["teacher_40"], "seeds": seeds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="exp_output/distill_acceptance", help="working folder (reused: finished runs "
                                                                          "are not repeated)")
    p.add_argument("--teacher_steps", type=int, default=300)
    p.add_argument("--distill_steps", type=int, default=100)
    p.add_argument("--seeds", type=int, default=8)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    models, teacher, student = train(Path(args.work), args.teacher_steps, args.distill_steps)
    t1 = time.time()
    result = evaluate(models, teacher, student, args.seeds)
    result.update(train_s=round(t1 - t0), eval_s=round(time.time() - t1), teacher_steps=args.teacher_steps,
                  distill_steps=args.distill_steps)
    m = result["mean_mse"]
    print(f"latent MSE to the teacher's 40-step guided render (mean of {args.seeds} held-out seeds, w = {W}):\n"
          f"  teacher 4 steps {m['teacher_4']:.4f} | student 4 steps {m['student_4']:.4f} (1: {m['student_1']:.4f}, "
          f"8: {m['student_8']:.4f}) | render variance {m['render_var']:.3f}\n"
          f"  student {result['closer_factor']:.2f}x closer (worst seed {result['worst_seed_factor']:.2f}x); FLOPs per "
          f"clip: student 4 steps / teacher 40 x 2 rows = {result['flops_ratio']:.4f}")
    print(json.dumps(result))
    return 0 if result["closer_factor"] >= 2 and result["flops_ratio"] <= 0.1 else 1


if __name__ == "__main__":
    sys.exit(main())
