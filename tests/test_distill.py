"""Consistency distillation (issue 12) on the tiny model kit.

Units: a fresh student is its teacher (zero-initialised guidance embedding) and adds exactly the four guidance keys
to the net.pth layout; the distillation's teacher step is the teacher sampler's DDIM step of the guided prediction;
the EMA target update; 4 student steps cost at most 1/10 of the teacher's 40 two-row steps (counted FLOPs).
End to end through scripts/train_distill.py: a run exports a student whose card says ``sampler: consistency``, only
the denoising UNet trains, an interrupted run resumed gives the same student, and scripts/inference.py
``--preset turbo`` renders it (the card's step count) to an mp4 with audio; turbo refuses a DDIM checkpoint.

The full acceptance (a teacher trained on one video, 2x closer to its 40-step render) is tests/distill_acceptance.py,
too slow for the suite (its measured numbers: docs/training.md §8.2); the suite runs it in small (a random teacher,
a 4-step grid, 10 steps: the 1-step student beats the teacher's own 1 step against its 4-step render).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from test_train_data import REPO, make_prepared_dataset

from helpers import load_script
from emocast.cli import run_main
from emocast.models import TINY, build_net
from emocast.pipelines import conditioning
from emocast.pipelines.card import CheckpointCard, read_card
from emocast.training.distill import DistillModule, ConsistencyGrid, make_student

pytestmark = pytest.mark.usefixtures("one_thread")

GUIDANCE_KEYS = {f"denoising_unet.guidance_embedding.linear_{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}
CLIP = 4  # frames per clip of the tiny teacher


def write_teacher(folder: Path, seed: int = 0) -> Path:
    """A tiny DDIM teacher export (random weights) whose card says 64 px, clips of 4 + 2 motion frames, matched."""
    from emocast.training.checkpointing import export_weights

    torch.manual_seed(seed)
    card = CheckpointCard(image_size=64, clip_length=CLIP, motion_frames=2, reference_pairing="matched",
                          provenance={"producer": "tests", "stage": "stage2"})
    export_weights(build_net(TINY), folder, card)
    return folder


def step_inputs(seed: int = 0, frames: int = CLIP, batch: int = 1):
    from emocast.models.golden import random_step_inputs

    x = random_step_inputs(TINY, frames=frames, seed=seed)
    rows = lambda t: t.expand(batch, *t.shape[1:]) if batch > 1 else t  # noqa: E731
    return x, dict(text_emb=rows(x["text_emb"]), uncond_text_emb=x["uncond_text_emb"], face_emb=rows(x["face_emb"]),
                   face_region=rows(x["face_region"]), full_masks=x["full_masks"], face_masks=x["face_masks"],
                   lip_masks=x["lip_masks"])


def test_a_fresh_student_is_its_teacher_and_adds_only_the_guidance_keys(tmp_path):
    from emocast.errors import CheckpointError
    from emocast.models.loading import load_net, save_safetensors
    from emocast.models.parameter_groups import trainable_parameter_groups

    torch.manual_seed(1)
    teacher = build_net(TINY).eval()
    student = make_student(teacher, 16).eval()
    assert student.is_student and not teacher.is_student
    assert set(student.state_dict()) - set(teacher.state_dict()) == GUIDANCE_KEYS
    assert set(teacher.state_dict()) <= set(student.state_dict())
    assert {n for n, _ in trainable_parameter_groups(student)["guidance_embedding"]} == GUIDANCE_KEYS
    assert not trainable_parameter_groups(teacher)["guidance_embedding"]
    x, kw = step_inputs()
    with torch.no_grad():
        def one_row(net, **extra):
            video = conditioning.prepare_video(net, **kw, guidance=False)
            clip = conditioning.prepare_clip(net, video, ref_latents=x["ref_latents"], audio_windows=x["audio_windows"])
            return conditioning.model_output(net, video, clip, x["latents"], 499, **extra)

        cond = one_row(teacher)
        for w in (1.0, 3.5, 7.0):  # zero-initialised output layer: exactly the teacher's conditional prediction
            assert torch.equal(one_row(student, guidance_scale=w), cond)
        with pytest.raises(ValueError, match="needs guidance_scale"):
            one_row(student)
        with pytest.raises(ValueError, match="no guidance embedding"):
            one_row(teacher, guidance_scale=3.5)
    # strict loading both ways: the student file carries its architecture; the net.pth layout is unchanged
    torch.save(student.state_dict(), tmp_path / "student.pth")
    save_safetensors(student, tmp_path / "student.safetensors")
    for name in ("student.pth", "student.safetensors"):
        loaded = load_net(tmp_path / name, device="cpu")
        assert loaded.is_student and loaded.config.guidance_embed_dim == 16
    torch.save(teacher.state_dict(), tmp_path / "teacher.pth")
    assert not load_net(tmp_path / "teacher.pth", device="cpu").is_student
    with pytest.raises(CheckpointError, match="unexpected key"):
        load_net(tmp_path / "student.pth", config=TINY, device="cpu")


def test_another_unet_never_reads_the_clips_step_cache():
    """Distillation runs the frozen teacher and the EMA target on the student's conditioning (``unet=``): a clip
    prepared without gradients carries a step cache of the student's own UNet (cross-attention, reference and audio
    keys/values), which another UNet must not use."""
    import copy

    torch.manual_seed(3)
    net = build_net(TINY).eval()
    other = copy.deepcopy(net)
    with torch.no_grad():
        for p in other.denoising_unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, kw = step_inputs()

    def output(owner, **extra):
        video = conditioning.prepare_video(owner, **kw, guidance=True)
        clip = conditioning.prepare_clip(owner, video, ref_latents=x["ref_latents"], audio_windows=x["audio_windows"])
        assert clip.cache is not None  # prepared without gradients: the step cache exists
        return conditioning.model_output(owner, video, clip, x["latents"], 499, **extra)

    with torch.no_grad():
        mine, theirs = output(net), output(other)
        borrowed = output(net, unet=other.denoising_unet)
    assert float((mine - theirs).abs().max()) > 1e-2  # the perturbation matters
    assert torch.allclose(borrowed, theirs, rtol=1e-4, atol=1e-5)  # the other UNet's own computation


def test_the_teacher_step_is_the_teacher_samplers_guided_ddim_step():
    """The distillation target starts from exactly what the teacher's sampler computes: one DDIM step of
    ``guide([uncond, cond], w)`` (the sampler's rows) between neighbouring timesteps of its 40-step grid, for a
    batch of clips with their own timesteps and scales; two sub-steps land between one and the two-step sampler."""
    from emocast.pipelines.scheduler import make_scheduler

    torch.manual_seed(2)
    net = build_net(TINY).eval()
    grid = ConsistencyGrid(None, 40)
    sched = make_scheduler()
    sched.set_timesteps(40)
    assert grid.timesteps.tolist() == sched.timesteps.tolist() and grid.timesteps[0] == 999
    assert grid.next.tolist() == sched.timesteps.tolist()[1:] + [-1]
    module = DistillModule(net, net.denoising_unet, grid, pairing="matched")
    x, kw = step_inputs(seed=3, batch=2)
    index, w = torch.tensor([5, 39]), torch.tensor([2.0, 4.5])
    latents = torch.randn(2, 4, CLIP, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        video = conditioning.prepare_video(net, **{**kw, "text_emb": kw["text_emb"].repeat(2, 1, 1),
                                                   "face_emb": kw["face_emb"].repeat(2, 1),
                                                   "face_region": kw["face_region"].repeat(2, 1, 1, 1)},
                                           keep=conditioning.Keep.rows(False, False, True, True))
        clip = conditioning.prepare_clip(net, video, ref_latents=x["ref_latents"][None].expand(4, -1, -1, -1, -1),
                                         audio_windows=x["audio_windows"].expand(4, -1, -1, -1, -1), pairing="matched")
        got = module.teacher_solve((video, clip), latents, grid.timesteps[index], grid.next[index], w)
        for i in range(2):  # the sampler: its own [uncond, cond] rows, DDIMScheduler.step from that timestep
            single = conditioning.prepare_video(net, **kw, guidance=True)
            sclip = conditioning.prepare_clip(net, single, ref_latents=x["ref_latents"],
                                              audio_windows=x["audio_windows"], pairing="matched")
            t = int(grid.timesteps[index[i]])
            v = conditioning.guide(conditioning.model_output(net, single, sclip, latents[i:i + 1], t), float(w[i]))
            sched.set_timesteps(40)
            want = sched.step(v, t, latents[i:i + 1]).prev_sample
            torch.testing.assert_close(got[i:i + 1], want, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(got[0], latents[0], atol=1e-3)  # it moved
        module.teacher_substeps = 2
        two = module.teacher_solve((video, clip), latents, grid.timesteps[index], grid.next[index], w)
        assert not torch.allclose(two, got, atol=1e-6)  # a different (finer) solve of the same interval


def test_ema_target_follows_the_trainable_weights_only():
    torch.manual_seed(3)
    student = make_student(build_net(TINY), 16)
    from emocast.training.params import set_trainable

    set_trainable(student, ["motion_modules", "guidance_embedding"])
    module = DistillModule(student, build_net(TINY).denoising_unet, ConsistencyGrid(None, 40))
    before = {k: v.clone() for k, v in module.target.state_dict().items()}
    with torch.no_grad():
        for p in student.denoising_unet.parameters():
            p.add_(1.0)
    module.update_target(0.75)
    trainable = {n for n, p in student.denoising_unet.named_parameters() if p.requires_grad}
    now, own = module.target.state_dict(), student.denoising_unet.state_dict()
    assert trainable and all(not p.requires_grad for p in module.target.parameters())
    for k in before:
        if k in trainable:  # 0.75 * old + 0.25 * (old + 1)
            torch.testing.assert_close(now[k], before[k] + 0.25, rtol=0, atol=1e-6)
        else:
            assert torch.equal(now[k], before[k]), k
    state = module.state_dict()  # what checkpoints hold: the student and its EMA target, never the teacher
    assert {k[len("target."):] for k in state if k.startswith("target.")} == set(own)
    assert all(k.startswith(("net.", "target.")) for k in state)


def test_four_student_steps_cost_at_most_a_tenth_of_the_teachers_forty_guided_steps(tiny_models):
    """Counted, not estimated: torch's FlopCounterMode over one clip's sampling (reference pass + every UNet call).
    The student's 4 steps are counted as run; the teacher's 40 two-row steps as its counted 1- and 2-step clips
    extended step by step (every step runs the same graph; tests/distill_acceptance.py counts all 40)."""
    from torch.utils.flop_counter import FlopCounterMode

    from emocast.models.vae import load_vae
    from emocast.pipelines.sampler import ClipSampler, SamplerSettings
    from emocast.pipelines.scheduler import make_generator

    torch.manual_seed(4)
    teacher = build_net(TINY).eval()
    student = make_student(teacher, 256).eval()
    vae = load_vae(tiny_models, "cpu", torch.float32)
    x, kw = step_inputs(seed=5, frames=2)  # the ratio does not depend on the clip length; 2 frames count faster

    def flops(net, steps):
        sampler = ClipSampler(net, vae, SamplerSettings(steps=steps, cfg_scale=3.5, clip_length=2))
        counter = FlopCounterMode(display=False)
        with torch.inference_mode():
            video = sampler.prepare_video(**kw)
            with counter:
                sampler.sample_clip(video, x["ref_latents"], x["audio_windows"], make_generator(0), progress=False)
        return counter.get_total_flops(), video.batch

    (one, rows), (two, _) = flops(teacher, 1), flops(teacher, 2)
    teacher_40 = one + 39 * (two - one)
    student_4, student_rows = flops(student, 4)
    assert (rows, student_rows) == (2, 1)  # the student folds the guidance in: one row
    ratio = student_4 / teacher_40
    assert ratio <= 0.1, f"4 student steps cost {ratio:.3f} of the teacher's 40 guided steps"
    assert ratio >= 0.04  # 4 one-row steps against 80 rows, plus the reference pass: a real count


def test_a_few_distillation_steps_bring_the_one_step_student_closer_to_the_teachers_render():
    """The acceptance in small (the full one: tests/distill_acceptance.py): a random tiny teacher, a 4-step grid
    and 10 distillation steps on one clip's conditioning. On held-out seeds the student's 1-step render is closer
    (latent MSE) to the teacher's 4-step guided render than the teacher's own 1-step guided render is (observed:
    0.74x of it), and closer than the fresh student (the teacher's unguided row)."""
    from emocast.models.golden import random_step_inputs
    from emocast.pipelines.sampler import ClipSampler, SamplerSettings
    from emocast.pipelines.scheduler import make_generator
    from emocast.training.config import DISTILL_GROUPS
    from emocast.training.distill import distance
    from emocast.training.params import set_trainable

    frames, batch, grid_steps = 2, 2, 4
    torch.manual_seed(0)
    teacher = build_net(TINY).eval()
    student = make_student(teacher, 16)
    params = [p for _, p in set_trainable(student, list(DISTILL_GROUPS))]
    module = DistillModule(student, teacher.denoising_unet, ConsistencyGrid(None, grid_steps))
    x = random_step_inputs(TINY, frames=frames, seed=1)
    rows = lambda t: t.expand(batch, *t.shape[1:])  # noqa: E731
    step = dict(text_emb=rows(x["text_emb"]), empty_text=x["uncond_text_emb"], face_emb=rows(x["face_emb"]),
                face_region=rows(x["face_region"]), ref_latents=rows(x["ref_latents"][None]),
                audio=rows(x["audio_windows"]))
    masks = {lv: [rows(m[lv]) for m in (x["full_masks"], x["face_masks"], x["lip_masks"])] for lv in range(4)}
    keep = {c: torch.ones(batch, dtype=torch.bool) for c in conditioning.CONDITIONS}
    latents = rows(x["latents"])
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(7)
    for _ in range(10):
        noise = torch.randn(latents.shape, generator=g)
        index, w = torch.randint(0, grid_steps, (batch,), generator=g), 2 + 3 * torch.rand(batch, generator=g)
        loss = distance(*module(latents, noise, index, w, keep=keep, masks=masks, **step), "huber", 1e-3).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        module.update_target(0.95)

    kw = {k: x[k] for k in ("text_emb", "uncond_text_emb", "face_emb", "face_region", "full_masks", "face_masks",
                            "lip_masks")}

    def render(net, steps, seed):
        sampler = ClipSampler(net.eval(), None, SamplerSettings(steps=steps, cfg_scale=3.5, clip_length=frames,
                                                               reference_pairing="matched"))
        with torch.inference_mode():
            video = sampler.prepare_video(**kw)
            return sampler.sample_clip(video, x["ref_latents"], x["audio_windows"], make_generator(seed),
                                       progress=False)

    fresh = make_student(teacher, 16)
    errors = {"teacher": 0.0, "student": 0.0, "fresh": 0.0}
    for seed in range(100, 104):  # training drew its noise from generator 7
        ref = render(teacher, grid_steps, seed)
        for name, net in (("teacher", teacher), ("student", student), ("fresh", fresh)):
            errors[name] += float(((render(net, 1, seed) - ref) ** 2).mean())
    assert errors["student"] <= 0.9 * errors["teacher"], errors
    assert errors["student"] <= 0.9 * errors["fresh"], errors


# ------------------------------------------------------------------------------------------------ end to end
def _distill(args):
    return run_main(load_script("train_distill").main, args)


@pytest.fixture(scope="module")
def runs(one_thread, tiny_models, tmp_path_factory):
    """A teacher export, an uninterrupted 2-step distillation, and the same run stopped after step 1 and resumed."""
    root = tmp_path_factory.mktemp("distill")
    meta = make_prepared_dataset(root / "data", identities={"astro": "astronaut"}, emotions=("neutral",))
    teacher = write_teacher(root / "teacher")
    sample = root / "data" / "samples" / "astro_neutral"
    base = ["-c", str(REPO / "configs" / "train" / "distill.yaml"), "--models", str(tiny_models), "--teacher",
            str(teacher), "--max_steps", "2", f"data.datasets=[{{meta: '{meta}'}}]", "data.batch_size=2",
            "data.num_workers=0", "train.mixed_precision=no", "train.gradient_checkpointing=false",
            "optimizer.lr=1e-3", "distill.guidance_embed_dim=16", "distill.steps=3", "logging.every=1",
            "logging.tracker=jsonl", "checkpointing.every=1", "checkpointing.keep_last=2",
            "lr_scheduler.name=linear", "lr_scheduler.warmup_steps=1"]
    straight = root / "straight"
    assert _distill([*base, "--output_dir", str(straight), "validation.every=2", "validation.num_frames=4",
                     f"validation.examples=[{{sample: '{sample}'}}]"]) == 0
    resumed = root / "resumed"
    assert _distill([*base, "--output_dir", str(resumed), "train.stop_at_step=1"]) == 0
    assert not (resumed / "final").exists() and (resumed / "checkpoints" / "checkpoint-0000001").is_dir()
    assert _distill([*base, "--output_dir", str(resumed)]) == 0
    return {"root": root, "teacher": teacher, "straight": straight, "resumed": resumed, "meta": meta}


def _weights(folder):
    return torch.load(folder / "final" / "net.pth", map_location="cpu", weights_only=True)


def test_a_distillation_run_exports_a_student_with_its_card(runs):
    from emocast.models.parameter_groups import group_of
    from emocast.training.tracking import read_metrics

    out = runs["straight"]
    student, teacher = _weights(out), torch.load(runs["teacher"] / "net.pth", weights_only=True)
    assert set(student) - set(teacher) == GUIDANCE_KEYS and set(teacher) <= set(student)
    changed = {k for k in teacher if not torch.equal(teacher[k], student[k])}
    groups = {group_of(k) for k in changed}
    assert changed and groups <= {"denoising_spatial", "motion_modules", "audio_modules", "audio_emo"}, groups
    assert "denoising_spatial" in groups  # the denoising UNet learns; the per-clip conditioning stays the teacher's
    assert any(not torch.equal(student[k], torch.zeros_like(student[k])) for k in GUIDANCE_KEYS
               if "linear_2" in k)  # the guidance embedding left zero
    card, found = read_card(out / "final")
    assert found and card.sampler == "consistency"
    assert card.sampler_options == {"steps": 3, "solver_steps": 40, "guidance_range": [2.0, 5.0]}
    assert (card.image_size, card.clip_length, card.motion_frames, card.reference_pairing) == (64, CLIP, 2, "matched")
    assert card.net["guidance_embed_dim"] == 16 and card.provenance["stage"] == "distill"
    assert card.provenance["step"] == 2 and card.provenance["teacher"].endswith("net.pth")
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] > 0 and r["grad_norm"] > 0 for r in rows)
    ckpt = out / "checkpoints" / "checkpoint-0000002"
    assert json.loads((ckpt / "net.json").read_text())["sampler"] == "consistency"
    from safetensors.torch import load_file

    state = load_file(str(ckpt / "model.safetensors"))  # the EMA target travels with the checkpoint, the teacher not
    assert any(k.startswith("target.") for k in state) and not any(k.startswith("teacher") for k in state)
    mp4 = out / "validation" / "step-0000002" / "astro_neutral.mp4"  # a student render (one row, 4 steps)
    import av

    with av.open(str(mp4)) as c:
        assert len(list(c.decode(video=0))) == 4 and c.streams.audio


def test_resume_after_interruption_gives_the_same_student(runs):
    a, b = _weights(runs["straight"]), _weights(runs["resumed"])
    assert set(a) == set(b)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, f"resumed distillation differs from the uninterrupted one by {worst}"
    from emocast.training.tracking import read_metrics

    ra = {r["step"]: r["loss"] for r in read_metrics(runs["straight"])}
    rb = {r["step"]: r["loss"] for r in read_metrics(runs["resumed"])}
    assert ra[2] == pytest.approx(rb[2], rel=1e-5)  # step 2 uses the EMA target restored from checkpoint 1
    from safetensors.torch import load_file

    ta, tb = (load_file(str(runs[r] / "checkpoints" / "checkpoint-0000002" / "model.safetensors"))
              for r in ("straight", "resumed"))
    targets = [k for k in ta if k.startswith("target.")]
    assert targets and max(float((ta[k] - tb[k]).abs().max()) for k in targets) <= 1e-6  # the EMA target too
    moved = [k for k in targets if not torch.equal(ta[k], ta["net.denoising_unet." + k[len("target."):]])]
    assert moved  # an average behind the student, not a copy of it


def _render(tiny_models, tmp_path, checkpoint, *extra):
    import soundfile as sf
    from PIL import Image

    from emocast.testing.synthetic import face_image, speech

    Image.fromarray(face_image("hanks")[0]).save(tmp_path / "portrait.png")
    sf.write(tmp_path / "speech.wav", speech("Hello there.", 0.2, sr=16000), 16000)
    out = tmp_path / "render.mp4"
    code = run_main(load_script("inference").main, [
        "--source_image", str(tmp_path / "portrait.png"), "--driving_audio", str(tmp_path / "speech.wav"),
        "--models", str(tiny_models), "--checkpoint", str(checkpoint), "--output", str(out), "--no-separator",
        "--device", "cpu", "--no-progress", *extra])
    return code, out


def test_the_student_renders_with_preset_turbo_and_its_card(runs, tiny_models, tmp_path, caplog):
    import av

    from emocast.pipelines.inference import EmoCASTPipeline

    final = runs["straight"] / "final"
    code, out = _render(tiny_models, tmp_path, final, "--preset", "turbo", "--cfg_scale", "3.0")
    assert code == 0
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert c.streams.audio
    assert len(frames) == 5 and frames[0].shape == (64, 64, 3) and frames[0].std() > 0
    settings = dict(device="cpu", progress=False, **{"preprocess.separate_vocals": False})
    pipe = EmoCASTPipeline.from_pretrained(tiny_models, final, preset="turbo", **settings)
    assert pipe.settings.steps == 3 and pipe.settings.clip_length == CLIP and not pipe.sampler.cfg_rows
    assert pipe.net.is_student and pipe.image_size == 64
    pipe.close()
    pipe = EmoCASTPipeline.from_pretrained(tiny_models, final, preset="turbo", inference_steps=1, **settings)
    assert pipe.settings.steps == 1
    pipe.close()
    with caplog.at_level(logging.WARNING):  # a student with the DDIM preset: sampled, with one warning
        pipe = EmoCASTPipeline.from_pretrained(tiny_models, final, **settings)
    assert pipe.settings.steps == 40 and not pipe.sampler.cfg_rows
    assert sum("--preset turbo" in r.getMessage() for r in caplog.records) == 1
    pipe.close()


def test_preset_turbo_refuses_a_ddim_checkpoint_and_more_than_eight_steps(runs, tiny_models, tmp_path, capsys):
    code, out = _render(tiny_models, tmp_path, runs["teacher"], "--preset", "turbo")
    err = capsys.readouterr().err
    assert code != 0 and not out.exists() and "Traceback" not in err
    assert "--preset turbo needs a consistency-distilled student" in err and "train_distill.py" in err
    assert err.count("error:") == 1
    code, _ = _render(tiny_models, tmp_path, runs["straight"] / "final", "--preset", "turbo", "--steps", "9")
    assert code != 0 and "1-8 steps" in capsys.readouterr().err


def test_distillation_config_mistakes_fail_before_anything_runs(runs, tiny_models, tmp_path, capsys):
    base = ["--output_dir", str(tmp_path / "x"), "--models", str(tiny_models)]
    for args, message in (
            (["--teacher", str(runs["straight"] / "final")], "already a consistency student"),
            (["--teacher", str(runs["teacher"]), "train.trainable=[reference_unet]"], "trains only its denoising UNet"),
            (["--teacher", str(runs["teacher"]), "distill.guidance_range=[5, 2]"], "distill.guidance_range"),
            (["--teacher", str(tmp_path / "none")], "models.teacher"),
            (["-c", str(REPO / "configs" / "train" / "stage2_phase1.yaml")], "train_stage2.py")):
        assert _distill([*base, *args]) != 0, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "x").exists()
