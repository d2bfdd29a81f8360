"""Command-line plumbing shared by ``scripts/train_stage1.py`` and ``scripts/train_stage2.py``."""
from __future__ import annotations

import argparse
import logging

from ..cli import load_config
from ..errors import ConfigError

EPILOG = """\
Every config key can be overridden after the flags as an OmegaConf dotlist, e.g.
  data.batch_size=2 train.max_steps=100 optimizer.name=adamw8bit train.mixed_precision=bf16
Run on one process with plain python, or on N GPUs / DeepSpeed with
  accelerate launch --config_file configs/accelerate/{cpu,single_gpu,multi_gpu,deepspeed_zero2}.yaml <script> ...
A run resumes from the newest checkpoint in <output_dir>/checkpoints (train.resume_from=latest); the final
weights are <output_dir>/final/net.pth (scripts/inference.py --checkpoint) and net.safetensors.
See docs/training.md for the full recipe."""


def build_parser(prog: str, description: str, default_config: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", default=default_config, help="training YAML (default: %(default)s)")
    p.add_argument("--output_dir", help="where checkpoints, logs, validation renders and final/ go "
                                        "(overrides output_dir)")
    p.add_argument("--models", metavar="DIR", help="pretrained_models folder (overrides models.root)")
    p.add_argument("--max_steps", type=int, help="optimizer steps (overrides train.max_steps)")
    p.add_argument("--resume_from", help="latest (default), none, or a checkpoint folder (overrides train.resume_from)")
    p.add_argument("--init_checkpoint", help="net.pth/.safetensors to start from (overrides models.init_checkpoint)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (OmegaConf dotlist)")
    return p


def config_from_args(args, stage: str):
    from omegaconf import OmegaConf

    extra = []
    for flag, key in (("output_dir", "output_dir"), ("models", "models.root"), ("max_steps", "train.max_steps"),
                      ("resume_from", "train.resume_from"), ("init_checkpoint", "models.init_checkpoint")):
        value = getattr(args, flag)
        if value is not None:
            extra.append(f"{key}={value}")
    cfg = load_config(args.config, list(extra) + list(args.overrides))
    if cfg.get("stage") != stage:
        raise ConfigError(f"{args.config} is a {cfg.get('stage')!r} config, this script trains {stage!r}: use "
                          f"{'scripts/train_stage1.py' if cfg.get('stage') == 'stage1' else 'scripts/train_stage2.py'}")
    OmegaConf.set_readonly(cfg, False)
    return cfg


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("accelerate", "diffusers", "transformers", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def train(stage: str, argv, prog: str, description: str, default_config: str) -> int:
    """The whole entry point of ``scripts/train_stage1.py`` / ``train_stage2.py`` (``stage``: stage1 | stage2)."""
    args = build_parser(prog, description, default_config).parse_intermixed_args(argv)
    cfg = config_from_args(args, stage)
    setup_logging()
    if stage == "stage1":
        from .stage1 import Stage1Task as Task
    else:
        from .stage2 import Stage2Task as Task
    from .trainer import Trainer

    result = Trainer(cfg, Task(cfg)).run()
    print(f"done: step {result['step']}" + (" (stopped early)" if result.get("stopped") else ""))
    return 0
