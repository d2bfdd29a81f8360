"""Fast inference: the work done once instead of at every step gives the same predictions, a step of a subset of the
rows gives those rows' predictions, DeepCache reuses exactly what a full pass computed, the guidance plan and the
solvers do what their math says, and the presets' FLOP budgets hold (counted, full-size network).

Equalities that are exact in exact arithmetic are checked in float64 on the golden tiny network, where rounding is
~1e-16 relative and the network's amplification of it (~1e4 for this chaotic random network: a 1e-7 change of the
input moves its fp32 output by 7e-4) keeps every difference far below 1e-8.
"""
from __future__ import annotations

import pytest
import torch

from emocast.models import TINY, build_net
from emocast.models.golden import golden_net, random_step_inputs
from emocast.models.unet_blocks import DeepFeatures
from emocast.pipelines import conditioning
from emocast.pipelines.flops import clip_flops
from emocast.pipelines.plan import PlanStep, build_plan
from emocast.pipelines.sampler import SamplerSettings

F64_TOL = 1e-8
FRAMES = 3

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net():
    return golden_net(TINY).double().eval().requires_grad_(False)


@pytest.fixture(scope="module")
def x():
    return {k: (v.double() if torch.is_tensor(v) else [m.double() for m in v])
            for k, v in random_step_inputs(TINY, frames=FRAMES, latent_size=8, seed=5).items()}


def video_of(net, x, guidance=True):
    return conditioning.prepare_video(
        net, text_emb=x["text_emb"], uncond_text_emb=x["uncond_text_emb"], face_emb=x["face_emb"],
        face_region=x["face_region"], full_masks=x["full_masks"], face_masks=x["face_masks"],
        lip_masks=x["lip_masks"], guidance=guidance)


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("pairing", ["release", "matched"])
def test_step_cache_gives_the_uncached_prediction(net, x, pairing):
    with torch.inference_mode():
        video = video_of(net, x)
        outs = []
        for cache in (False, True):
            clip = conditioning.prepare_clip(net, video, ref_latents=x["ref_latents"],
                                             audio_windows=x["audio_windows"], pairing=pairing, cache=cache)
            assert (clip.cache is not None) == cache
            outs.append(conditioning.model_output(net, video, clip, x["latents"], 400, (0.7, 1.3, 1.6)))
    assert rel(outs[1], outs[0]) < F64_TOL


def test_a_later_clip_reuses_the_reference_image(net, x):
    """The ReferenceNet on the motion frames only + the first clip's reference-image records = the whole pass."""
    motion = torch.randn(2, *x["ref_latents"].shape[1:], generator=torch.Generator().manual_seed(1)).double()
    later = torch.cat([x["ref_latents"][:1], motion])
    with torch.inference_mode():
        video = video_of(net, x)
        first = conditioning.prepare_clip(net, video, ref_latents=x["ref_latents"], audio_windows=x["audio_windows"])
        whole = conditioning.prepare_clip(net, video, ref_latents=later, audio_windows=x["audio_windows"])
        reused = conditioning.prepare_clip(net, video, ref_latents=later, audio_windows=x["audio_windows"],
                                           reference=first.video_reference())
        for path in whole.reference.motion:
            assert rel(reused.reference.motion[path], whole.reference.motion[path]) < F64_TOL
        a, b = (conditioning.model_output(net, video, c, x["latents"], 700) for c in (whole, reused))
    assert rel(b, a) < F64_TOL


@pytest.mark.parametrize("cache", [True, False])
def test_a_step_of_some_rows_gives_those_rows(net, x, cache):
    with torch.inference_mode():
        video = video_of(net, x)
        clip = conditioning.prepare_clip(net, video, ref_latents=x["ref_latents"], audio_windows=x["audio_windows"],
                                         cache=cache)
        both = conditioning.model_output(net, video, clip, x["latents"], 250)
        cond = conditioning.model_output(net, video, clip, x["latents"], 250, rows=(1,))
        uncond = conditioning.model_output(net, video, clip, x["latents"], 250, rows=(0,))
    assert cond.shape[0] == uncond.shape[0] == 1
    assert rel(cond, both[1:]) < F64_TOL and rel(uncond, both[:1]) < F64_TOL


@pytest.mark.parametrize("depth", [1, 2])
def test_deep_cache_reuses_exactly_what_the_full_pass_computed(net, x, depth):
    """A shallow pass given the deep features of a full pass at the same input recomputes the same values."""
    with torch.inference_mode():
        video = video_of(net, x)
        clip = conditioning.prepare_clip(net, video, ref_latents=x["ref_latents"], audio_windows=x["audio_windows"])
        deep = DeepFeatures(depth)
        full = conditioning.model_output(net, video, clip, x["latents"], 600, deep=deep)
        assert deep.features is not None
        plain = conditioning.model_output(net, video, clip, x["latents"], 600)
        shallow = conditioning.model_output(net, video, clip, x["latents"], 600,
                                            deep=DeepFeatures(depth, deep.features))
        # for other latents the reused features are stale: a different (approximate) prediction (the tiny net's
        # GroupNorms have one channel per group, which removes the timestep embedding: move the latents instead)
        moved = x["latents"] + 0.1 * torch.randn(x["latents"].shape, generator=torch.Generator().manual_seed(2),
                                                 dtype=torch.float64)
        other = conditioning.model_output(net, video, clip, moved, 600)
        stale = conditioning.model_output(net, video, clip, moved, 600, deep=DeepFeatures(depth, deep.features))
    assert torch.equal(full, plain) and torch.equal(shallow, full)
    assert 1e-6 < rel(stale, other) < 1


def test_guide_is_the_release_formula_and_a_chain():
    g = torch.Generator().manual_seed(0)
    two, three = torch.randn(2, 4, 3, generator=g), torch.randn(3, 4, 3, generator=g)
    assert torch.equal(conditioning.guide(two, 3.5), two[:1] + 3.5 * (two[1:] - two[:1]))
    expected = three[:1] + 2.0 * (three[1:2] - three[:1]) + 5.0 * (three[2:] - three[1:2])
    torch.testing.assert_close(conditioning.guide(three, (2.0, 5.0)), expected)
    assert torch.equal(conditioning.guide(two[1:], ()), two[1:])
    with pytest.raises(ValueError, match="2 guidance scales"):
        conditioning.guide(three, 3.5)


def test_plan_guidance_interval_and_deep_cache():
    plan = build_plan(10, (0, 1), (3.5,), guidance_interval=(0.0, 0.4), deep_cache_interval=2)
    assert [s.rows for s in plan] == [(0, 1)] * 4 + [(1,)] * 6
    assert [s.scales for s in plan] == [(3.5,)] * 4 + [()] * 6
    assert [s.reuse_deep for s in plan] == [False, True] * 5
    assert build_plan(40, (0, 1), (3.5,)) == (PlanStep((0, 1), (3.5,)),) * 40  # the release
    # a step whose rows the last full step did not run is promoted to a full step
    late = build_plan(4, (0, 1), (2.0,), guidance_interval=(0.5, 1.0), deep_cache_interval=4)
    assert [(s.rows, s.reuse_deep) for s in late] == [((1,), False), ((1,), True), ((0, 1), False), ((0, 1), True)]
    three = build_plan(3, (0, 1, 2), (2.0, 4.0), guidance_interval=(0.0, 0.5))
    assert [s.rows for s in three] == [(0, 1, 2), (0, 1, 2), (2,)]


def test_guided_prediction_runs_the_plan(net, x):
    """Unguided steps run the conditional row alone; DeepCache steps are the shallow pass on the last full
    step's features of the same rows."""
    from emocast.pipelines.denoise import GuidedPrediction

    plan = build_plan(4, (0, 1), (3.0,), guidance_interval=(0.0, 0.5), deep_cache_interval=2)
    with torch.inference_mode():
        video = video_of(net, x)
        clip = conditioning.prepare_clip(net, video, ref_latents=x["ref_latents"], audio_windows=x["audio_windows"])
        predict = GuidedPrediction(net, video, clip, plan=plan)
        got = [predict(x["latents"], t, i) for i, t in enumerate((900, 900, 500, 500))]
        deep = DeepFeatures(1)
        full = conditioning.model_output(net, video, clip, x["latents"], 900, deep=deep)
        shallow = conditioning.model_output(net, video, clip, x["latents"], 900, deep=DeepFeatures(1, deep.features))
        cond = conditioning.model_output(net, video, clip, x["latents"], 500, rows=(1,))
    assert torch.equal(got[0], conditioning.guide(full, 3.0))
    assert torch.equal(got[1], conditioning.guide(shallow, 3.0))
    assert rel(got[2], cond) < F64_TOL and rel(got[3], cond) < F64_TOL  # step 3 reuses step 2's features at t=500


@pytest.mark.parametrize("solver", ["ddim", "dpmsolver++", "unipc"])
def test_every_solver_lands_on_the_data_point_of_a_point_mass(solver):
    """For data x0* alone, the exact v-prediction at x_t is v = a eps - s x0* with eps = (x_t - a x0*) / s; every
    solver of the probability-flow ODE ends exactly at x0* (their updates are exact for a constant x0-prediction),
    on the release's zero-SNR v-prediction schedule."""
    from emocast.pipelines.denoise import denoise
    from emocast.pipelines.scheduler import make_scheduler

    x0 = torch.randn(1, 4, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    scheduler = make_scheduler(solver=solver)
    ac = scheduler.alphas_cumprod.double()

    def predict(latents, t, i):
        a, s = ac[t].sqrt(), (1 - ac[t]).sqrt()
        return a * (latents - a * x0) / s - s * x0

    for steps in (5, 12):
        noise = torch.randn(1, 4, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(steps))
        out = denoise(predict, scheduler, noise, steps)
        assert float((out - x0).abs().max()) < 1e-5, (solver, steps)


def test_preset_flop_budgets_full_size():
    """fast <= 1/3 and faster <= 1/6 of release's network FLOPs per clip, counted with torch.utils.flop_counter on
    the full-size network (shape-only, meta device) at the released 512x512 and 16 frames."""
    from helpers import load_script

    bench = load_script("benchmark")
    meta = build_net("sd15", device="meta").eval()
    args = bench.build_parser().parse_args(["--frames", "16"])
    totals = {name: clip_flops(meta, bench.preset_settings(name, args), 512)["total"]
              for name in ("release", "fast", "faster")}
    assert totals["fast"] <= totals["release"] / 3
    assert totals["faster"] <= totals["release"] / 6
    assert totals["release"] > 1.8e15  # 40 steps x 2 rows of ~24 TFLOP at 512x512x16 (spec §12: 54.6 per step)


def test_presets_are_config_layers_under_explicit_values(caplog):
    from emocast import config
    from emocast.errors import CheckpointError, ConfigError
    from emocast.pipelines.card import CheckpointCard
    from emocast.pipelines.config import InferenceConfig
    from emocast.pipelines.inference import resolve_sampling

    fast = config.load(InferenceConfig, values={"preset": "fast"})
    assert (fast.solver, fast.inference_steps, fast.guidance_interval, fast.deep_cache_interval) == \
        ("dpmsolver++", 20, [0.0, 0.5], 2)
    mine = config.load(InferenceConfig, values={"preset": "fast", "inference_steps": 30}, overrides=["solver=unipc"])
    assert (mine.inference_steps, mine.solver, mine.deep_cache_interval) == (30, "unipc", 2)
    release = config.load(InferenceConfig)
    assert release.inference_steps == "auto" and resolve_sampling(release, CheckpointCard(), True).settings.steps == 40
    with pytest.raises(ConfigError, match="did you mean 'faster'"):
        config.load(InferenceConfig, overrides=["preset=fastr"])
    with pytest.raises(ConfigError, match="deep_cache_interval must be at least 1"):
        config.load(InferenceConfig, overrides=["deep_cache_interval=0"])
    settings = resolve_sampling(fast, CheckpointCard(), True).settings
    assert settings.solver == "dpmsolver++" and settings.plan()[1].reuse_deep
    with pytest.raises(CheckpointError, match="sampler: flow, which no preset samples"):
        resolve_sampling(fast, CheckpointCard(sampler="flow"), True)
    with caplog.at_level("WARNING", logger="emocast.inference"):  # a student through a DDIM preset: sampled, warned
        student = resolve_sampling(fast, CheckpointCard(sampler="consistency", sampler_options={"steps": 4}), True)
    assert student.settings.steps == 20 and "--preset turbo" in caplog.text
    with pytest.raises(CheckpointError, match="--preset turbo needs a consistency-distilled student"):
        resolve_sampling(config.load(InferenceConfig, values={"preset": "turbo"}), CheckpointCard(), True)


def test_sampler_settings_reject_bad_values():
    from emocast.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown solver"):
        SamplerSettings(solver="euler")
    with pytest.raises(ConfigError, match="guidance_interval"):
        SamplerSettings(guidance_interval=(0.6, 0.2))
