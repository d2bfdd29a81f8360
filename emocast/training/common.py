"""What stage 1 and stage 2 share: building the networks for training, the frozen encoders, the noise process
and the loss of one micro-batch. A stage subclasses :class:`DiffusionTask` with its dataset, its network forward
(an ``nn.Module`` so DDP/DeepSpeed can wrap it) and its validation.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .. import registry
from ..errors import ConfigError
from ..runtime import select_dtype
from . import noise as noise_mod
from .dropout import apply_prompt_dropout, draw_drop_masks
from .encoders import LatentEncoder, PromptEncoder, require_training_models
from .losses import diffusion_loss, min_snr_weights, snr
from .params import count, set_trainable

log = logging.getLogger("emocast.training")

TRAIN_COMPONENTS = ("stable-diffusion-v1-5", "motion_module", "sd-vae-ft-mse", "clip-vit-large-patch14")


def build_training_net(mcfg):
    """The EmoCASTNet to train: SD-1.5 UNet weights in both UNets, AnimateDiff motion modules, then every
    tensor of ``models.init_checkpoint`` (a previous stage's export or the released ``net.pth``) on top."""
    from ..models import loading

    root = mcfg.get("root")
    sd_dir = registry.component_dir("stable-diffusion-v1-5", root)
    mm_path = registry.component_dir("motion_module", root) / "mm_sd_v15_v2.ckpt"
    init = mcfg.get("init_checkpoint")
    if init:
        init = Path(init)
        if init.is_dir():
            init = init / "net.pth"
        if not init.is_file():
            raise ConfigError(f"models.init_checkpoint {init} does not exist: train the previous stage/phase first "
                              "(its weights are <output_dir>/final/net.pth) or set models.init_checkpoint=null")
    net, report = loading.init_from_pretrained(sd_dir, mm_path, stage_checkpoint=init, config=mcfg.get("net", "sd15"))
    log.info("initialisation:\n%s", report.summary())
    return net


class DiffusionTask:
    """Shared setup and loss; subclasses set ``name``, build ``dataset`` and ``module`` and implement
    :meth:`predict` (the network forward of one micro-batch)."""

    name = "task"
    module: torch.nn.Module
    dataset: torch.utils.data.Dataset

    def __init__(self, cfg):
        self.cfg = cfg
        self.trainable: list = []

    # ----------------------------------------------------------------------------------------------- setup
    def setup(self, accelerator) -> None:
        cfg = self.cfg
        root = cfg.models.get("root")
        require_training_models(root, TRAIN_COMPONENTS)
        self.dataset = self.build_dataset()  # reads the meta files: fail fast, before loading any weights
        self.device = accelerator.device
        self.weight_dtype = select_dtype(cfg.models.get("weight_dtype", "auto"), self.device)
        torch.manual_seed(int(cfg.seed))  # freshly added modules get the same weights on every process and rerun
        net = build_training_net(cfg.models)
        self.trainable = set_trainable(net, list(cfg.train.trainable))
        if bool(cfg.train.get("gradient_checkpointing", False)):
            net.enable_gradient_checkpointing(True)
        net.to(self.device)  # fp32 master weights; accelerate autocasts the forward
        n_all = sum(p.numel() for p in net.parameters())
        accelerator.print(f"{self.name}: training {count(self.trainable) / 1e6:.2f} M of {n_all / 1e6:.2f} M "
                          f"parameters ({', '.join(cfg.train.trainable)})")
        self.latents = LatentEncoder(root, self.device, self.weight_dtype)
        self.text = PromptEncoder(root, self.device, self.weight_dtype, int(cfg.get("text", {}).get("cache_size", 4096)))
        ncfg = cfg.noise
        self.scheduler = noise_mod.make_train_scheduler(ncfg.get("beta_schedule", "linear"),
                                                        bool(ncfg.get("zero_snr", True)),
                                                        ncfg.get("prediction_type", "v_prediction"))
        self.module = self.build_module(net)

    def build_module(self, net) -> torch.nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def build_dataset(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def trainable_parameters(self):
        return self.trainable

    def export_net(self, module):
        return module.net

    # ----------------------------------------------------------------------------------------------- loss
    def encode_prompts(self, prompts, keep_text):
        return self.text.encode(apply_prompt_dropout(list(prompts), keep_text))

    def noise_and_target(self, latents, generator):
        ncfg = self.cfg.noise
        b = latents.shape[0]
        noise = noise_mod.sample_noise(latents, float(ncfg.get("offset", 0.0) or 0.0), generator)
        t = noise_mod.sample_timesteps(b, self.scheduler.config.num_train_timesteps, generator, latents.device)
        noisy, target = noise_mod.noisy_and_target(self.scheduler, latents, noise, t)
        return noisy, target, t

    def compute_loss(self, module, batch, generator):
        """``(loss, per-sample MSE)`` of one micro-batch; all randomness from ``generator``."""
        b = len(batch["sample_id"])
        keep = draw_drop_masks(b, dict(self.cfg.dropout), generator)
        noisy, target, t, inputs = self.make_inputs(batch, keep, generator)
        pred = module(noisy, t, **inputs)
        weights = min_snr_weights(snr(self.scheduler.alphas_cumprod, t), self.cfg.noise.get("snr_gamma"),
                                  self.scheduler.config.prediction_type)
        return diffusion_loss(pred, target, weights)

    def make_inputs(self, batch, keep, generator):  # pragma: no cover - abstract
        raise NotImplementedError


def to_device(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], torch.Tensor):
        return type(x)(to_device(v, device) for v in x)
    return x


def keep_dict(keep, device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in keep.as_dict().items()}
