"""What every training stage shares: building the networks for training, the frozen encoders, the noise process,
the network forward of one micro-batch and its loss. A stage subclasses :class:`DiffusionTask` with its dataset,
the inputs of its batches and its validation; the forward itself is :class:`StepModule`, the sampler's step
(:mod:`emocast.pipelines.conditioning`) with per-sample dropped conditions.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from .. import registry
from ..config import config_hash
from ..errors import ConfigError
from ..models.vae import VaeCodec, load_vae
from ..pipelines import conditioning
from ..pipelines.card import CheckpointCard
from ..runtime import select_dtype
from . import noise as noise_mod
from .dropout import draw_keep
from .encoders import PromptEncoder, require_training_models
from .losses import diffusion_loss, min_snr_weights, snr
from .params import count, set_trainable

log = logging.getLogger("emocast.training")

TRAIN_COMPONENTS = ("stable-diffusion-v1-5", "motion_module", "sd-vae-ft-mse", "clip-vit-large-patch14")


def resolve_init_checkpoint(init, key: str = "models.init_checkpoint") -> Path | None:
    """``models.init_checkpoint`` (or the checkpoint of config ``key``) as a weights file (a folder means its
    ``net.pth``); None when unset."""
    if not init:
        return None
    path = Path(init)
    if path.is_dir():
        path = path / "net.pth"
    if not path.is_file():
        raise ConfigError(f"{key} {path} does not exist: train the previous stage/phase first "
                          f"(its weights are <output_dir>/final/net.pth) or set {key} to another checkpoint")
    return path


def build_training_net(mcfg):
    """The EmoCASTNet to train: SD-1.5 UNet weights in both UNets, AnimateDiff motion modules, then every
    tensor of ``models.init_checkpoint`` (a previous stage's export or the released ``net.pth``) on top."""
    from ..models import loading

    root = mcfg.root
    sd_dir = registry.component_dir("stable-diffusion-v1-5", root)
    mm_path = registry.component_dir("motion_module", root) / "mm_sd_v15_v2.ckpt"
    init = resolve_init_checkpoint(mcfg.init_checkpoint)
    net, report = loading.init_from_pretrained(sd_dir, mm_path, stage_checkpoint=init, config=mcfg.net)
    log.info("initialisation:\n%s", report.summary())
    return net


def run_card(cfg, step: int, schedule, vae_scaling_factor: float) -> CheckpointCard:
    """The checkpoint card of a training run's weights after ``step`` steps: its resolution, clip layout (stage 2;
    stage 1 keeps the release's), noise schedule, VAE scaling, reference pairing and provenance."""
    clip = {}
    if cfg.stage == "stage2":
        d = cfg.data
        clip = {"clip_length": d.n_sample_frames, "motion_frames": d.n_motion_frames, "audio_margin": d.audio_margin}
    return CheckpointCard(
        image_size=cfg.data.size, schedule=schedule, vae_scaling_factor=float(vae_scaling_factor),
        reference_pairing=cfg.train.reference_pairing, **clip,
        provenance={"producer": "emocast.training", "stage": cfg.stage, "phase": getattr(cfg, "phase", None),
                    "task": cfg.task_name, "step": int(step), "config_hash": config_hash(cfg),
                    "init_checkpoint": cfg.models.init_checkpoint})


class StepModule(nn.Module):
    """The network forward of one training micro-batch: the sampler's denoising step, with the conditions each
    sample keeps (``keep``: a dict of ``(B,)`` bool masks, see :class:`~emocast.pipelines.conditioning.Keep`).
    Stage 1 passes no ``audio``/``masks`` (the image stage: audio and motion modules neither run nor train).
    ``net`` is the EmoCASTNet; its state dict is the export."""

    def __init__(self, net, pairing: str = "matched"):
        super().__init__()
        self.net = net
        self.pairing = pairing

    def forward(self, noisy, timesteps, *, text_emb, empty_text, face_emb, face_region, ref_latents, keep,
                audio=None, masks=None):
        keep = conditioning.Keep.from_dict(keep)  # on the CPU: host-side decisions without device syncs
        # {level: (full, face, lip)} -> the three per-level lists
        full, face, lip = (None, None, None) if masks is None else zip(*(masks[lvl] for lvl in sorted(masks)))
        video = conditioning.prepare_video(
            self.net, text_emb=text_emb, uncond_text_emb=empty_text, face_emb=face_emb, face_region=face_region,
            full_masks=full, face_masks=face, lip_masks=lip, keep=keep)
        clip = conditioning.prepare_clip(self.net, video, ref_latents=ref_latents, audio_windows=audio,
                                         pairing=self.pairing)
        return conditioning.model_output(self.net, video, clip, noisy, timesteps)


class DiffusionTask:
    """Shared setup and loss; subclasses set ``name``, build the ``dataset`` and implement :meth:`make_inputs`
    (the latents and conditioning of one micro-batch) and :meth:`validate`."""

    module: torch.nn.Module
    dataset: torch.utils.data.Dataset
    components = TRAIN_COMPONENTS  # the pretrained models the task reads

    def __init__(self, cfg):
        self.cfg = cfg
        self.name = cfg.task_name
        self.trainable: list = []

    # ----------------------------------------------------------------------------------------------- setup
    def setup(self, accelerator) -> None:
        cfg = self.cfg
        root = cfg.models.root
        require_training_models(root, self.components)
        self.dataset = self.build_dataset()  # reads the meta files: fail fast, before loading any weights
        self.device = accelerator.device
        self.weight_dtype = select_dtype(cfg.models.weight_dtype, self.device)
        torch.manual_seed(int(cfg.seed))  # freshly added modules get the same weights on every process and rerun
        net = self.build_network()
        self.trainable = set_trainable(net, list(cfg.train.trainable))
        if cfg.train.gradient_checkpointing:
            net.enable_gradient_checkpointing(True)
        net.to(self.device)  # fp32 master weights; accelerate autocasts the forward
        n_all = sum(p.numel() for p in net.parameters())
        accelerator.print(f"{self.name}: training {count(self.trainable) / 1e6:.2f} M of {n_all / 1e6:.2f} M "
                          f"parameters ({', '.join(cfg.train.trainable)})")
        self.latents = VaeCodec(load_vae(root, self.device, self.weight_dtype), scaling_factor=self.vae_scaling_factor())
        self.text = PromptEncoder(root, self.device, self.weight_dtype, cfg.text.cache_size)
        self.schedule = self.noise_schedule()
        self.scheduler = noise_mod.make_train_scheduler(self.schedule)
        self.module = self.build_module(net)

    def build_dataset(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def build_network(self):
        """The EmoCASTNet to train (seeded; trainable groups are set afterwards)."""
        return build_training_net(self.cfg.models)

    def vae_scaling_factor(self) -> float | None:
        """The latent scaling the run trains with (None: the VAE config's)."""
        return None

    def noise_schedule(self):
        return noise_mod.train_schedule(self.cfg.noise)

    def build_module(self, net) -> torch.nn.Module:
        """The training module around ``net`` (its ``net`` child is the export)."""
        return StepModule(net, self.cfg.train.reference_pairing)

    def trainable_parameters(self):
        return self.trainable

    def export_net(self, module):
        return module.net

    def card(self, step: int) -> CheckpointCard:
        """The checkpoint card of this run's weights after ``step`` optimizer steps."""
        return run_card(self.cfg, step, self.schedule, self.latents.scaling_factor)

    def after_optimizer_step(self, module) -> None:
        """Called after every optimizer step with the unwrapped training module (distillation: the EMA target)."""

    # ----------------------------------------------------------------------------------------------- loss
    def encode_latents(self, pixels: torch.Tensor, generator=None, target: bool = False) -> torch.Tensor:
        """Training latents in float32: targets sample the VAE posterior (``noise.target_latents: sample``), the
        reference and motion frames take its mean (as the sampler does)."""
        sample = target and self.cfg.noise.target_latents == "sample"
        return self.latents.encode(pixels, sample=sample, generator=generator).float()

    def text_inputs(self, prompts) -> dict:
        return {"text_emb": self.text.encode(list(prompts)), "empty_text": self.text.empty()}

    def noise_and_target(self, latents, generator):
        b = latents.shape[0]
        noise = noise_mod.sample_noise(latents, float(self.cfg.noise.offset), generator)
        t = noise_mod.sample_timesteps(b, self.scheduler.config.num_train_timesteps, generator, latents.device)
        noisy, target = noise_mod.noisy_and_target(self.scheduler, latents, noise, t)
        return noisy, target, t

    def compute_loss(self, module, batch, generator):
        """``(loss, per-sample MSE)`` of one micro-batch; all randomness from ``generator``."""
        b = len(batch["sample_id"])
        keep = draw_keep(b, self.cfg.dropout, generator)
        noisy, target, t, inputs = self.make_inputs(batch, generator)
        pred = module(noisy, t, keep=keep.as_dict(), **inputs)
        weights = min_snr_weights(snr(self.scheduler.alphas_cumprod, t), self.cfg.noise.snr_gamma,
                                  self.scheduler.config.prediction_type)
        return diffusion_loss(pred, target, weights)

    def make_inputs(self, batch, generator):  # pragma: no cover - abstract
        raise NotImplementedError

    def validate(self, module, step, out_dir):  # pragma: no cover - abstract
        raise NotImplementedError


def to_device(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], torch.Tensor):
        return type(x)(to_device(v, device) for v in x)
    return x
