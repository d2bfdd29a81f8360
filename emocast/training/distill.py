"""Consistency distillation: a few-step student of an EmoCAST teacher (``scripts/train_distill.py``).

The teacher is a frozen EmoCAST net read with its checkpoint card (``models.teacher``); the student starts as its
copy plus a zero-initialised guidance-scale embedding (``NetConfig.guidance_embed_dim``, see
:mod:`emocast.models.denoising_unet`), so before training it predicts exactly what the teacher's conditional row
predicts. One micro-step, per clip of stage-2 data (target frames + motion frames, the stage-2 conditioning and
dropout, drawn from the step's generator):

1. draw a grid index ``n`` of the skipping-step grid (:class:`ConsistencyGrid`: the teacher sampler's timesteps at
   ``distill.solver_steps`` = N steps; 40: 999, 974, ..., 24, 25 apart), a guidance scale
   ``w ~ U[w_min, w_max]`` and noise; ``x = add_noise(latents, noise, t_n)``;
2. **teacher step** (no gradient): solve the teacher's probability-flow ODE from ``t_n`` to the next grid timestep
   ``t_{n+1}`` (after 24: the clean end, ᾱ = 1) with ``distill.teacher_substeps`` DDIM steps of its *guided*
   prediction at ``w`` — rows [unconditional, conditional] mixed by :func:`~emocast.pipelines.conditioning.guide`,
   exactly the teacher sampler's step;
3. **target**: the EMA target network's consistency function at ``(x_{n+1}, t_{n+1}, w)``; at the clean end the
   boundary condition gives the teacher's solution itself;
4. **student**: its consistency function at ``(x, t_n, w)``: one row, ``w`` as input; loss = pseudo-Huber (or
   squared) distance to the target; after each optimizer step the target moves towards the student
   (``distill.ema_decay``).

The consistency function is the prediction's clean estimate x̂₀ (v-prediction: ``√ᾱ·x − √(1−ᾱ)·v``): the
trajectory ends at ᾱ = 1, where x̂₀ = x, so the boundary condition holds by construction, and sampling the student
is plain DDIM on its one-row prediction (each DDIM step is then the deterministic multistep consistency update:
the clean estimate carried to the next timestep with the noise it implies). ``--preset turbo`` runs its card's
``steps``; with the 40-step grid, 1, 2, 4, 5 and 8 steps land on grid timesteps.

Every network call is the step owner's (:mod:`emocast.pipelines.conditioning`): the student's frozen modules
build the conditioning once per clip and the teacher's and target's denoising UNets run on it
(``model_output(..., unet=...)``); only the denoising UNet trains (``train.trainable`` ⊆
:data:`~emocast.training.config.DISTILL_GROUPS`).

The teacher's denoising UNet is held outside the module's state (frozen, reloaded from ``models.teacher`` on every
start, never written into checkpoints); the EMA target is a child of the training module, so checkpoints carry it
and a resumed run continues exactly. The export (``final/``) is the student alone, with a card saying
``sampler: consistency``, its default step count, the skipping-step grid and the guidance range.
"""
from __future__ import annotations

import copy
import dataclasses
import logging

import torch
from torch import nn

from ..config import config_hash
from ..errors import CheckpointError, ConfigError
from ..pipelines import conditioning
from ..pipelines.card import CheckpointCard, read_card, resolve
from ..pipelines.conditioning import CONDITIONS, Keep
from ..pipelines.scheduler import make_scheduler
from .common import resolve_init_checkpoint
from .dropout import draw_keep
from .stage2 import Stage2Task

log = logging.getLogger("emocast.training")
DISTILL_COMPONENTS = ("sd-vae-ft-mse", "clip-vit-large-patch14")
END = -1  # the "timestep" after the last grid timestep: the clean end of the trajectory (ᾱ = 1)


class ConsistencyGrid:
    """The skipping-step grid of a schedule and the per-clip math on it (every clip has its own timestep).

    ``timesteps`` (N,) descending and ``next`` (N,) (the following grid timestep, :data:`END` after the last) are
    the teacher's sampler's timesteps at N steps (:func:`~emocast.pipelines.scheduler.make_scheduler`; trailing
    spacing: 999, 974, ..., 24 for N = 40), whose ``add_noise`` and ᾱ table (with the final ᾱ = 1) are used."""

    def __init__(self, schedule, solver_steps: int, device=None):
        self.scheduler = make_scheduler(schedule)
        self.scheduler.set_timesteps(int(solver_steps))
        self.timesteps = self.scheduler.timesteps.to(device)
        self.next = torch.cat([self.timesteps[1:], self.timesteps.new_tensor([END])])
        self.alphas = self.scheduler.alphas_cumprod.to(device=device, dtype=torch.float64)
        self.final_alpha = float(self.scheduler.final_alpha_cumprod)
        self.prediction_type = self.scheduler.config.prediction_type

    def __len__(self) -> int:
        return len(self.timesteps)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ of timesteps ``t`` (B,), ``END`` -> the final ᾱ (1); float64 for the solver's arithmetic."""
        t = t.to(self.alphas.device)
        return torch.where(t >= 0, self.alphas[t.clamp(min=0)], torch.full_like(self.alphas[:1], self.final_alpha))

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(latents, noise, t)

    def _split(self, x: torch.Tensor, out: torch.Tensor, t: torch.Tensor):
        """(x̂₀, ε̂) of a network output ``out`` at latents ``x`` and timesteps ``t`` (float64)."""
        a = self.alpha(t).to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
        sa, sb = a.sqrt(), (1 - a).sqrt()
        x, out = x.double(), out.double()
        if self.prediction_type == "v_prediction":
            return sa * x - sb * out, sa * out + sb * x
        if self.prediction_type == "epsilon":
            return (x - sb * out) / sa, out
        raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")

    def ddim_step(self, x: torch.Tensor, out: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step (η = 0) per clip from ``t`` to ``t_next`` — the teacher sampler's update
        (``DDIMScheduler.step``) with a timestep per clip."""
        x0, eps = self._split(x, out, t)
        a = self.alpha(t_next).to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
        return (a.sqrt() * x0 + (1 - a).sqrt() * eps).to(x.dtype)

    def consistency(self, x: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The consistency function: the clean estimate x̂₀ of the prediction ``out`` at ``(x, t)`` — what a DDIM
        step of the sampler computes. It meets the boundary condition at the trajectory's clean end by construction
        (ᾱ = 1: x̂₀ = x), so the student's prediction is the end of the teacher's trajectory through ``x``."""
        return self._split(x, out, t)[0].to(x.dtype)

    def substeps(self, t: torch.Tensor, t_next: torch.Tensor, count: int) -> list[torch.Tensor]:
        """``count + 1`` integer timesteps from ``t`` to ``t_next`` (the teacher's multistep solve of one interval)."""
        return [t if j == 0 else t_next if j == count else
                torch.round(t + (t_next - t) * (j / count)).long() for j in range(count + 1)]


SHARED = ("empty_text",)  # step inputs with one row for every clip


def _rows(x, pick):
    """``pick`` applied to every per-clip tensor of a step input (tensors, dicts and lists of them)."""
    if isinstance(x, torch.Tensor):
        return pick(x)
    if isinstance(x, dict):
        return {k: v if k in SHARED else _rows(v, pick) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_rows(v, pick) for v in x)
    return x


def _take(x, rows: slice):
    """The clips ``rows`` of a step input."""
    return _rows(x, lambda t: t[rows])


def _twice(x):
    """A step input for the [unconditional, conditional] rows of every clip: its rows twice."""
    return _rows(x, lambda t: torch.cat([t, t]))


class DistillModule(nn.Module):
    """The network work of one distillation micro-batch. ``net`` is the student (its state dict is the export),
    ``target`` the EMA target network's denoising UNet; the teacher's frozen denoising UNet is not a child."""

    def __init__(self, net, teacher_unet: nn.Module, grid: ConsistencyGrid, pairing: str = "matched",
                 teacher_substeps: int = 1):
        super().__init__()
        self.net = net
        self.target = copy.deepcopy(net.denoising_unet).requires_grad_(False)
        # not registered as a child: frozen, reloaded from models.teacher at every start, kept out of checkpoints
        object.__setattr__(self, "teacher", teacher_unet.requires_grad_(False).eval())
        self.grid, self.pairing, self.teacher_substeps = grid, pairing, int(teacher_substeps)

    def train(self, mode: bool = True):
        super().train(mode)
        self.target.eval()  # no dropout in the target, as in the teacher
        return self

    @torch.no_grad()
    def update_target(self, decay: float) -> None:
        """EMA of the student's trainable weights into the target: ``target ← decay·target + (1 − decay)·student``."""
        for p, q in zip(self.net.denoising_unet.parameters(), self.target.parameters()):
            if p.requires_grad:
                q.lerp_(p.detach(), 1.0 - float(decay))

    def forward(self, latents, noise, index, w, *, keep: dict, masks, **inputs):
        """``(student, target)`` consistency-function values ``(B, 4, F, h, w)`` for clean ``latents`` (B, 4, F,
        h, w), ``noise``, grid indices ``index`` (B,), guidance scales ``w`` (B,), the conditions each clip keeps
        and the stage-2 step inputs. With ``release`` pairing each clip is its own step, so the teacher's rows are
        exactly its sampler's [unconditional, conditional] (the released cross-wiring is per step)."""
        b = latents.shape[0]
        size = b if self.pairing == "matched" else 1
        outs = [self._clips(slice(i, i + size), latents, noise, index, w, keep, masks, inputs)
                for i in range(0, b, size)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def _clips(self, rows, latents, noise, index, w, keep, masks, inputs):
        grid = self.grid
        keep = Keep(**{c: keep[c][rows] for c in CONDITIONS})
        x0, eps, w = latents[rows], noise[rows], w[rows]
        t, t_next = grid.timesteps[index[rows]], grid.next[index[rows]]
        step = {k: _take(v, rows) for k, v in inputs.items()}
        per_level = [[m[i] for _, m in sorted(_take(masks, rows).items())] for i in range(3)]
        student = self.conditioning(step, per_level, keep)
        none = torch.zeros(keep.batch, dtype=torch.bool, device=x0.device)
        pair = Keep(**{c: torch.cat([none, getattr(keep, c)]) for c in CONDITIONS})  # [uncond x n, cond x n]
        x = grid.add_noise(x0, eps, t)
        with torch.no_grad():
            teacher = self.conditioning(_twice(step), _twice(per_level), pair)
            y = self.teacher_solve(teacher, x, t, t_next, w)
            end = (t_next == END).reshape(-1, *([1] * (y.dim() - 1)))
            target = torch.where(end, y, self.consistency(student, y, t_next.clamp(min=0), w, unet=self.target))
        return self.consistency(student, x, t, w), target

    def conditioning(self, step: dict, per_level, keep: Keep):
        """``(video, clip)`` conditioning of the step's rows ``keep`` (the student's frozen modules; the teacher's
        are the same weights)."""
        video = conditioning.prepare_video(
            self.net, text_emb=step["text_emb"], uncond_text_emb=step["empty_text"], face_emb=step["face_emb"],
            face_region=step["face_region"], full_masks=per_level[0], face_masks=per_level[1],
            lip_masks=per_level[2], keep=keep)
        clip = conditioning.prepare_clip(self.net, video, ref_latents=step["ref_latents"],
                                         audio_windows=step["audio"], pairing=self.pairing)
        return video, clip

    def teacher_solve(self, rows, x, t, t_next, w) -> torch.Tensor:
        """The teacher step: ``x`` (n, 4, F, h, w) at timesteps ``t`` carried to ``t_next`` by
        ``teacher_substeps`` DDIM steps of the teacher's guided prediction at ``w`` (n,); ``rows`` = the
        conditioning of the [unconditional x n, conditional x n] rows."""
        times = self.grid.substeps(t, t_next, self.teacher_substeps)
        for s, s_next in zip(times[:-1], times[1:]):
            out = conditioning.model_output(self.net, *rows, torch.cat([x, x]), torch.cat([s, s]), unet=self.teacher)
            x = self.grid.ddim_step(x, conditioning.guide(out.float(), w), s, s_next)
        return x

    def consistency(self, rows, x, t, w, unet=None) -> torch.Tensor:
        """The consistency function of the student (or of ``unet``: the EMA target) on conditioning ``rows`` at
        ``(x, t)`` with guidance scale ``w`` (one row per clip)."""
        out = conditioning.model_output(self.net, *rows, x, t, guidance_scale=w, unet=unet)
        return self.grid.consistency(x, out.float(), t)


def distance(pred: torch.Tensor, target: torch.Tensor, loss: str, huber_c: float) -> torch.Tensor:
    """Per-clip distance ``(B,)``: mean over latent elements of the pseudo-Huber ``sqrt(d² + c²) − c`` or of ``d²``."""
    d = (pred.float() - target.float()).reshape(pred.shape[0], -1)
    if loss == "huber":
        return (torch.sqrt(d ** 2 + huber_c ** 2) - huber_c).mean(dim=1)
    return (d ** 2).mean(dim=1)


def read_teacher(path):
    """``(weights file, card, found)`` of ``models.teacher``; a student is refused (distil a teacher)."""
    ckpt = resolve_init_checkpoint(path, key="models.teacher")
    if ckpt is None:
        raise ConfigError("models.teacher is not set: give the EmoCAST checkpoint to distil (a stage-2 export "
                          "folder or the released net.pth)")
    card, found = read_card(ckpt)
    if card.sampler == "consistency":
        raise CheckpointError(f"models.teacher {ckpt} is already a consistency student (its card says sampler: "
                              "consistency); distil from the DDIM checkpoint it was made from")
    return ckpt, card, found


def make_student(teacher, guidance_embed_dim: int):
    """A student net: the teacher's architecture and weights plus a zero-initialised guidance embedding."""
    from ..models import build_net
    from ..models.loading import check_keys

    student = build_net(teacher.config.replace(guidance_embed_dim=int(guidance_embed_dim)))
    state = teacher.state_dict()
    own = student.state_dict()
    check_keys(state, own, "the teacher", "distil an EmoCAST net of the same architecture", allow_missing=True)
    missing = [k for k in own if k not in state]
    if any(not k.startswith("denoising_unet.guidance_embedding.") for k in missing):
        raise CheckpointError(f"the teacher lacks student keys {missing[:3]}")
    student.load_state_dict(state, strict=False)
    return student


class DistillTask(Stage2Task):
    """Consistency distillation on stage-2 data (see the module docstring); ``cfg`` is a ``DistillConfig``."""

    components = DISTILL_COMPONENTS

    def __init__(self, cfg):
        self.teacher_path, self.teacher_card, self.teacher_found = read_teacher(cfg.models.teacher)
        super().__init__(resolve_from_teacher(cfg, self.teacher_card, self.teacher_found))

    def build_network(self):
        """The student: the teacher's networks plus the guidance embedding; the teacher keeps its denoising UNet."""
        from ..models.loading import load_net

        card = self.teacher_card
        teacher = load_net(self.teacher_path, config=card.net if self.teacher_found else None, device="cpu",
                           dtype=torch.float32)
        net = make_student(teacher, self.cfg.distill.guidance_embed_dim)
        self.teacher_unet = teacher.denoising_unet.to(self.device)  # its other networks equal the student's
        log.info("%s: distilling %s (card: %s)", self.name, self.teacher_path,
                 "found" if self.teacher_found else "none, the release's settings")
        return net

    def vae_scaling_factor(self) -> float | None:
        return self.teacher_card.vae_scaling_factor if self.teacher_found else None

    def noise_schedule(self):
        return self.teacher_card.schedule

    def build_module(self, net) -> nn.Module:
        self.grid = ConsistencyGrid(self.schedule, self.cfg.distill.solver_steps, self.device)
        module = DistillModule(net, self.teacher_unet, self.grid, self.cfg.train.reference_pairing,
                               self.cfg.distill.teacher_substeps)
        del self.teacher_unet  # the module holds it
        return module

    def encode_latents(self, pixels, generator=None, target: bool = False):
        """Clean clip latents sample the VAE posterior; reference and motion frames take its mean (as sampling)."""
        return self.latents.encode(pixels, sample=target, generator=generator).float()

    def compute_loss(self, module, batch, generator):
        """``(loss, per-clip distance)`` of one micro-batch; every draw from ``generator`` in a fixed order."""
        d = self.cfg.distill
        b = len(batch["sample_id"])
        keep = draw_keep(b, self.cfg.dropout, generator)
        latents, inputs = self.clip_inputs(batch, generator)
        index = torch.randint(0, len(self.grid), (b,), generator=generator)
        lo, hi = d.guidance_range
        w = lo + (hi - lo) * torch.rand(b, generator=generator, dtype=torch.float64)
        noise = torch.randn(tuple(latents.shape), generator=generator, dtype=torch.float32)
        dev = self.device
        pred, target = module(latents, noise.to(dev), index.to(dev), w.float().to(dev),
                              keep={k: v.to(dev) for k, v in keep.as_dict().items()}, **inputs)
        per_clip = distance(pred, target, d.loss, d.huber_c)
        return per_clip.mean(), per_clip.detach()

    def after_optimizer_step(self, module) -> None:
        module.update_target(self.cfg.distill.ema_decay)

    def card(self, step: int) -> CheckpointCard:
        """The student's card: the teacher's sampling settings (as resolved for this run), ``sampler:
        consistency`` with its default steps, skipping-step grid and guidance range, and the provenance."""
        cfg, d = self.cfg, self.cfg.distill
        return dataclasses.replace(
            self.teacher_card, net=self.module.net.config.to_dict(), image_size=cfg.data.size,
            clip_length=cfg.data.n_sample_frames, motion_frames=cfg.data.n_motion_frames,
            audio_margin=cfg.data.audio_margin, schedule=self.schedule,
            vae_scaling_factor=float(self.latents.scaling_factor), reference_pairing=cfg.train.reference_pairing,
            sampler="consistency",
            sampler_options={"steps": d.steps, "solver_steps": d.solver_steps,
                             "guidance_range": [float(x) for x in d.guidance_range]},
            provenance={"producer": "emocast.training", "stage": "distill", "task": self.name, "step": int(step),
                        "config_hash": config_hash(cfg), "teacher": str(self.teacher_path),
                        "teacher_provenance": self.teacher_card.provenance})


def resolve_from_teacher(cfg, card, found: bool):
    """``cfg`` with its ``auto`` clip layout, resolution and pairing set from the teacher's card (an explicit value
    that contradicts the card wins, with one warning)."""
    d, t = cfg.data, cfg.train
    got = resolve(card, {"image_size": d.size, "clip_length": d.n_sample_frames, "motion_frames": d.n_motion_frames,
                         "audio_margin": d.audio_margin, "reference_pairing": t.reference_pairing},
                  found, where="the teacher's card")
    if got["image_size"] % 64:
        raise ConfigError(f"the teacher's image size {got['image_size']} is not a multiple of 64")
    data = dataclasses.replace(d, size=got["image_size"], n_sample_frames=got["clip_length"],
                               n_motion_frames=got["motion_frames"], audio_margin=got["audio_margin"])
    train = dataclasses.replace(t, reference_pairing=got["reference_pairing"])
    return dataclasses.replace(cfg, data=data, train=train)
