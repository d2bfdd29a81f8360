"""Emotion control (issue 16) on the tiny kit: an emotion timeline, separate audio/emotion guidance, an intensity
dial.

The timeline is checked through the conditioning every denoising step actually used (the step callback's
``state.video``), not by looking at frames; the defaults (one prompt, equal guidance scales, strength 1) are
checked bit for bit against the sampler fed one video conditioning, as before the emotion controls existed.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from emocast.errors import ConfigError, InputError
from emocast.pipelines.emotion import (EmotionSettings, EmotionText, EmotionTimeline, TimelineEntry, as_timeline,
                                       parse_timeline, read_timeline)
from emocast.testing.synthetic import face_image, speech

pytestmark = pytest.mark.usefixtures("one_thread")

SECONDS = 1.2  # 30 frames = 8 clips of 4 frames (0.16 s each; clip c is centred at (c + 0.5) * 0.16 s)
CALM, FURIOUS = "A person is talking calmly.", "The person becomes furious."
NEUTRAL = "A person is talking with neutral emotion."


# ---------------------------------------------------------------------------------------------------- parsing
def test_timeline_syntax_and_files(tmp_path):
    t = parse_timeline(f"0: {CALM} | 3.2: {FURIOUS}")
    assert t.entries == (TimelineEntry(0.0, CALM), TimelineEntry(3.2, FURIOUS))
    assert parse_timeline(f"0s: {CALM} | 1:05.5: {FURIOUS}").entries[1].start == 65.5
    assert parse_timeline(CALM).entries == (TimelineEntry(0.0, CALM),)  # a plain prompt, untouched
    assert parse_timeline("Mood: happy | sad").entries == (TimelineEntry(0.0, "Mood: happy | sad"),)
    assert parse_timeline(str(t)) == t  # the printed form parses back

    (tmp_path / "t.json").write_text(json.dumps([{"time": 0, "prompt": CALM}, {"time": 3.2, "prompt": FURIOUS}]))
    (tmp_path / "t.srt").write_text(f"1\n00:00:00,000 --> 00:00:03,200\n{CALM}\n\n2\n00:00:03,200 --> "
                                    f"00:00:06,000\n{FURIOUS}\n")
    (tmp_path / "t.txt").write_text(f"# calm, then furious\n0: {CALM}\n3.2: {FURIOUS}\n")
    for name in ("t.json", "t.srt", "t.txt"):
        assert read_timeline(tmp_path / name).entries == t.entries, name


@pytest.mark.parametrize("text, words", [
    (f"3: {CALM} | 1: {FURIOUS}", ["at 1 s", "times must increase", "Fix: sort"]),
    (f"0: {CALM} | furious", ["'furious' has no time", "Fix: write every entry as 'SECONDS: prompt'"]),
    (f"0: {CALM} | 2:", ["'2:' has no prompt", "Fix"]),
    (f"0: {CALM} | 2: a | 2: b", ["at 2 s", "times must increase"]),
])
def test_a_malformed_timeline_is_one_message_with_the_value_and_the_fix(text, words):
    with pytest.raises(InputError) as err:
        as_timeline(text)
    assert all(w in str(err.value) for w in words), str(err.value)
    assert "\n" not in str(err.value)


def test_bad_timeline_files(tmp_path):
    (tmp_path / "bad.json").write_text('[{"time": 0, "text": "x"}]')
    with pytest.raises(InputError, match="needs exactly the keys time"):
        read_timeline(tmp_path / "bad.json")
    (tmp_path / "bad.srt").write_text("1\nno timing\nhappy\n")
    with pytest.raises(InputError, match="has no 'HH:MM:SS,mmm"):
        read_timeline(tmp_path / "bad.srt")
    with pytest.raises(InputError, match="not found"):
        read_timeline(tmp_path / "missing.json")


def test_blend_weights_ramp_inside_the_window():
    t = parse_timeline(f"0: {CALM} | 3.2: {FURIOUS}")
    assert t.weights(2.9, 0.5) == (1.0, 0.0) and t.weights(3.45, 0.5) == (0.0, 1.0)
    w = t.weights(3.1, 0.5)
    assert w[1] == pytest.approx(0.3) and sum(w) == pytest.approx(1.0)
    assert t.weights(3.19, 0.0) == (1.0, 0.0) and t.weights(3.2, 0.0) == (0.0, 1.0)  # w = 0: a hard switch
    three = parse_timeline("0: a | 1: b | 1.2: c")  # overlapping windows still sum to 1, never negative
    for x in np.linspace(0, 2, 41):
        ws = three.weights(float(x), 0.5)
        assert min(ws) >= 0 and sum(ws) == pytest.approx(1.0)


def test_strength_interpolates_and_extrapolates_from_the_neutral_prompt():
    table = {NEUTRAL: torch.zeros(1, 77, 8), CALM: torch.ones(1, 77, 8)}
    encode = table.__getitem__
    one = EmotionText(EmotionTimeline.single(CALM), EmotionSettings(), encode, 4, 25)
    assert one.embedding(one.clip_key(0)) is table[CALM]  # s = 1: the prompt's embedding itself
    for s in (0.0, 0.5, 1.5):
        text = EmotionText(EmotionTimeline.single(CALM), EmotionSettings(strength=s), encode, 4, 25)
        assert torch.allclose(text.embedding(text.clip_key(0)), torch.full((1, 77, 8), s))
    with pytest.raises(ConfigError, match="emotion_strength must be between 0 and 3, got 5"):
        EmotionSettings(strength=5)


# ---------------------------------------------------------------------------------------------------- plan
def test_separate_guidance_rows_and_plan_with_the_presets():
    from emocast import config as config_mod
    from emocast.pipelines.card import RELEASE_CARD
    from emocast.pipelines.conditioning import Keep, NO_TEXT
    from emocast.pipelines.config import InferenceConfig
    from emocast.pipelines.inference import resolve_sampling
    from emocast.pipelines.sampler import SamplerSettings

    def settings(**values):
        return resolve_sampling(config_mod.load(InferenceConfig, values=values), RELEASE_CARD, False).settings

    plain = SamplerSettings()
    for equal in (settings(audio_guidance=3.5, emotion_guidance=3.5), settings(audio_guidance=3.5),
                  settings(cfg_scale=2.0, emotion_guidance=2.0)):
        ref = plain if equal.cfg_scale == 3.5 else dataclasses.replace(plain, cfg_scale=2.0)
        assert equal.row_names() == ("nothing", "everything") and equal.plan() == ref.plan()
        assert equal.keep().flags() == ref.keep().flags()
    sep = settings(audio_guidance=4.5, emotion_guidance=2.0)
    assert sep.row_names() == ("nothing", "no_text", "everything") and sep.chain_scales() == (4.5, 2.0)
    keep = sep.keep().flags()
    assert keep["text"] == (False, False, True) and keep["audio"] == keep["reference"] == (False, True, True)
    assert Keep.of((), NO_TEXT).flags()["face"] == (False, True)
    assert settings(audio_guidance=1.0, emotion_guidance=3.0).row_names() == ("no_text", "everything")
    assert settings(cfg_scale=1.0).row_names() == ("everything",)

    fast = settings(preset="fast", audio_guidance=4.5, emotion_guidance=2.0)  # the speed presets combine with it
    plan = fast.plan()
    assert fast.steps == 20 and plan[0].rows == (0, 1, 2) and plan[0].scales == (4.5, 2.0)
    assert all(s.rows == (2,) for s in plan[10:]) and any(s.reuse_deep for s in plan)
    with pytest.raises(ConfigError, match="audio_guidance"):
        config_mod.load(InferenceConfig, values={"audio_guidance": "loud"})


def test_three_row_chain_is_the_decomposition_of_the_step():
    """The three-row step mixes the rows' predictions along the chain; equal scales give the two-row CFG value (up
    to float rounding: the equal-scale path runs the two rows, see the bit-identical test below)."""
    from emocast.models import build_net
    from emocast.pipelines import conditioning
    from emocast.pipelines.denoise import GuidedPrediction
    from emocast.pipelines.plan import build_plan
    from emocast.preprocess.masks import level_sizes

    torch.manual_seed(0)
    net = build_net("tiny").eval()
    cfg = net.config
    g = torch.Generator().manual_seed(1)
    masks = [torch.rand(s * s, generator=g) for s in level_sizes(64, cfg.num_levels)]
    D = cfg.cross_attention_dim
    kw = dict(text_emb=torch.randn(1, 77, D, generator=g), uncond_text_emb=torch.randn(1, 77, D, generator=g),
              face_emb=torch.randn(1, cfg.face_embedding_dim, generator=g), face_region=torch.rand(1, 3, 64, 64),
              full_masks=masks, face_masks=masks, lip_masks=masks)
    windows = torch.randn(1, 2, cfg.audio_window, cfg.audio_layers, cfg.audio_feature_dim, generator=g)
    ref = torch.randn(3, 4, 8, 8, generator=g)
    x = torch.randn(1, 4, 2, 8, 8, generator=g)
    with torch.inference_mode():
        video = conditioning.prepare_video(net, keep=conditioning.named_keep(("nothing", "no_text", "everything")),
                                           **kw)
        clip = conditioning.prepare_clip(net, video, ref_latents=ref, audio_windows=windows, pairing="matched")
        o = conditioning.model_output(net, video, clip, x, 500)
        predict = GuidedPrediction(net, video, clip, plan=build_plan(1, (0, 1, 2), (4.5, 2.0)))
        assert torch.allclose(predict(x, 500, 0), o[0:1] + 4.5 * (o[1:2] - o[0:1]) + 2.0 * (o[2:3] - o[1:2]),
                              atol=1e-5)
        same = GuidedPrediction(net, video, clip, plan=build_plan(1, (0, 1, 2), (3.0, 3.0)))(x, 500, 0)
        assert torch.allclose(same, o[0:1] + 3.0 * (o[2:3] - o[0:1]), atol=1e-4)
        assert not torch.allclose(o[1], o[2], atol=1e-4)  # the text matters: the middle row is its own


# ---------------------------------------------------------------------------------------------------- tiny kit
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("emotion_inputs")
    Image.fromarray(face_image("astronaut")[0]).save(d / "me.png")
    sf.write(d / "speech.wav", speech("Hello there, how are you?", SECONDS, sr=16000), 16000)
    return d


@pytest.fixture(scope="module")
def pipe(tiny_models):
    from emocast import EmoCASTPipeline

    p = EmoCASTPipeline.from_pretrained(tiny_models, device="cpu", inference_steps=1, progress=False,
                                        **{"data.n_sample_frames": 4, "preprocess.separate_vocals": False})
    yield p
    p.close()


def steps_seen(pipe, inputs, prompt, **emotion):
    """(frames, [per clip: the conditioning object its steps used])."""
    seen = {}
    video = pipe(inputs / "me.png", inputs / "speech.wav", prompt, progress=False,
                 callback=lambda p: seen.setdefault(p.clip, p.state.video), **emotion)
    return video.frames, [seen[c] for c in sorted(seen)]


def test_two_entry_timeline_switches_at_the_right_clip_with_the_blend_in_the_window(pipe, inputs):
    # change at 0.6 s, window 0.2 s: the blend runs 0.5-0.7 s. Clip centres 0.08, 0.24, 0.40, 0.56, 0.72, ...: clips
    # 0-2 are calm, clip 3 (0.56 s) is 0.7 calm + 0.3 furious, clips 4-7 furious
    _, videos = steps_seen(pipe, inputs, f"0: {CALM} | 0.6: {FURIOUS}", emotion_transition=0.2)
    calm, furious = (pipe.text_encoder.encode([p]) for p in (CALM, FURIOUS))
    assert len(videos) == 8
    texts = [v.emo_text[-1:] for v in videos]  # the conditional row's text (row 0: the unconditional "")
    for c in (0, 1, 2):
        assert torch.equal(texts[c], calm), c
    for c in (4, 5, 6, 7):
        assert torch.equal(texts[c], furious), c
    assert torch.allclose(texts[3], 0.7 * calm + 0.3 * furious, atol=1e-5)
    assert not torch.allclose(texts[3], calm, atol=1e-3) and not torch.allclose(texts[3], furious, atol=1e-3)
    assert torch.equal(videos[0].encoder_hidden_states[-1:, :77], calm)  # the cross-attention gets it too
    assert videos[0] is videos[2] and videos[4] is videos[7]  # one conditioning per stretch of the same text
    uncond = pipe.text_encoder.uncond()
    assert all(torch.equal(v.emo_text[0:1], uncond) for v in videos)  # the unconditional row keeps ""

    _, hard = steps_seen(pipe, inputs, f"0: {CALM} | 0.6: {FURIOUS}", emotion_transition=0.0)
    assert [torch.equal(v.emo_text[-1:], furious) for v in hard] == [False] * 4 + [True] * 4


def sampler_frames(pipe, inputs, prompt, settings=None):
    """The video through the sampler fed one video conditioning (the path before the emotion controls)."""
    from emocast.pipelines.scheduler import make_generator
    from emocast.preprocess.image import to_model_pixels

    sampler = pipe.sampler.with_settings(settings or pipe.settings)
    reference = pipe.prepare_image(inputs / "me.png")
    audio = pipe.prepare_audio(inputs / "speech.wav")
    with torch.inference_mode():
        video = sampler.prepare_video(
            text_emb=pipe.text_encoder.encode([prompt]),
            uncond_text_emb=pipe.text_encoder.uncond() if sampler.settings.guidance else None,
            face_emb=torch.from_numpy(reference.face_emb)[None],
            face_region=torch.from_numpy(reference.face_region)[None],
            **dict(zip(("full_masks", "face_masks", "lip_masks"), pipe_masks(pipe, reference))))
        clips = list(sampler.frames(video, to_model_pixels(reference.pixels)[None], audio.features, audio.num_frames,
                                    make_generator(pipe.seed), progress=False))
    from emocast.media.video_writer import frames_to_uint8

    return np.concatenate([frames_to_uint8(c) for c in clips])


def pipe_masks(pipe, reference):
    from emocast.preprocess.masks import level_masks, level_sizes

    sides = level_sizes(pipe.image_size, pipe.net.config.num_levels)
    return [[torch.from_numpy(m) for m in level_masks(mask, sides)]
            for mask in (reference.masks.full, reference.masks.face, reference.masks.lip)]


def test_defaults_are_bit_identical_to_the_single_prompt_path(pipe, inputs):
    prompt = "A person is talking with happy emotion."
    expected = sampler_frames(pipe, inputs, prompt)
    default, videos = steps_seen(pipe, inputs, prompt)
    assert np.array_equal(default, expected)
    assert all(v is videos[0] for v in videos) and videos[0].batch == 2
    for variant in [dict(prompt=f"0: {prompt}"), dict(prompt=EmotionTimeline.single(prompt)),
                    dict(prompt=[(0.0, prompt)]),
                    dict(prompt=prompt, audio_guidance=3.5, emotion_guidance=3.5),
                    dict(prompt=prompt, emotion_strength=1.0), dict(prompt=prompt, emotion_strength=1.0,
                                                                     neutral_prompt="A calm person.")]:
        frames, _ = steps_seen(pipe, inputs, **variant)
        assert np.array_equal(frames, expected), variant

    # equal scales other than the pipeline's: exactly cfg_scale at that value
    two = sampler_frames(pipe, inputs, prompt, dataclasses.replace(pipe.settings, cfg_scale=2.0))
    frames, _ = steps_seen(pipe, inputs, prompt, audio_guidance=2.0, emotion_guidance=2.0)
    assert np.array_equal(frames, two) and not np.array_equal(two, expected)


def test_separate_guidance_and_strength_change_the_render(pipe, inputs):
    prompt = "A person is talking with happy emotion."
    expected, _ = steps_seen(pipe, inputs, prompt)
    frames, videos = steps_seen(pipe, inputs, prompt, audio_guidance=4.5, emotion_guidance=2.0)
    assert videos[0].batch == 3 and videos[0].flags["text"] == (False, False, True)
    assert not np.array_equal(frames, expected)

    _, neutral = steps_seen(pipe, inputs, prompt, emotion_strength=0.0)
    assert torch.equal(neutral[0].emo_text[-1:], pipe.text_encoder.encode([NEUTRAL]))
    _, half = steps_seen(pipe, inputs, prompt, emotion_strength=0.5, neutral_prompt="A calm person.")
    calm, happy = (pipe.text_encoder.encode([p]) for p in ("A calm person.", prompt))
    assert torch.allclose(half[0].emo_text[-1:], 0.5 * calm + 0.5 * happy, atol=1e-5)
    with pytest.raises(TypeError, match="unknown keyword argument"):
        pipe(inputs / "me.png", inputs / "speech.wav", prompt, emotion_strenght=2)


def test_a_timeline_past_the_audio_is_refused_before_sampling(pipe, inputs):
    from emocast.pipelines.inference import precheck_inputs
    from emocast.pipelines.batch import Job

    calls = []
    with pytest.raises(InputError) as err:
        pipe(inputs / "me.png", inputs / "speech.wav", f"0: {CALM} | 5: {FURIOUS}", progress=False,
             callback=calls.append)
    msg = str(err.value)
    assert "5 s" in msg and "past the end of the driving audio speech.wav (1.20 s)" in msg and "Fix:" in msg
    assert calls == []
    with pytest.raises(InputError, match="past the end"):
        precheck_inputs([Job(inputs / "me.png", inputs / "speech.wav", f"0: {CALM} | 5: {FURIOUS}")])


# ---------------------------------------------------------------------------------------------------- surfaces
def test_the_example_timeline_manifest_and_bad_emotion_rows(tmp_path):
    from helpers import REPO
    from emocast.pipelines.batch import parse_manifest, read_manifest
    from emocast.pipelines.inference import precheck_inputs

    jobs = read_manifest(REPO / "examples" / "timeline_manifest.csv")
    assert len(jobs) == 2
    first = as_timeline(jobs[0].prompt)
    assert [e.start for e in first.entries] == [0.0, 2.4] and jobs[0].emotion == ()
    assert isinstance(jobs[1].prompt, EmotionTimeline) and len(jobs[1].prompt.entries) == 3
    assert dict(jobs[1].emotion) == {"emotion_strength": 1.5, "audio_guidance": 4.5, "emotion_guidance": 2.0}
    assert precheck_inputs(jobs) == []  # every entry is inside its audio
    for name in ("calm_to_sad.json", "calm_to_angry.srt"):
        assert len(read_timeline(REPO / "examples" / "timelines" / name).entries) >= 2

    img, wav = REPO / "examples" / "reference_images" / "astronaut.png", REPO / "examples" / "driving_audios" / \
        "happy_news.wav"
    (tmp_path / "m.csv").write_text(
        "image,audio,prompt,timeline,emotion_strength,audio_guidance\n"
        f"{img},{wav},3: a | 1: b,,,\n"
        f"{img},{wav},happy,,strong,\n"
        f"{img},{wav},happy,,7,\n"
        f"{img},{wav},,missing.json,,\n"
        f"{img},{wav},happy,,0.5,4\n")
    m = parse_manifest(tmp_path / "m.csv")
    reasons = {p.row: p.reason for p in m.problems}
    assert "times must increase" in reasons[2] and "emotion_strength 'strong' is not a number" in reasons[3]
    assert "between 0 and 3, got 7" in reasons[4] and "timeline file not found" in reasons[5]
    assert [j.row for j in m.jobs] == [6] and dict(m.jobs[0].emotion) == {"emotion_strength": 0.5,
                                                                           "audio_guidance": 4.0}


def test_cli_flags_reach_the_config(tmp_path):
    from helpers import load_script
    from emocast.pipelines.inference import single_job

    script = load_script("inference")
    (tmp_path / "t.txt").write_text("0: calm\n1.5: furious\n")
    args = script.build_parser().parse_intermixed_args(
        ["--source_image", "a.png", "--driving_audio", "b.wav", "--audio_guidance", "4.5", "--emotion_guidance",
         "2", "--emotion_strength", "1.5", "--neutral_prompt", "A calm person.", "--emotion_transition", "0.25",
         "--emotion_timeline", str(tmp_path / "t.txt")])
    cfg = script.config_from_args(args)
    assert (cfg.audio_guidance, cfg.emotion_guidance, cfg.emotion_strength, cfg.emotion_transition) == \
        (4.5, 2.0, 1.5, 0.25) and cfg.neutral_prompt == "A calm person."
    assert [e.prompt for e in single_job(cfg).prompt.entries] == ["calm", "furious"]
    bad = script.build_parser().parse_intermixed_args(["--prompt_emo", "0: calm | 2 furious"])
    with pytest.raises(InputError, match="'2 furious' has no time"):
        script.config_from_args(bad)


def test_demo_controls_and_job_settings(pipe):
    from emocast import config
    from emocast.demo import component_spec, controls, job_config, job_settings
    from emocast.pipelines.config import InferenceConfig

    cfg = config.load(InferenceConfig)
    specs = {c.key: component_spec(c, cfg) for c in controls()}
    assert specs["emotion_strength"][0] == "Slider" and specs["emotion_strength"][1]["value"] == 1.0
    assert specs["audio_guidance"][0] == "Number" and specs["audio_guidance"][1]["value"] is None
    job = job_config(cfg, {"audio_guidance": 4.5, "emotion_guidance": None, "emotion_strength": 1.5})
    before = pipe.settings, pipe.emotion
    with job_settings(pipe, job, False):
        assert pipe.settings.guidance_scales == (4.5, 3.5) and pipe.emotion.strength == 1.5
    assert (pipe.settings, pipe.emotion) == before


def test_benchmark_reports_the_cost_of_three_rows(tmp_path):
    from helpers import load_script
    from emocast.cli import run_main

    bench = load_script("benchmark")
    threads = torch.get_num_threads()
    try:
        code = run_main(bench.main, ["--net", "tiny", "--resolution", "64", "--frames", "2", "--steps", "3",
                                     "--presets", "release,fast", "--separate_guidance", "4.5", "2", "--device", "cpu",
                                     "--threads", "1", "--no-vae", "--output", str(tmp_path / "b.json")])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    runs = {r["preset"]: r for r in json.loads((tmp_path / "b.json").read_text())["runs"]}
    assert list(runs) == ["release", "fast", "release+separate", "fast+separate"]
    assert runs["release"]["rows"] == 2 and runs["release+separate"]["rows"] == 3
    assert runs["release+separate"]["guidance_scales"] == [4.5, 2.0]
    # a third UNet row on every guided step: more than 1.3x release's FLOPs (the reference pass grows too)
    assert runs["release+separate"]["flop_ratio"] > 1.3 and runs["fast+separate"]["flop_ratio"] < \
        runs["release+separate"]["flop_ratio"]


def test_a_student_takes_the_one_scale_as_input_and_refuses_separate_guidance(pipe, inputs):
    """A consistency student (--preset turbo) runs one row with the guidance scale as its input: equal audio and
    emotion scales are that one scale (bit-identical to cfg_scale at that value), different ones are refused."""
    from emocast.media.video_writer import frames_to_uint8
    from emocast.pipelines.sampler import ClipSampler
    from emocast.pipelines.scheduler import make_generator
    from emocast.preprocess.image import to_model_pixels
    from emocast.training.distill import make_student

    student = make_student(pipe.net, 16).eval()
    with torch.no_grad():  # a trained student's guidance embedding is not zero: the scale changes its output
        torch.manual_seed(0)
        student.denoising_unet.guidance_embedding.linear_2.weight.normal_(0, 0.5)
    reference = pipe.prepare_image(inputs / "me.png")
    audio = pipe.prepare_audio(inputs / "speech.wav")
    text = pipe.text_encoder.encode(["A person is talking with happy emotion."])

    def frames(**changes):
        sampler = ClipSampler(student, pipe.codec, dataclasses.replace(pipe.settings, **changes))
        with torch.inference_mode():
            video = sampler.prepare_video(
                text_emb=text, uncond_text_emb=pipe.text_encoder.uncond(),
                face_emb=torch.from_numpy(reference.face_emb)[None],
                face_region=torch.from_numpy(reference.face_region)[None],
                **dict(zip(("full_masks", "face_masks", "lip_masks"), pipe_masks(pipe, reference))))
            assert video.batch == 1 and all(len(s.rows) == 1 for s in sampler.plan)  # one row, guidance folded in
            clips = sampler.frames(video, to_model_pixels(reference.pixels)[None], audio.features, audio.num_frames,
                                   make_generator(pipe.seed), progress=False)
            return np.concatenate([frames_to_uint8(c) for c in clips])

    two = frames(cfg_scale=2.0)
    assert np.array_equal(frames(cfg_scale=3.5, audio_guidance=2.0, emotion_guidance=2.0), two)
    assert not np.array_equal(frames(cfg_scale=3.5), two)
    with pytest.raises(ConfigError, match="distilled student"):
        frames(audio_guidance=4.0, emotion_guidance=2.0)
