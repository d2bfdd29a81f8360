"""Command-line plumbing shared by ``scripts/train_stage1.py``, ``scripts/train_stage2.py`` and
``scripts/train_distill.py``."""
from __future__ import annotations

import argparse
import logging

from ..cli import add_config_arguments, config_from_args, print_config

EPILOG = """\
Settings: the defaults are the paper's recipe (emocast.training.config); -c FILE applies a YAML file on top
(configs/train/*.yaml), flags override it and key=value arguments override everything, e.g.
  data.batch_size=2 train.max_steps=100 optimizer.name=adamw8bit train.mixed_precision=bf16
Unknown keys and wrong values fail with one message naming the key; --print_config shows every key, and
docs/config-reference.md explains them. Run on one process with plain python, or on N GPUs / DeepSpeed with
  accelerate launch --config_file configs/accelerate/{cpu,single_gpu,multi_gpu,deepspeed_zero2}.yaml <script> ...
A run resumes from the newest checkpoint in <output_dir>/checkpoints (train.resume_from=latest); the final
weights are <output_dir>/final/net.pth with their checkpoint card net.json (scripts/inference.py --checkpoint
<output_dir>/final) and net.safetensors. See docs/training.md for the full recipe."""

# flag -> config key; the values are taken as typed by argparse (paths stay strings, never YAML)
FLAG_KEYS = {"output_dir": "output_dir", "models": "models.root", "max_steps": "train.max_steps",
             "resume_from": "train.resume_from", "init_checkpoint": "models.init_checkpoint"}
DISTILL_FLAG_KEYS = {**{k: v for k, v in FLAG_KEYS.items() if k != "init_checkpoint"}, "teacher": "models.teacher"}
SCRIPTS = {"stage1": "scripts/train_stage1.py", "stage2": "scripts/train_stage2.py",
           "distill": "scripts/train_distill.py"}


def flag_keys(stage: str) -> dict[str, str]:
    return DISTILL_FLAG_KEYS if stage == "distill" else FLAG_KEYS


def build_parser(prog: str, description: str, default_config: str | None, stage: str = "stage2") \
        -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", help="where checkpoints, logs, validation renders and final/ go "
                                        "(overrides output_dir)")
    p.add_argument("--models", metavar="DIR", help="pretrained_models folder (overrides models.root; default: "
                                                   "$EMOCAST_MODELS, else ./pretrained_models)")
    p.add_argument("--max_steps", type=int, help="optimizer steps (overrides train.max_steps)")
    p.add_argument("--resume_from", help="latest (default), none, or a checkpoint folder (overrides train.resume_from)")
    if stage == "distill":
        p.add_argument("--teacher", help="the checkpoint to distil: net.pth/.safetensors/export folder, with its card "
                                         "net.json (overrides models.teacher)")
    else:
        p.add_argument("--init_checkpoint", help="net.pth/.safetensors/export folder to start from (overrides "
                                                 "models.init_checkpoint)")
    add_config_arguments(p, default_config, what="training settings")
    return p


def load_train_config(stage: str, args):
    """The typed config of ``stage`` from the script's arguments; a YAML of the other stage fails clearly."""
    from .. import config
    from ..errors import ConfigError
    from .config import SCHEMAS

    if args.config:
        other = config.read_yaml(args.config).get("stage")
        if other is not None and other != stage:
            script = SCRIPTS.get(other, "the script of that stage")
            raise ConfigError(f"{args.config} is a {other!r} config, this script trains {stage!r}: use {script}")
    return config_from_args(SCHEMAS[stage], args, {key: getattr(args, flag) for flag, key in flag_keys(stage).items()})


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("accelerate", "diffusers", "transformers", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def train(stage: str, argv, prog: str, description: str, default_config: str | None) -> int:
    """The whole entry point of ``scripts/train_stage1.py`` / ``train_stage2.py`` / ``train_distill.py``
    (``stage``: stage1 | stage2 | distill)."""
    args = build_parser(prog, description, default_config, stage).parse_intermixed_args(argv)
    cfg = load_train_config(stage, args)
    if args.print_config:
        return print_config(cfg)
    setup_logging()
    if stage == "stage1":
        from .stage1 import Stage1Task as Task
    elif stage == "distill":
        from .distill import DistillTask as Task
    else:
        from .stage2 import Stage2Task as Task
    from .trainer import Trainer

    result = Trainer(cfg, Task(cfg)).run()
    print(f"done: step {result['step']}" + (" (stopped early)" if result.get("stopped") else ""))
    return 0
