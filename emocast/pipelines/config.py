"""The inference config (``scripts/inference.py``): one typed schema whose defaults reproduce the release.

Settings the checkpoint card knows (resolution, frames per clip, motion frames, reference pairing, the noise
schedule) default to ``auto`` = the card's value; an explicit value wins with a one-line warning when it
contradicts the card. ``preset`` (:mod:`emocast.pipelines.presets`) is the first layer over the defaults:
``release`` (DDIM with classifier-free guidance, 40 steps), ``fast``/``faster`` (fewer solver steps, guidance
interval, DeepCache) or ``turbo`` (a consistency-distilled student: its card's few steps, one row with the guidance
folded in). ``python scripts/inference.py --print_config`` shows the effective values;
``docs/config-reference.md`` lists every key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import option, section
from ..errors import ConfigError
from .scheduler import DEFAULT_CFG_SCALE, DEFAULT_SEED, DEFAULT_STEPS

AUTO = Literal["auto"]
TURBO_MAX_STEPS = 8  # --preset turbo: a consistency student samples in 1-8 steps
DEFAULT_PROMPT = "A person is talking with neutral emotion."

#: keys of the released inference YAML that EmoCAST does not need (every model comes from --models); a -c file
#: holding them is accepted with one warning naming them
RELEASE_KEYS = ("weight_dtype", "base_model_path", "motion_module_path", "face_analysis", "wav2vec",
                "audio_separator", "vae", "save_path", "unet_additional_kwargs", "enable_zero_snr",
                "noise_scheduler_kwargs", "sampler", "exp_name")
RELEASE_DATA_KEYS = ("source_image", "driving_audio", "export_video")  # under data: (sizes the release fixes)


def strip_release_keys(data: dict) -> list[str]:
    """Remove the released config's keys that EmoCAST does not read from a -c mapping (in place); returns them."""
    dropped = [k for k in RELEASE_KEYS if k in data]
    for k in dropped:
        del data[k]
    sub = data.get("data")
    if isinstance(sub, dict):
        for k in RELEASE_DATA_KEYS:
            if isinstance(sub.get(k), dict):
                del sub[k]
                dropped.append(f"data.{k}")
    return dropped


@dataclass
class InferenceData:
    n_motion_frames: int | AUTO = option("auto", "frames carried from one clip to the next (auto: the card's; "
                                                 "release 2)", ge=0)
    n_sample_frames: int | AUTO = option("auto", "frames per clip, also the audio padding unit (auto: the card's; "
                                                 "release 16)", ge=1)
    size: int | AUTO = option("auto", "square working resolution, a multiple of 64 (auto: the card's; release 512)",
                              ge=64)

    def check(self) -> None:
        if self.size != "auto" and self.size % 64:
            raise ConfigError(f"data.size must be a multiple of 64, got {self.size}")


@dataclass
class PreprocessConfig:
    separate_vocals: bool = option(True, "separate the vocals before wav2vec2 (--no-separator: false)")
    square_crop: bool = option(True, "crop/pad a non-square image to a square around the face (false: resize)")
    use_whole_image: bool = option(False, "no face found -> animate the whole image (--use_whole_image)")
    min_face_size: float = option(32.0, "reject faces smaller than this many pixels across ...", ge=0)
    min_face_fraction: float = option(0.05, "... or than this fraction of the image's shorter side", ge=0, le=1)


@dataclass
class ScheduleOverrides:
    prediction_type: Literal["auto", "v_prediction", "epsilon"] = option("auto", "auto: the card's")
    beta_schedule: Literal["auto", "linear", "scaled_linear"] = option("auto", "auto: the card's")
    rescale_betas_zero_snr: bool | AUTO = option("auto", "auto: the card's")
    timestep_spacing: Literal["auto", "trailing", "leading", "linspace"] = option("auto", "auto: the card's")


@dataclass
class InferenceConfig:
    source_image: str | None = option(None, "portrait (any format PIL reads)")
    driving_audio: str | None = option(None, "speech (anything ffmpeg reads)")
    prompt_emo: str = option(DEFAULT_PROMPT, "emotive text description")
    outputs: str = option("outputs", "folder for <image-stem>_<audio-stem>.mp4")
    output: str | None = option(None, "exact output file (overrides outputs)")
    models_root: str | None = option(None, "the pretrained_models folder (null: $EMOCAST_MODELS, else "
                                           "./pretrained_models)")
    checkpoint: str | None = option(None, "net.pth or a folder holding it (null: <models_root>/emocast/net.pth)")
    audio_ckpt_dir: str | None = option(None, "the released config's name for `checkpoint`")
    device: str = option("auto", "auto (cuda when available, else cpu) | cpu | cuda | cuda:N")
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = option("auto", "auto: fp16 on cuda, fp32 on cpu")
    seed: int = option(DEFAULT_SEED, "seed of the CPU noise generator, seeded once per video")
    inference_steps: int | AUTO = option("auto", f"denoising steps (auto: {DEFAULT_STEPS}; turbo: the student card's "
                                                 f"steps, 1-{TURBO_MAX_STEPS})", ge=1)
    cfg_scale: float = option(DEFAULT_CFG_SCALE, "classifier-free guidance; <= 1 disables it (one row, 2x faster); "
                                                 "turbo: the guidance scale w the student takes as input")
    audio_guidance: float | None = option(None, "separate guidance: scale of the audio (and identity) against "
                                                "nothing (null: cfg_scale); with emotion_guidance a third row "
                                                "(docs/inference.md#emotion-control)")
    emotion_guidance: float | None = option(None, "separate guidance: scale of the emotive text on top of the audio "
                                                  "(null: cfg_scale); equal scales = cfg_scale exactly")
    emotion_timeline: str | None = option(None, "file of an emotion timeline (.json, .srt, or 'SECONDS: prompt' "
                                                "lines); replaces prompt_emo (which also takes a timeline: "
                                                "'0: calm. | 3.2: furious.')")
    emotion_transition: float = option(0.5, "seconds over which the text conditioning blends from one timeline "
                                            "entry to the next (centred on the entry's time; 0 = a hard switch)",
                                       ge=0)
    emotion_strength: float = option(1.0, "intensity: 1 = the prompt as written, 0 = neutral_prompt, < 1 "
                                          "interpolates, > 1 extrapolates (safe range 0-2)", ge=0, le=3)
    neutral_prompt: str = option(DEFAULT_PROMPT, "the neutral end of emotion_strength")
    pose_weight: float = option(1.0, "weight of the pose (background) audio branch")
    face_weight: float = option(1.0, "weight of the face audio branch")
    lip_weight: float = option(1.0, "weight of the lip audio branch")
    face_expand_ratio: float = option(1.2, "face box expansion for the FaceLocator mask and the soft masks", gt=0)
    reference_pairing: Literal["auto", "release", "matched"] = option(
        "auto", "auto: the card's (our trainer: matched; the released net.pth: release, spec §5.3)")
    vae_decode_batch: int = option(8, "frames per VAE decode call (lower it to save GPU memory)", ge=1)
    preset: str = option("release", "release (the released settings and outputs) | fast | faster (speed presets: "
                                    "they set keys below, explicit values win) | turbo (a consistency-distilled "
                                    "student checkpoint, its card's 1-8 steps, one row); docs/inference.md")
    solver: Literal["ddim", "dpmsolver++", "unipc"] = option(
        "ddim", "ddim (the release) or a multistep solver of the same zero-SNR v-prediction ODE for fewer steps")
    guidance_interval: list[float] = option([0.0, 1.0], "[start, end]: classifier-free guidance only on the steps "
                                                        "start <= i/steps < end; the others run the conditional row "
                                                        "alone")
    deep_cache_interval: int = option(1, "DeepCache: run the deep UNet blocks every k-th step and reuse their "
                                         "output in between (1 = off)", ge=1)
    deep_cache_depth: int = option(1, "DeepCache: UNet levels recomputed at the steps in between", ge=1)
    compile: bool = option(False, "torch.compile the repeated UNet blocks (regional; first clip pays the compile)")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = option(
        "default", "torch.compile mode; reduce-overhead adds CUDA graphs (GPU, static shapes)")
    offload: Literal["none", "model"] = option("none", "model: each model (EmoCAST networks, VAE, text encoder, "
                                                       "wav2vec2) on the GPU only while it runs")
    data: InferenceData = section(InferenceData)
    preprocess: PreprocessConfig = section(PreprocessConfig)
    schedule: ScheduleOverrides = section(ScheduleOverrides, "noise schedule overrides (auto: the card's)")

    def check(self) -> None:
        from .plan import check_interval
        from .presets import get_preset

        if self.checkpoint is None and self.audio_ckpt_dir:  # the release's name; `checkpoint` wins when both are set
            self.checkpoint = self.audio_ckpt_dir
        get_preset(self.preset)
        check_interval(self.guidance_interval)
        from .emotion import parse_timeline

        parse_timeline(self.prompt_emo or "", "prompt_emo")  # a malformed timeline fails before any model loads

    @classmethod
    def __config_presets__(cls, name: str) -> dict:
        """The values of preset ``name`` (the first layer over the defaults, see emocast.config.load)."""
        from .presets import get_preset

        return dict(get_preset(name).values)
