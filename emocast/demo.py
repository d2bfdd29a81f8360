"""The web demo (``python app.py``): a Gradio page around one loaded :class:`EmoCASTPipeline`.

A portrait (upload or webcam), speech (upload or microphone) and an emotive prompt (the example prompts one click
away) render one video with its audio; the advanced settings are built from :data:`ADVANCED`, one line per
:class:`~emocast.pipelines.config.InferenceConfig` key (type, default and help come from the schema, so a new
setting is one line). The models load once before the page opens, jobs queue one at a time, the progress bar
follows every denoising step (the sampler's per-step callback), and every problem a user can cause (no face, an
unreadable file, a bad setting: :class:`~emocast.errors.EmoCASTError`) is shown as its message in the page,
never a stack trace.

Gradio is imported only by :func:`build_demo` (``pip install -r requirements/demo.txt``, or the ``demo`` extra of
``scripts/install.sh``).
"""
from __future__ import annotations

import dataclasses
import logging
import typing
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import config as config_mod
from .errors import EmoCASTError, InputError
from .pipelines.batch import default_output_name, read_manifest
from .pipelines.config import InferenceConfig
from .pipelines.inference import EmoCASTPipeline, emotion_settings, preprocess_settings, resolve_sampling

log = logging.getLogger("emocast.demo")


@dataclass(frozen=True)
class Control:
    """One advanced setting: an :class:`InferenceConfig` key, its label and (for numbers) a slider range."""

    key: str
    label: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    optional: bool = False  # shown only when InferenceConfig has the key (a setting another branch adds)


#: the advanced settings of the page, in order: one line each (a key of InferenceConfig; a Literal key becomes a
#: drop-down, a bool a checkbox, a number with a range a slider, else a number box; ``preset`` appears once the
#: config has it: issues 11/12)
ADVANCED: tuple[Control, ...] = (
    Control("pose_weight", "pose weight", 0.0, 2.0, 0.05),
    Control("face_weight", "face weight", 0.0, 2.0, 0.05),
    Control("lip_weight", "lip weight", 0.0, 2.0, 0.05),
    Control("inference_steps", "steps", 1, 100, 1),
    Control("cfg_scale", "guidance (CFG scale; 1 = off, twice as fast)", 1.0, 10.0, 0.1),
    Control("audio_guidance", "audio guidance (empty: the CFG scale)"),
    Control("emotion_guidance", "emotion guidance (empty: the CFG scale; differing from the audio's: 3 rows)"),
    Control("emotion_strength", "emotion strength (1 = as written, 0 = neutral; safe 0-2)", 0.0, 3.0, 0.05),
    Control("emotion_transition", "timeline transition (seconds)", 0.0, 3.0, 0.05),
    Control("seed", "seed"),
    Control("preprocess.use_whole_image", "no face found: animate the whole image (--allow_no_face)"),
    Control("preset", "preset", optional=True),
)


def controls() -> list[Control]:
    """The controls of :data:`ADVANCED` the config schema has (an optional one appears once its key exists)."""
    out = []
    for c in ADVANCED:
        try:
            _field(c.key)
        except KeyError:
            if c.optional:
                continue
            raise
        out.append(c)
    return out


def _field(key: str) -> tuple[Any, dataclasses.Field]:
    """The type hint and the dataclass field of a dotted InferenceConfig key."""
    schema: Any = InferenceConfig
    *sections, name = key.split(".")
    for part in sections:
        schema = typing.get_type_hints(schema)[part]
    fields = {f.name: f for f in dataclasses.fields(schema)}
    if name not in fields:
        raise KeyError(f"ADVANCED names {key!r}, which is not an InferenceConfig key")
    return typing.get_type_hints(schema)[name], fields[name]


def _value(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def component_spec(control: Control, cfg: InferenceConfig) -> tuple[str, dict]:
    """``(Gradio component name, keyword arguments)`` of a control, its default from ``cfg``."""
    tp, f = _field(control.key)
    value = _value(cfg, control.key)
    common = {"label": control.label, "value": value, "info": (f.metadata or {}).get("help")}
    if typing.get_origin(tp) is Literal:
        return "Dropdown", {**common, "choices": list(typing.get_args(tp))}
    if tp is bool:
        return "Checkbox", common
    number = _number_type(tp)
    if number is None:
        return "Textbox", {**common, "value": "" if value is None else str(value)}
    if not isinstance(value, (int, float)) or isinstance(value, bool):  # e.g. int | "auto" left at auto: empty box
        return "Number", {**common, "value": None,
                          "label": control.label if value is None else f"{control.label} (empty: {value})",
                          "precision": 0 if number is int else None}
    if control.minimum is not None and control.maximum is not None:
        return "Slider", {**common, "minimum": control.minimum, "maximum": control.maximum,
                          "step": control.step or (1 if number is int else None)}
    return "Number", {**common, "precision": 0 if number is int else None}


def _number_type(tp):
    """``int`` / ``float`` for a numeric field (also ``int | Literal["auto"]`` or ``float | None``), else None."""
    if tp in (int, float):
        return tp
    args = [a for a in typing.get_args(tp) if a in (int, float)]
    return args[0] if args else None


def job_config(base: InferenceConfig, values: dict[str, Any]) -> InferenceConfig:
    """``base`` with a job's advanced values, checked like the command line's (a bad one is a ConfigError)."""
    values = {k: (int(v) if isinstance(v, float) and v.is_integer() and _number_type(_field(k)[0]) is int else v)
              for k, v in values.items() if v is not None and v != ""}
    return config_mod.load(InferenceConfig, [config_mod.to_dict(base)], values=values)


@contextmanager
def job_settings(pipe: EmoCASTPipeline, cfg: InferenceConfig, card_found: bool):
    """Sample one job with ``cfg``'s settings (the pipeline's own are put back afterwards)."""
    saved = pipe.sampler.settings, pipe.preprocess, pipe.emotion
    pipe.sampler.settings = resolve_sampling(cfg, pipe.card, card_found).settings
    pipe.preprocess = dataclasses.replace(preprocess_settings(cfg), separate_vocals=pipe.separator is not None)
    pipe.emotion = emotion_settings(cfg)
    try:
        yield
    finally:
        pipe.sampler.settings, pipe.preprocess, pipe.emotion = saved


def example_prompts(examples_dir) -> list[str]:
    path = Path(examples_dir) / "prompts.txt"
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def example_jobs(examples_dir) -> list[list[str]]:
    """The bundled examples (``examples/manifest.csv``) as [image, audio, prompt] rows."""
    path = Path(examples_dir) / "manifest.csv"
    if not path.is_file():
        return []
    return [[str(job.image), str(job.audio), str(job.prompt)] for job in read_manifest(path)]


class DemoRenderer:
    """The job function of the page: inputs + advanced values -> a video file (or a message for the page)."""

    def __init__(self, pipe: EmoCASTPipeline, cfg: InferenceConfig, card_found: bool, out_dir):
        self.pipe, self.cfg, self.card_found = pipe, cfg, card_found
        self.out_dir = Path(out_dir)

    def __call__(self, image, audio, prompt: str, advanced: dict[str, Any], progress=None) -> Path:
        """Render one job; ``progress(fraction, desc)`` is called after every denoising step. Raises
        :class:`EmoCASTError` with a message for the page."""
        if not image:
            raise InputError("no portrait: upload an image with a visible face (or take one with the webcam)")
        if not audio:
            raise InputError("no speech: upload an audio file (or record one with the microphone)")
        cfg = job_config(self.cfg, advanced)
        out = self.out_dir / uuid.uuid4().hex[:12] / default_output_name(image, audio)

        def report(p):
            if progress is not None:
                progress(p.fraction, desc=f"clip {p.clip + 1}/{p.clips}, step {p.step}/{p.total}")

        with job_settings(self.pipe, cfg, self.card_found):
            return self.pipe.render(image, audio, prompt or "", out, seed=cfg.seed, progress=False, callback=report)


def build_demo(renderer: DemoRenderer, examples_dir=None, title: str = "EmoCAST"):
    """The Gradio Blocks of the page (queued: one job at a time, the others wait in line)."""
    import gradio as gr

    def run(data, progress=gr.Progress()):
        advanced = {c.key: data[comp] for c, comp in zip(shown, advanced_inputs)}
        try:
            return str(renderer(data[image], data[audio], data[prompt], advanced, progress=progress))
        except EmoCASTError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # a bug, not the user's doing: the traceback goes to the log, a line to the page
            log.exception("render failed")
            raise gr.Error(f"internal error ({type(err).__name__}: {err}); see the server log",
                           print_exception=False) from None

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {title}\nAnimate a portrait with speech, steered by an emotive text prompt.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="portrait", sources=["upload", "webcam"], type="filepath", elem_id="portrait")
                audio = gr.Audio(label="speech", sources=["upload", "microphone"], type="filepath",
                                 elem_id="speech")
                prompt = gr.Textbox(label="emotive prompt", value=renderer.cfg.prompt_emo, lines=2,
                                    elem_id="prompt",
                                    info="one sentence, or a timeline: 0: A person is talking calmly. | 3.2: The "
                                         "person becomes furious.")
                prompts = example_prompts(examples_dir) if examples_dir else []
                if prompts:
                    gr.Examples([[p] for p in prompts], inputs=[prompt], label="example prompts (click one)",
                                examples_per_page=len(prompts), elem_id="prompt_examples")
                with gr.Accordion("advanced", open=False, elem_id="advanced"):
                    advanced_inputs, shown = [], controls()
                    for c in shown:
                        kind, kwargs = component_spec(c, renderer.cfg)
                        advanced_inputs.append(getattr(gr, kind)(elem_id="adv_" + c.key.replace(".", "_"),
                                                                 **kwargs))
                button = gr.Button("render", variant="primary", elem_id="run")
            with gr.Column():
                video = gr.Video(label="video", elem_id="video", interactive=False)
        jobs = example_jobs(examples_dir) if examples_dir else []
        if jobs:
            gr.Examples(jobs, inputs=[image, audio, prompt], label="bundled examples (click one to load it)",
                        elem_id="examples")
        button.click(run, inputs={image, audio, prompt, *advanced_inputs}, outputs=video, api_name="render")
    return demo.queue(max_size=32, default_concurrency_limit=1)
