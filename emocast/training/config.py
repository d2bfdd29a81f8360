"""The training configs: one typed schema per entry point, whose defaults are the paper's recipe.

* :class:`Stage1Config` — ``scripts/train_stage1.py`` (image stage);
* :class:`Stage2Config` — ``scripts/train_stage2.py``; its defaults are the common base of the three video phases,
  and ``configs/train/stage2_phase{1,2,3}.yaml`` only say what a phase changes (datasets, trainable groups, steps,
  where it starts from and writes to);
* :class:`DistillConfig` — ``scripts/train_distill.py``: consistency distillation of a few-step student from a
  teacher checkpoint (its clip layout, resolution and pairing default to the teacher's card).

Load with :func:`emocast.config.load` (``-c`` YAML, flags, ``key=value`` overrides); unknown keys, wrong types and
impossible values fail with one message naming the key. ``python scripts/train_stage1.py --print_config`` shows
every key with its value; ``docs/config-reference.md`` lists them with their meaning.

Dataset meta files default to ``datasets/<name>/<name>_<stage>.json``: what ``scripts/extract_meta_info.py --root
datasets/<name>`` writes (see :func:`default_meta_path`), so the README's commands run in sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import option, section
from ..data.datasets import DatasetSpec
from ..errors import ConfigError

DTYPES = Literal["auto", "fp16", "bf16", "fp32"]


def default_meta_path(name: str, stage: str) -> str:
    """Where ``scripts/extract_meta_info.py --root datasets/<name>`` writes the ``stage`` meta file."""
    return f"datasets/{name}/{name}_{stage}.json"


# ---------------------------------------------------------------------------------------------------- sections
@dataclass
class ModelsConfig:
    root: str | None = option(None, "pretrained_models folder (null: $EMOCAST_MODELS, else ./pretrained_models)")
    net: Literal["sd15", "tiny"] = option("sd15", "architecture preset (tiny: the test kit's networks)")
    init_checkpoint: str | None = option(
        None, "net.pth / .safetensors / an export folder to start from (a previous stage's final/ or the released "
              "net.pth); every tensor it holds overrides the SD-1.5 + AnimateDiff initialisation")
    weight_dtype: DTYPES = option("auto", "dtype of the frozen VAE and CLIP (auto: fp16 on CUDA, fp32 on CPU)")


def _datasets(stage: str, weights: dict[str, float]):
    return lambda: [DatasetSpec(meta=default_meta_path(n, stage), weight=w) for n, w in weights.items()]


@dataclass
class DataConfig:
    size: int = option(512, "training resolution (multiple of 64; frames prepared at another size are resized)",
                       ge=64)
    batch_size: int = option(8, "samples per process and micro-step", ge=1)
    num_workers: int = option(4, "data loader worker processes", ge=0)
    neutral_ref_rate: float = option(1.0, "emotion-aware sampling: P(reference from a neutral video of the same "
                                          "identity) for an emotional target", ge=0, le=1)
    max_retries: int = option(50, "consecutive bad samples tolerated before the run stops", ge=1)

    def check(self) -> None:
        if self.size % 64:
            raise ConfigError(f"data.size must be a multiple of 64, got {self.size}")


@dataclass
class Stage1Data(DataConfig):
    datasets: list[DatasetSpec] = option(factory=_datasets("stage1", {"mead": 0.5, "etth_wild": 0.5}),
                                          help="meta files and mixture weights")
    sample_margin: int = option(30, "min frame distance between reference and target within one video", ge=0)


@dataclass
class Stage2Data(DataConfig):
    datasets: list[DatasetSpec] = option(
        factory=_datasets("stage2", {"etth_wild": 0.5, "mead": 0.25, "hdtf": 0.25}),
        help="meta files and mixture weights")
    batch_size: int = option(4, "samples per process and micro-step", ge=1)
    num_workers: int = option(8, "data loader worker processes", ge=0)
    neutral_ref_rate: float = option(0.0, "P(reference frame from a neutral video of the same identity)", ge=0, le=1)
    n_sample_frames: int = option(14, "frames per training clip", ge=1)
    n_motion_frames: int = option(2, "motion frames before the clip", ge=0)
    audio_margin: int = option(2, "audio window: wav2vec2 frames i-margin..i+margin", ge=0)
    start_ratio: float = option(0.05, "P(motion frames = copies of the reference, as in a video's first clip)",
                                ge=0, le=1)


@dataclass
class TrainSection:
    max_steps: int = option(30000, "optimizer steps", ge=1)
    gradient_accumulation_steps: int = option(1, "micro-steps per optimizer step", ge=1)
    max_grad_norm: float = option(1.0, "gradient clipping norm (0: off)", ge=0)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = option(
        "auto", "autocast dtype (auto: the accelerate launch config; plain python: no)")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (less memory)")
    find_unused_parameters: bool = option(True, "DDP: search the graph for parameters without gradient (needed "
                                                "when reference_unet or ip_adapter trains)")
    reference_pairing: Literal["matched", "release"] = option(
        "matched", "conditioning of the reference pass (matched: per sample; release: spec §5.3)")
    trainable: list[str] = option(
        factory=lambda: ["reference_unet", "denoising_spatial", "ip_adapter", "face_locator", "imageproj"],
        help="parameter groups of emocast.models.parameter_groups to train (docs/training.md)")
    resume_from: str = option("latest", "latest | none | a checkpoint folder")
    stop_at_step: int | None = option(None, "debug: stop after this step as if interrupted", ge=1)

    def check(self) -> None:
        from .params import check_groups

        check_groups(self.trainable)


@dataclass
class Stage2Train(TrainSection):
    gradient_checkpointing: bool = option(True, "recompute activations in the backward pass (less memory)")
    find_unused_parameters: bool = option(False, "DDP: search the graph for parameters without gradient (true "
                                                 "if reference_unet or ip_adapter is trained)")
    trainable: list[str] = option(factory=lambda: ["motion_modules", "audio_modules", "audio_emo", "audioproj"],
                                  help="parameter groups of emocast.models.parameter_groups to train")


@dataclass
class OptimizerConfig:
    name: Literal["adamw", "adamw8bit"] = option("adamw", "adamw (torch) | adamw8bit (bitsandbytes)")
    lr: float = option(1e-5, "learning rate", gt=0)
    betas: list[float] = option(factory=lambda: [0.9, 0.999], help="Adam betas")
    weight_decay: float = option(1e-2, "decoupled weight decay", ge=0)
    eps: float = option(1e-8, "Adam epsilon", gt=0)

    def check(self) -> None:
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), got {self.betas}")


@dataclass
class LRSchedulerConfig:
    name: str = option("constant_with_warmup", "a diffusers.optimization scheduler name")
    warmup_steps: int = option(1, "warm-up steps", ge=0)

    def check(self) -> None:
        from diffusers.optimization import SchedulerType

        names = [s.value for s in SchedulerType]
        if self.name not in names:
            raise ConfigError(f"lr_scheduler.name={self.name!r} is not a diffusers scheduler; use one of {names}")


@dataclass
class NoiseConfig:
    beta_schedule: Literal["linear", "scaled_linear"] = option(
        "linear", "linear = the released sampler's schedule; scaled_linear = Hallo's training schedule")
    zero_snr: bool = option(True, "zero-terminal-SNR rescale of the betas (as the sampler)")
    prediction_type: Literal["v_prediction", "epsilon"] = option("v_prediction", "what the network predicts")
    offset: float = option(0.05, "noise offset (per sample and channel)", ge=0)
    snr_gamma: float | None = option(5.0, "Min-SNR-γ per-sample weighting; null or 0 disables", ge=0)
    target_latents: Literal["sample", "mean"] = option("sample", "VAE posterior sample or mean for target frames")

    def check(self) -> None:
        from ..pipelines.scheduler import check_samplable
        from .noise import train_schedule

        check_samplable(train_schedule(self), "add noise.zero_snr=false, or keep noise.prediction_type=v_prediction")


@dataclass
class DropoutConfig:
    reference: float = option(0.05, "P(no reference tokens in self-attention)", ge=0, le=1)
    audio: float = option(0.0, "P(zero audio tokens)", ge=0, le=1)
    text: float = option(0.05, "P(empty prompt)", ge=0, le=1)
    face: float = option(0.05, "P(identity tokens = imageproj(0))", ge=0, le=1)
    face_region: float = option(0.0, "P(FaceLocator feature zeroed)", ge=0, le=1)
    all: float = option(0.05, "P(everything at once = the sampler's unconditional row)", ge=0, le=1)


@dataclass
class Stage2Dropout(DropoutConfig):
    audio: float = option(0.05, "P(zero audio tokens)", ge=0, le=1)


@dataclass
class TextConfig:
    cache_size: int = option(4096, "CLIP embeddings cached per prompt (CPU)", ge=1)


@dataclass
class CheckpointingConfig:
    every: int = option(500, "optimizer steps between checkpoints (0: only at the end)", ge=0)
    keep_last: int = option(3, "checkpoints kept (0: all)", ge=0)


@dataclass
class ExportConfig:
    dtype: Literal["fp32", "fp16", "bf16"] = option("fp32", "dtype of final/net.pth and net.safetensors")
    safetensors: bool = option(True, "also write final/net.safetensors")


@dataclass
class LoggingConfig:
    tracker: Literal["tensorboard", "jsonl", "none"] = option(
        "tensorboard", "tensorboard | jsonl | none (metrics.jsonl is always written)")
    every: int = option(10, "optimizer steps between metric rows", ge=1)


@dataclass
class ValidationExample:
    sample: str | None = option(None, "a prepared sample folder <dataset>/samples/<video_id> (reference = its "
                                      "first frame, its audio features and masks)")
    image: str | None = option(None, "stage 2: a raw portrait, rendered with the inference pipeline")
    audio: str | None = option(None, "stage 2: the speech for `image`")
    prompt: str | None = option(None, "emotive prompt (default: the sample's first prompt)")

    @classmethod
    def __config_coerce__(cls, value):
        return {"sample": value} if isinstance(value, str) else value

    def check(self) -> None:
        if bool(self.sample) == bool(self.image or self.audio) or (self.image is None) != (self.audio is None):
            raise ConfigError("validation.examples: each example is either {sample: <prepared sample folder>} or "
                              "{image: <portrait>, audio: <speech>} (plus an optional prompt)")


@dataclass
class ValidationConfig:
    every: int = option(500, "optimizer steps between validation renders (0: never)", ge=0)
    at_start: bool = option(False, "also render before the first step")
    steps: int = option(20, "DDIM steps of the previews", ge=1)
    cfg_scale: float = option(3.5, "guidance scale of the previews")
    seed: int = option(42, "noise seed of the previews")
    examples: list[ValidationExample] = option(factory=list, help="what to render")


@dataclass
class Stage2Validation(ValidationConfig):
    every: int = option(1000, "optimizer steps between validation renders (0: never)", ge=0)
    num_frames: int | None = option(None, "frames of the preview clip (null: data.n_sample_frames)", ge=1)


# ---------------------------------------------------------------------------------------------------- stages
@dataclass
class TrainConfig:
    """What every training stage shares (field order = the order of --print_config)."""

    stage: str = option("", "which script trains this config")
    output_dir: str = option("exp_output/run", "checkpoints/, logs/, validation/ and final/ go here")
    seed: int = option(42, "seed of weights init, data stream, noise and dropout")
    models: ModelsConfig = section(ModelsConfig)
    data: DataConfig = section(DataConfig)
    train: TrainSection = section(TrainSection)
    optimizer: OptimizerConfig = section(OptimizerConfig)
    lr_scheduler: LRSchedulerConfig = section(LRSchedulerConfig)
    noise: NoiseConfig = section(NoiseConfig)
    dropout: DropoutConfig = section(DropoutConfig)
    text: TextConfig = section(TextConfig)
    checkpointing: CheckpointingConfig = section(CheckpointingConfig)
    export: ExportConfig = section(ExportConfig)
    logging: LoggingConfig = section(LoggingConfig)
    validation: ValidationConfig = section(ValidationConfig)

    @property
    def task_name(self) -> str:
        return self.stage

    def check(self) -> None:
        bad = [g for g in ("reference_unet", "ip_adapter") if g in self.train.trainable]
        if bad and not self.train.find_unused_parameters:
            raise ConfigError(f"train.find_unused_parameters=false with {bad} in train.trainable: some of their "
                              "parameters never get a gradient (the ReferenceNet's last block), which DDP rejects; "
                              "set train.find_unused_parameters=true")


@dataclass
class Stage1Config(TrainConfig):
    """Stage 1 — emotion-conditioned image-to-image (paper §3.4.1)."""

    stage: Literal["stage1"] = option("stage1", "which script trains this config")
    output_dir: str = option("exp_output/stage1", "checkpoints/, logs/, validation/ and final/ go here")
    data: Stage1Data = section(Stage1Data)
    train: TrainSection = section(TrainSection)
    dropout: DropoutConfig = section(DropoutConfig)
    validation: ValidationConfig = section(ValidationConfig)

    def check(self) -> None:
        super().check()
        raw = [e for e in self.validation.examples if e.image]
        if raw:
            raise ConfigError("validation.examples: stage 1 renders prepared samples only ({sample: <folder>}); "
                              f"{raw[0].image} is a raw image")


@dataclass
class Stage2Config(TrainConfig):
    """Stage 2 — the video stage; a phase file overrides what its phase changes (paper §3.4.2)."""

    stage: Literal["stage2"] = option("stage2", "which script trains this config")
    phase: int | None = option(None, "1 generalization, 2 emotion refinement, 3 lip-sync (names the run)", ge=1, le=3)
    output_dir: str = option("exp_output/stage2", "checkpoints/, logs/, validation/ and final/ go here")
    data: Stage2Data = section(Stage2Data)
    train: Stage2Train = section(Stage2Train)
    dropout: Stage2Dropout = section(Stage2Dropout)
    validation: Stage2Validation = section(Stage2Validation)

    @property
    def task_name(self) -> str:
        return f"stage2_phase{self.phase}" if self.phase is not None else "stage2"

    def check(self) -> None:
        super().check()
        if self.data.n_sample_frames < 2 and "motion_modules" in self.train.trainable:
            raise ConfigError("data.n_sample_frames must be at least 2 when motion_modules train (the temporal "
                              "attention needs several frames)")


# ---------------------------------------------------------------------------------------------------- distillation
AUTO = Literal["auto"]
#: groups a student may train: the denoising UNet's. The teacher, the EMA target and the student share the per-clip
#: conditioning (reference pass, projections, FaceLocator), computed once by the student's frozen modules
DISTILL_GROUPS = ("denoising_spatial", "motion_modules", "audio_modules", "audio_emo", "guidance_embedding")


@dataclass
class DistillModels:
    root: str | None = option(None, "pretrained_models folder (null: $EMOCAST_MODELS, else ./pretrained_models); "
                                    "distillation reads the VAE and CLIP from it")
    teacher: str = option("exp_output/stage2_phase3/final",
                          "the teacher: an EmoCAST net.pth / .safetensors / export folder (a stage-2 export or the "
                          "released net.pth), read with its checkpoint card net.json (none: the release's settings); "
                          "frozen, and the student starts as its copy")
    weight_dtype: DTYPES = option("auto", "dtype of the frozen VAE and CLIP (auto: fp16 on CUDA, fp32 on CPU)")


@dataclass
class DistillData(Stage2Data):
    datasets: list[DatasetSpec] = option(
        factory=_datasets("stage2", {"etth_wild": 0.5, "mead": 0.25, "hdtf": 0.25}),
        help="meta files and mixture weights (stage-2 clips with motion frames)")
    size: int | AUTO = option("auto", "training resolution, a multiple of 64 (auto: the teacher card's image_size)",
                              ge=64)
    n_sample_frames: int | AUTO = option("auto", "frames per clip (auto: the teacher card's clip_length)", ge=1)
    n_motion_frames: int | AUTO = option("auto", "motion frames before the clip (auto: the teacher card's)", ge=0)
    audio_margin: int | AUTO = option("auto", "audio window: wav2vec2 frames i-margin..i+margin (auto: the teacher "
                                              "card's)", ge=0)

    def check(self) -> None:
        if self.size != "auto" and self.size % 64:
            raise ConfigError(f"data.size must be a multiple of 64, got {self.size}")


@dataclass
class DistillTrain(Stage2Train):
    max_steps: int = option(8000, "optimizer steps", ge=1)
    trainable: list[str] = option(factory=lambda: list(DISTILL_GROUPS),
                                  help=f"parameter groups of the student to train (of {', '.join(DISTILL_GROUPS)})")
    reference_pairing: Literal["auto", "matched", "release"] = option(
        "auto", "conditioning of the reference pass (auto: the teacher card's); with release, each clip is its own "
                "step so the teacher's rows are exactly its sampler's")


@dataclass
class DistillOptimizer(OptimizerConfig):
    lr: float = option(1e-6, "learning rate (diffusers' full-model LCM recipe)", gt=0)
    weight_decay: float = option(0.0, "decoupled weight decay", ge=0)


@dataclass
class DistillSection:
    solver_steps: int = option(40, "skipping-step grid: the teacher's probability-flow ODE is solved between "
                                   "neighbouring timesteps of its sampler at this many steps (40: the teacher's own "
                                   "DDIM timesteps 999, 974, ..., 24, 25 apart); the student's few steps lie on it "
                                   "when they divide it", ge=2)
    teacher_substeps: int = option(1, "guided DDIM steps of the teacher per grid interval (a multistep solve; 1: "
                                      "one step per interval, as LCM)", ge=1)
    guidance_range: list[float] = option(factory=lambda: [2.0, 5.0],
                                         help="[w_min, w_max]: the guidance scales drawn per clip, uniformly; the "
                                              "teacher's target is its guided prediction at w, the student gets w "
                                              "as input")
    guidance_embed_dim: int = option(256, "sinusoidal features of w in the student's guidance embedding", ge=2)
    ema_decay: float = option(0.95, "decay of the EMA target network (updated after every optimizer step)",
                              ge=0, lt=1)
    loss: Literal["huber", "l2"] = option("huber", "distance between student and target: pseudo-Huber or squared "
                                                   "error, per latent element")
    huber_c: float = option(1e-3, "pseudo-Huber constant c: sqrt(d^2 + c^2) - c", gt=0)
    steps: int = option(4, "the student's default sampling steps (on its card; inference --preset turbo uses it "
                           "unless --steps)", ge=1, le=8)

    def check(self) -> None:
        lo_hi = self.guidance_range
        if len(lo_hi) != 2 or not lo_hi[0] <= lo_hi[1] or lo_hi[0] < 0:
            raise ConfigError(f"distill.guidance_range must be [w_min, w_max] with 0 <= w_min <= w_max, got {lo_hi}")
        if self.steps > self.solver_steps:
            raise ConfigError(f"distill.steps ({self.steps}) cannot exceed distill.solver_steps ({self.solver_steps})")
        if self.guidance_embed_dim % 2:
            raise ConfigError(f"distill.guidance_embed_dim must be even, got {self.guidance_embed_dim}")


@dataclass
class DistillValidation(Stage2Validation):
    steps: int = option(4, "consistency steps of the previews", ge=1, le=8)
    cfg_scale: float = option(3.5, "guidance scale w given to the student")


@dataclass
class DistillConfig:
    """Consistency distillation of a few-step student from an EmoCAST teacher (docs/training.md §8)."""

    stage: Literal["distill"] = option("distill", "which script trains this config")
    output_dir: str = option("exp_output/distill", "checkpoints/, logs/, validation/ and final/ go here")
    seed: int = option(42, "seed of the guidance embedding's init, data stream, noise, timesteps, w and dropout")
    models: DistillModels = section(DistillModels)
    data: DistillData = section(DistillData)
    train: DistillTrain = section(DistillTrain)
    optimizer: DistillOptimizer = section(DistillOptimizer)
    lr_scheduler: LRSchedulerConfig = section(LRSchedulerConfig)
    distill: DistillSection = section(DistillSection, "the consistency distillation")
    dropout: Stage2Dropout = section(Stage2Dropout, "conditions dropped from the conditional rows (teacher's "
                                                    "conditional row and student alike)")
    text: TextConfig = section(TextConfig)
    checkpointing: CheckpointingConfig = section(CheckpointingConfig)
    export: ExportConfig = section(ExportConfig)
    logging: LoggingConfig = section(LoggingConfig)
    validation: DistillValidation = section(DistillValidation)

    @property
    def task_name(self) -> str:
        return self.stage

    def check(self) -> None:
        other = [g for g in self.train.trainable if g not in DISTILL_GROUPS]
        if other:
            raise ConfigError(f"train.trainable lists {other}: a student trains only its denoising UNet "
                              f"({', '.join(DISTILL_GROUPS)}); the per-clip conditioning stays the teacher's")
        lo, hi = self.distill.guidance_range
        if hi > lo and "guidance_embedding" not in self.train.trainable:
            raise ConfigError("train.trainable must include guidance_embedding when distill.guidance_range spans "
                              "several scales: the student learns the guidance scale through it")
        if self.data.n_sample_frames != "auto" and self.data.n_sample_frames < 2 \
                and "motion_modules" in self.train.trainable:
            raise ConfigError("data.n_sample_frames must be at least 2 when motion_modules train")


SCHEMAS = {"stage1": Stage1Config, "stage2": Stage2Config, "distill": DistillConfig}
