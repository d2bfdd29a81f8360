#!/usr/bin/env python
"""Render a talking-portrait video from a portrait, a speech recording and an emotive text prompt.

Examples:
  python scripts/inference.py --source_image me.png --driving_audio hello.wav \\
      --prompt_emo "A person is talking with happy emotion."
  python scripts/inference.py --manifest jobs.csv --outputs renders/      # many videos, one model load
  accelerate launch --num_processes 8 scripts/inference.py --manifest jobs.csv --outputs renders/   # 8 GPUs
      (rows split over the processes, complete outputs skipped, one merged renders/render_report.json;
      on a machine without GPUs add --multi_gpu, accelerate's multi-process launcher)
  python scripts/inference.py ... --steps 20 --cfg_scale 2.5 vae_decode_batch=4   # dotlist overrides last
  python scripts/inference.py ... --preset fast          # DPM-Solver++ 20 steps, guidance interval, DeepCache
  python scripts/inference.py ... --offload model        # each model on the GPU only while it runs
  python scripts/inference.py ... --preset turbo --checkpoint exp_output/distill/final   # a distilled student
  python scripts/inference.py ... --prompt_emo "0: A person is talking calmly. | 3.2: The person becomes furious."
  python scripts/inference.py ... --audio_guidance 4.5 --emotion_guidance 2 --emotion_strength 1.5

Settings: the defaults reproduce the released pipeline; -c FILE applies a YAML file on top (a released-style
config works: its model-path keys are ignored with a warning), flags override it and key=value arguments override
everything (e.g. inference_steps=20 data.size=256; every key: docs/config-reference.md or --print_config).
Resolution, frames per clip, motion frames, reference pairing and noise schedule default to the checkpoint
card (net.json beside net.pth); an explicit value that contradicts the card wins with a warning. Missing model
files are reported up front with the command that fetches them (python scripts/download_models.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import add_config_arguments, print_config, run_main  # noqa: E402

# flag -> config key (flags left unset keep the config's value)
FLAG_KEYS = {
    "source_image": "source_image", "driving_audio": "driving_audio", "prompt_emo": "prompt_emo",
    "outputs": "outputs", "output": "output", "pose_weight": "pose_weight", "face_weight": "face_weight",
    "lip_weight": "lip_weight", "face_expand_ratio": "face_expand_ratio", "checkpoint": "checkpoint",
    "models": "models_root", "steps": "inference_steps", "cfg_scale": "cfg_scale", "seed": "seed",
    "device": "device", "dtype": "dtype", "preset": "preset", "solver": "solver",
    "guidance_interval": "guidance_interval", "deep_cache_interval": "deep_cache_interval", "offload": "offload",
    "audio_guidance": "audio_guidance", "emotion_guidance": "emotion_guidance", "emotion_strength": "emotion_strength",
    "neutral_prompt": "neutral_prompt", "emotion_timeline": "emotion_timeline",
    "emotion_transition": "emotion_transition",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/inference.py", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--source_image", help="portrait image (PNG/JPEG/WebP/...; any size, a face must be visible)")
    io.add_argument("--driving_audio", help="speech recording (WAV/MP3/FLAC/M4A/...; anything ffmpeg reads)")
    io.add_argument("--prompt_emo", help='emotive text prompt, e.g. "A person is talking with happy emotion." '
                                         '(default: the config\'s neutral-emotion sentence), or an emotion timeline: '
                                         '"0: A person is talking calmly. | 3.2: The person becomes furious."')
    io.add_argument("--outputs", help="output folder; the video is <image-stem>_<audio-stem>.mp4 (default: outputs)")
    io.add_argument("--output", help="exact output .mp4 path (single video; overrides --outputs)")
    io.add_argument("--overwrite", action="store_true",
                    help="with --manifest: render rows whose output already exists and is complete (default: skip "
                         "them, so a re-launch after a crash resumes)")
    io.add_argument("--manifest", help="batch mode: CSV/JSONL of image,audio,prompt[,output] rows, one model load; "
                                       "every row is checked first, the good rows are rendered, the bad ones are "
                                       "listed with their reasons and the run exits non-zero; rows with the same "
                                       "default name get _row<line> appended")
    io.add_argument("--fail-fast", "--fail_fast", dest="fail_fast", action="store_true",
                    help="with --manifest: stop at the first bad row (a row that does not parse or whose file is "
                         "missing or unreadable refuses the whole batch before any model is loaded)")
    model = p.add_argument_group("models")
    model.add_argument("--models", metavar="DIR", help="pretrained_models folder (default: pretrained_models or "
                                                       "$EMOCAST_MODELS)")
    model.add_argument("--checkpoint", "--audio_ckpt_dir", dest="checkpoint",
                       help="EmoCAST net.pth, or a folder holding it (default: <models>/emocast)")
    gen = p.add_argument_group("generation")
    gen.add_argument("--pose_weight", type=float, help="weight of the pose/background audio branch (default 1.0)")
    gen.add_argument("--face_weight", type=float, help="weight of the face audio branch (default 1.0)")
    gen.add_argument("--lip_weight", type=float, help="weight of the lip audio branch (default 1.0)")
    gen.add_argument("--face_expand_ratio", type=float, help="face box expansion for the soft masks and the FaceLocator face region "
                                                          "(default 1.2)")
    gen.add_argument("--steps", type=int, help="denoising steps (default 40; turbo: the student card's, 1-8)")
    gen.add_argument("--cfg_scale", type=float, help="classifier-free guidance scale; <= 1 disables CFG (default "
                                                     "3.5); turbo: the guidance scale w given to the student")
    gen.add_argument("--seed", type=int, help="seed of the CPU noise generator, seeded once per video (default 42)")
    gen.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    gen.add_argument("--dtype", help="fp16, bf16, fp32 or auto (default: fp16 on cuda, fp32 on cpu)")
    emo = p.add_argument_group("emotion control (docs/inference.md#emotion-control)")
    emo.add_argument("--emotion_timeline", metavar="FILE",
                     help="emotion timeline file (.json, .srt, or 'SECONDS: prompt' lines) in place of --prompt_emo")
    emo.add_argument("--emotion_transition", type=float, metavar="SECONDS",
                     help="blend window of the text conditioning around each timeline change (default 0.5)")
    emo.add_argument("--audio_guidance", type=float, help="guidance scale of the audio (default: --cfg_scale); with "
                                                          "--emotion_guidance: three rows instead of two")
    emo.add_argument("--emotion_guidance", type=float, help="guidance scale of the emotive text on top of the audio "
                                                            "(default: --cfg_scale)")
    emo.add_argument("--emotion_strength", type=float, metavar="S",
                     help="intensity: 1 = as written (default), 0 = the neutral prompt, <1 weaker, >1 stronger "
                          "(safe range 0-2, at most 3)")
    emo.add_argument("--neutral_prompt", help="the neutral end of --emotion_strength (default: \"A person is "
                                              "talking with neutral emotion.\")")
    speed = p.add_argument_group("speed and memory (docs/inference.md#speed)")
    speed.add_argument("--preset", help="release (default: the released settings and outputs) | fast | faster: "
                                        "bundles of the settings below, explicit settings win | turbo: a "
                                        "consistency-distilled student checkpoint (scripts/train_distill.py) in "
                                        "1-8 steps, one row")
    speed.add_argument("--solver", help="ddim (the release) | dpmsolver++ | unipc")
    speed.add_argument("--guidance_interval", type=float, nargs=2, metavar=("START", "END"),
                       help="guide only the steps START <= i/steps < END (fractions; default 0 1 = every step)")
    speed.add_argument("--deep_cache_interval", type=int, metavar="K",
                       help="DeepCache: the deep UNet blocks every K-th step (default 1 = off)")
    speed.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile the repeated UNet blocks (the first clip pays the compile time)")
    speed.add_argument("--offload", choices=["none", "model"],
                       help="model: each model on the GPU only while it runs (less GPU memory, some transfer time)")
    pre = p.add_argument_group("preprocessing")
    pre.add_argument("--no-separator", "--no_separation", dest="no_separator", action="store_true",
                     help="skip vocal separation (use for clean speech; no audio_separator model needed)")
    pre.add_argument("--use_whole_image", "--allow_no_face", dest="use_whole_image", action="store_true",
                     help="when no face is detected, use the whole image as the face region instead of failing")
    pre.add_argument("--no_square_crop", action="store_true",
                     help="resize a non-square image to a square instead of cropping/padding around the face")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="hide the progress bars")
    add_config_arguments(p, what="inference settings")
    return p


def config_from_args(args):
    """The effective config: the schema's defaults (emocast.pipelines.config.InferenceConfig), the -c YAML on top
    (a released config's model-path keys are dropped with a warning; its ``audio_ckpt_dir`` is the checkpoint),
    then the flags that were given, then the key=value overrides."""
    from emocast import config
    from emocast.cli import config_from_args as resolve
    from emocast.pipelines.config import InferenceConfig, strip_release_keys

    layers = []
    if args.config:
        data = config.read_yaml(args.config)
        dropped = strip_release_keys(data)
        if dropped:
            print(f"warning: {args.config}: released-config keys ignored ({', '.join(dropped)}): EmoCAST reads every "
                  "model from --models", file=sys.stderr)
        layers.append(data)
    values = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items()}
    if args.no_separator:
        values["preprocess.separate_vocals"] = False
    if args.use_whole_image:
        values["preprocess.use_whole_image"] = True
    if args.no_square_crop:
        values["preprocess.square_crop"] = False
    if args.compile:
        values["compile"] = True
    if values.get("guidance_interval") is not None:
        values["guidance_interval"] = list(values["guidance_interval"])
    args = argparse.Namespace(**{**vars(args), "config": None})
    return resolve(InferenceConfig, args, values, layers)


def main(argv=None) -> int:
    import logging

    args = build_parser().parse_intermixed_args(argv)
    cfg = config_from_args(args)
    if args.print_config:
        return print_config(cfg)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from dataclasses import replace

    from emocast.errors import ConfigError
    from emocast.pipelines.batch import output_paths, parse_manifest, read_manifest
    from emocast.pipelines.inference import EmoCASTPipeline, precheck_inputs, render_jobs, single_job

    progress = not args.no_progress
    bad = []  # manifest rows that cannot be rendered, listed at the end
    if args.manifest:
        if args.output:
            raise ConfigError("--output names one video; with --manifest use an output column or --outputs")
        single = [f"--{f}" for f in ("source_image", "driving_audio", "prompt_emo", "emotion_timeline")
                  if getattr(args, f)]
        if single:
            raise ConfigError(f"{', '.join(single)} describe one video and would be ignored with --manifest; "
                              "put every video in the manifest, or drop --manifest")
        if args.fail_fast:
            jobs = read_manifest(args.manifest)
        else:
            manifest = parse_manifest(args.manifest)
            jobs, bad = manifest.jobs, manifest.problems
    else:
        if args.fail_fast:
            raise ConfigError("--fail-fast applies to --manifest runs only")
        if args.overwrite:
            raise ConfigError("--overwrite applies to --manifest runs (a single video is always written)")
        jobs = [single_job(cfg)]
    # name clashes and unusable outputs fail before anything is loaded; the names are fixed here, over every row
    jobs = [replace(job, output=out) for job, out in zip(jobs, output_paths(jobs, cfg.outputs))]
    if args.manifest:
        from emocast.pipelines.render_run import run_manifest

        # one process or many (accelerate launch / torchrun): rows split by rank, complete outputs skipped, bad rows
        # listed, one merged report
        run_manifest(cfg, jobs, bad=bad, overwrite=args.overwrite, fail_fast=args.fail_fast, progress=progress,
                     on_written=lambda path: print(path, flush=True))
        return 0
    precheck_inputs(jobs, progress=progress)  # a bad file fails before minutes of model loading
    pipe = EmoCASTPipeline.from_config(cfg, progress=progress)
    try:
        render_jobs(pipe, jobs, cfg.outputs, progress=progress, on_written=lambda path: print(path, flush=True))
    finally:
        pipe.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
