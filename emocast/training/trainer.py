"""The accelerate training loop shared by stage 1 and the stage-2 phases.

A *task* (:class:`emocast.training.stage1.Stage1Task`, :class:`emocast.training.stage2.Stage2Task`) builds the
networks, the dataset and the loss; this module owns everything around them:

* ``accelerate.Accelerator`` — the same code runs on CPU, one GPU, DDP and DeepSpeed ZeRO-2 (chosen by
  ``accelerate launch --config_file configs/accelerate/*.yaml``; plain ``python`` = one process). Mixed
  precision is accelerate's autocast around the network forward: master weights stay fp32 (Hallo trained
  pure-fp16 parameters, spec §11 item 43).
* AdamW (torch) or 8-bit AdamW (bitsandbytes) over the trainable parameters only; LR scheduler from diffusers;
  gradient clipping; gradient accumulation through ``accelerator.accumulate`` (all conditioning — reference
  features included — is recomputed from each micro-batch and passed as arguments, so nothing leaks between
  micro-steps; spec §11 item 44).
* Every random draw of a step (noise, timesteps, CFG dropout, VAE posterior) comes from a generator seeded by
  ``(seed, step, micro-step, rank)``, and the data stream restarts at the saved position, so resuming from a
  checkpoint continues exactly like an uninterrupted run.
* Checkpoints every ``checkpointing.every`` optimizer steps (atomic, keep-last-N), metrics to TensorBoard and
  ``metrics.jsonl``, validation renders every ``validation.every`` steps, and a NaN/inf loss stops the run with
  the step and the sample ids of the batch.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import config as config_mod
from ..errors import ConfigError, EmoCASTError
from ..data.datasets import StreamSampler, collate
from . import checkpointing
from .tracking import MetricsLogger, resolve_tracker, tracker_init_kwargs

log = logging.getLogger("emocast.training")


#: data counters always logged (``data/<name>``); reference sources come from emotion-aware sampling
COUNTERS = ("samples", "skipped_samples", "ref_neutral", "ref_same_video", "ref_fallback")


class TrainingDivergedError(EmoCASTError):
    """The loss became NaN/inf; the message names the step and the samples."""


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The CPU generator of one micro-step: a pure function of ``(seed, step, micro, rank)``."""
    state = np.random.SeedSequence([int(seed), int(step), int(micro), int(rank)]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] % (2 ** 63)))


def deepspeed_on_cpu() -> bool:
    """``accelerate launch`` with a DeepSpeed config on a machine without CUDA. accelerate 1.15 has no CPU backend
    for DeepSpeed (without one every process believes it is rank 0 of 1 and ZeRO's batch check fails), so the
    trainer names gloo, which DeepSpeed's CPU accelerator also uses (docs/training.md, "Sharded training")."""
    import os

    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" and not torch.cuda.is_available()


EIGHT_BIT = ("adamw8bit", "adamw_8bit", "adam8bit")


def build_optimizer(params, ocfg, deepspeed: bool = False):
    name = ocfg.name
    if deepspeed and name in EIGHT_BIT:  # ZeRO refuses client optimizers it has not tested, deep inside its init
        raise ConfigError(f"optimizer.name={name} cannot run under DeepSpeed ZeRO (configs/accelerate/"
                          "deepspeed_zero2.yaml): add optimizer.name=adamw to the command (the stage-2 configs "
                          "default to 8-bit AdamW for single GPUs)")
    kwargs = dict(lr=ocfg.lr, betas=tuple(ocfg.betas), weight_decay=ocfg.weight_decay, eps=ocfg.eps)
    if name == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    if name in EIGHT_BIT:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ConfigError("optimizer.name=adamw8bit needs bitsandbytes: pip install -r requirements/train.txt "
                              "(or set optimizer.name=adamw)") from None
        return bnb.optim.AdamW8bit(params, **kwargs)
    raise ConfigError(f"optimizer.name={name!r}: use adamw or adamw8bit")


def build_lr_scheduler(optimizer, scfg, max_steps: int):
    from diffusers.optimization import get_scheduler

    try:
        return get_scheduler(scfg.name, optimizer=optimizer, num_warmup_steps=scfg.warmup_steps,
                             num_training_steps=int(max_steps))
    except ValueError as err:
        raise ConfigError(f"lr_scheduler.name={scfg.name!r}: {err}") from None


class Trainer:
    """Runs one training stage/phase described by ``cfg`` with ``task``."""

    def __init__(self, cfg, task):
        self.cfg, self.task = cfg, task
        self.out = Path(cfg.output_dir)
        self.ckpt_root = self.out / "checkpoints"

    # ------------------------------------------------------------------------------------------------ setup
    def _accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, ProjectConfiguration

        tcfg = self.cfg.train
        tracker = resolve_tracker(self.cfg.logging.tracker)
        handlers = [DistributedDataParallelKwargs(find_unused_parameters=tcfg.find_unused_parameters)]
        if deepspeed_on_cpu():
            handlers.append(InitProcessGroupKwargs(backend="gloo"))
        acc = Accelerator(
            gradient_accumulation_steps=tcfg.gradient_accumulation_steps,
            # auto: the accelerate launch config / environment decides (plain python: no)
            mixed_precision=None if tcfg.mixed_precision == "auto" else tcfg.mixed_precision,
            log_with=tracker, step_scheduler_with_optimizer=False, kwargs_handlers=handlers,
            project_config=ProjectConfiguration(project_dir=str(self.out), logging_dir=str(self.out / "logs")))
        return acc, tracker

    def run(self) -> dict:
        cfg, task = self.cfg, self.task
        tcfg = cfg.train
        max_steps = tcfg.max_steps
        acc, tracker = self._accelerator()
        self.accelerator = acc
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(config_mod.dump(cfg), encoding="utf-8")
        torch.manual_seed(int(cfg.seed))
        task.setup(acc)
        named = task.trainable_parameters()
        if not named:
            raise ConfigError(f"{task.name}: no trainable parameters (check train.trainable)")
        params = [p for _, p in named]
        optimizer = build_optimizer(params, cfg.optimizer, deepspeed=acc.state.deepspeed_plugin is not None)
        lr_scheduler = build_lr_scheduler(optimizer, cfg.lr_scheduler, max_steps)
        if acc.state.deepspeed_plugin is not None:  # our loader is not prepared, so DeepSpeed cannot infer these
            ds = acc.state.deepspeed_plugin.deepspeed_config
            ds["train_micro_batch_size_per_gpu"] = cfg.data.batch_size
            ds["train_batch_size"] = cfg.data.batch_size * acc.num_processes * tcfg.gradient_accumulation_steps
        module, optimizer, lr_scheduler = acc.prepare(task.module, optimizer, lr_scheduler)
        self.module = module

        state = {"step": 0, "data_position": 0, "counters": {}}
        resume = checkpointing.resolve_resume(tcfg.resume_from, self.ckpt_root)
        if resume is not None:
            state = checkpointing.load_checkpoint(acc, resume)
            acc.print(f"resumed from {resume} at step {state['step']}")
        step, position = int(state["step"]), int(state["data_position"])
        # steps logged after the checkpoint (or by a run killed before its first one) are logged again: drop them
        if tracker is not None:
            acc.init_trackers(task.name, config=_flat_hparams(cfg), init_kwargs=tracker_init_kwargs(tracker, step))
        metrics = MetricsLogger(acc, self.out, tracker is not None, resume_step=step)
        counters = Counter({k: 0 for k in COUNTERS})
        if acc.is_main_process:  # the saved counters are totals over all processes
            counters.update(state.get("counters", {}))
        if step >= max_steps:
            acc.print(f"nothing to do: checkpoint step {step} >= train.max_steps {max_steps}")

        loader = DataLoader(task.dataset, batch_size=cfg.data.batch_size,
                            sampler=StreamSampler(acc.process_index, acc.num_processes, start=position),
                            num_workers=cfg.data.num_workers, collate_fn=collate,
                            pin_memory=acc.device.type == "cuda", drop_last=True,
                            persistent_workers=False)
        batches = iter(loader)
        accum = tcfg.gradient_accumulation_steps
        batch_size = cfg.data.batch_size
        stop_at = tcfg.stop_at_step
        every_ckpt = cfg.checkpointing.every
        every_val = cfg.validation.every if cfg.validation.examples else 0
        every_log = cfg.logging.every
        keep_last = cfg.checkpointing.keep_last
        seed = cfg.seed

        if acc.is_main_process and every_val and cfg.validation.at_start and step == 0:
            self._validate(0)
        module.train()
        bar = tqdm(total=max_steps, initial=step, desc=task.name, disable=not acc.is_local_main_process)
        window = {"loss": [], "t0": time.time(), "samples": 0}
        grad_norm = float("nan")
        while step < max_steps:
            for micro in range(accum):
                batch = next(batches)
                position += batch_size
                counters["samples"] += batch_size
                counters["skipped_samples"] += int(batch["skipped"].sum())
                for src in batch.get("ref_source", []):
                    counters[f"ref_{src}"] += 1
                with acc.accumulate(module):
                    gen = step_generator(seed, step, micro, acc.process_index)
                    loss, per_sample = task.compute_loss(module, batch, gen)
                    self._check_finite(loss, step, batch)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        max_norm = tcfg.max_grad_norm
                        norm = acc.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
                        grad_norm = float(norm) if norm is not None else float("nan")
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if acc.sync_gradients:
                        task.after_optimizer_step(acc.unwrap_model(module))
                window["loss"].append(float(loss.detach()))
                window["samples"] += batch_size * acc.num_processes
            lr_scheduler.step()
            step += 1
            bar.update(1)
            if step % every_log == 0 or step == max_steps:
                dt = max(time.time() - window["t0"], 1e-9)
                row = {"loss": float(np.mean(window["loss"])), "lr": lr_scheduler.get_last_lr()[0],
                       "grad_norm": grad_norm, "samples_per_s": window["samples"] / dt,
                       **{f"data/{k}": v for k, v in self._global_counters(counters).items()}}
                metrics.log(step, row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                window = {"loss": [], "t0": time.time(), "samples": 0}
            if every_val and step % every_val == 0 and acc.is_main_process:
                self._validate(step)
            last = step == max_steps or (stop_at is not None and step >= stop_at)
            if (every_ckpt and step % every_ckpt == 0) or last:
                checkpointing.save_checkpoint(
                    acc, self.ckpt_root, step,
                    {"step": step, "data_position": position, "counters": self._global_counters(counters),
                     "task": task.name, "world_size": acc.num_processes}, keep_last, card=task.card(step))
            if stop_at is not None and step >= stop_at and step < max_steps:
                acc.print(f"stopping at step {step} (train.stop_at_step); resume with the same command")
                bar.close()
                result = {"step": step, "stopped": True, "counters": self._global_counters(counters)}  # collective:
                acc.end_training()  # before the process group is gone
                return result
        bar.close()
        result = {"step": step, "stopped": False, "counters": self._global_counters(counters)}
        acc.wait_for_everyone()
        if acc.is_main_process:
            export_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.export.dtype)
            summary = {"task": task.name, "step": step, "counters": result["counters"]}
            paths = checkpointing.export_weights(task.export_net(acc.unwrap_model(module)), self.out / "final",
                                                 task.card(step), dtype=export_dtype,
                                                 safetensors=cfg.export.safetensors, extra={"summary.json": summary})
            result["exported"] = {k: str(v) for k, v in paths.items()}
            acc.print(f"exported {paths['pth']}")
        acc.end_training()
        return result

    # ------------------------------------------------------------------------------------------------ helpers
    def _global_counters(self, counters) -> dict:
        """The data counters summed over all processes (each process counts its own samples)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return dict(counters)
        keys = sorted(counters)
        total = acc.reduce(torch.tensor([float(counters[k]) for k in keys], device=acc.device), reduction="sum")
        return {k: int(v) for k, v in zip(keys, total.tolist())}

    def _check_finite(self, loss, step, batch):
        from accelerate.utils import gather_object

        acc = self.accelerator
        bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=acc.device)
        if acc.num_processes > 1:
            bad = acc.gather(bad)
        if float(bad.max()) > 0:
            ids = list(batch.get("sample_id", []))
            if acc.num_processes > 1:
                ids = gather_object(ids)
            raise TrainingDivergedError(
                f"the loss is {float(loss.detach())} (NaN/inf) at step {step + 1}, batch samples {ids}; training "
                f"stopped before the update. The last good checkpoint is in {self.ckpt_root}. Check those samples "
                f"(scripts/dataset_stats.py), lower optimizer.lr, or use train.mixed_precision=bf16/no instead of fp16")

    def _validate(self, step):
        try:
            paths = self.task.validate(self.accelerator.unwrap_model(self.module), step,
                                       self.out / "validation")
        except EmoCASTError as err:
            log.warning("validation at step %d failed: %s", step, err)
            return
        if paths:
            self.accelerator.print(f"validation step {step}: " + ", ".join(str(p) for p in paths))


def _flat_hparams(cfg) -> dict:
    """Scalar config values for the tracker's hparams view."""
    flat = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        elif isinstance(node, (int, float, str, bool)):
            flat[prefix[:-1]] = node

    walk("", config_mod.to_dict(cfg))
    return flat
