"""End to end through the real entry points on the tiny model kit: stage 1, then stage-2 phases 1 → 2 → 3, each
starting from the previous export; per phase, frozen parameters stay identical and trainable ones change; the
final export renders a video with scripts/inference.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train_data import REPO, make_prepared_dataset, run_train_script, tiny_overrides

from helpers import load_script
from emocast.cli import run_main
from emocast.training.params import group_parameters
from emocast.training.tracking import read_metrics

RUNS = [("stage1", 1, "stage1.yaml"), ("phase1", 2, "stage2_phase1.yaml"), ("phase2", 2, "stage2_phase2.yaml"),
        ("phase3", 2, "stage2_phase3.yaml")]
STEPS = 3


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def chain(one_thread, tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("train_chain")
    meta = make_prepared_dataset(root / "data")
    import soundfile as sf
    from PIL import Image

    from emocast.testing.synthetic import face_image, speech

    Image.fromarray(face_image("hanks")[0]).save(root / "portrait.png")  # a raw validation example for stage 2
    sf.write(root / "speech.wav", speech("Hi there.", 0.16, sr=16000), 16000)
    runs, init = {}, None
    for name, stage, cfg in RUNS:
        out = root / name
        args = ["--config", str(REPO / "configs" / "train" / cfg), "--output_dir", str(out), "--models",
                str(tiny_models), "--max_steps", str(STEPS), *tiny_overrides(meta, stage),
                f"models.init_checkpoint={init if init else 'null'}"]
        sample = f"{{sample: '{root / 'data' / 'samples' / 'astro_happy'}'}}"
        if name == "stage1":  # validation renders from a prepared sample folder
            args += [f"validation.every={STEPS}", "validation.steps=2", f"validation.examples=[{sample}]"]
        if name == "phase3":  # ... and from a raw portrait + speech through the inference pipeline
            args += [f"validation.every={STEPS}", "validation.steps=2", "validation.num_frames=4",
                     f"validation.examples=[{sample}, {{image: '{root / 'portrait.png'}', "
                     f"audio: '{root / 'speech.wav'}', prompt: 'A happy person.'}}]"]
        assert run_train_script(stage, args) == 0, name
        runs[name] = {"out": out, "init": init, "cfg": cfg, "models": tiny_models}
        init = out / "final" / "net.pth"
    return runs


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_every_stage_and_phase_runs_exports_and_chains(chain):
    from emocast.models import TINY, build_net

    keys = set(build_net(TINY).state_dict())
    prev = None
    for name, run in chain.items():
        out = run["out"]
        sd = _load(out / "final" / "net.pth")
        assert isinstance(sd, dict) and set(sd) == keys  # the net.pth layout: a plain EmoCASTNet state dict
        from safetensors.torch import load_file

        st = load_file(str(out / "final" / "net.safetensors"))
        assert set(st) == keys and all(torch.equal(st[k], sd[k]) for k in list(keys)[:50])
        from emocast.pipelines.card import read_card

        card, found = read_card(out / "final")  # the checkpoint card: what inference samples the weights with
        assert found and card.reference_pairing == "matched" and card.provenance["step"] == STEPS
        assert card.image_size == (128 if name == "stage1" else 64) and card.provenance["task"] != ""
        assert (card.clip_length, card.motion_frames) == ((16, 2) if name == "stage1" else (6, 2))
        assert card.schedule.prediction_type == "v_prediction" and card.schedule.beta_schedule == "linear"
        scaling = json.loads((run["models"] / "sd-vae-ft-mse" / "config.json").read_text())["scaling_factor"]
        assert card.vae_scaling_factor == scaling
        saved = (out / "config.yaml").read_text()
        assert (str(prev) if prev else "init_checkpoint: null") in saved
        rows = read_metrics(out)
        assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
        assert all(r["loss"] > 0 and r["lr"] > 0 and r["grad_norm"] >= 0 and r["samples_per_s"] > 0 for r in rows)
        assert list((out / "logs").rglob("events.out.tfevents.*")), "TensorBoard events missing"
        ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
        assert ckpts == [f"checkpoint-{STEPS:07d}"]
        state = json.loads((out / "checkpoints" / ckpts[0] / "trainer_state.json").read_text())
        assert state["step"] == STEPS and state["data_position"] == STEPS
        prev = out / "final" / "net.pth"
    png = chain["stage1"]["out"] / "validation" / f"step-{STEPS:07d}" / "astro_happy.png"
    mp4 = chain["phase3"]["out"] / "validation" / f"step-{STEPS:07d}" / "astro_happy.mp4"
    assert png.is_file() and mp4.is_file()
    import av
    import numpy as np
    from PIL import Image

    assert np.asarray(Image.open(png)).shape == (128, 3 * 128, 3)  # reference | face region | generated
    with av.open(str(mp4)) as c:
        assert len([f for f in c.decode(video=0)]) == 4 and c.streams.audio
    raw = chain["phase3"]["out"] / "validation" / f"step-{STEPS:07d}" / "portrait_speech.mp4"  # inference pipeline
    with av.open(str(raw)) as c:
        assert len([f for f in c.decode(video=0)]) == 4 and c.streams.audio
    stage1 = read_metrics(chain["stage1"]["out"])[-1]
    assert stage1.get("data/ref_neutral", 0) + stage1.get("data/ref_same_video", 0) == STEPS


# modules that exist for checkpoint compatibility but never run (spec §2.4 and §11 item 48): their weights get no
# gradient, so training cannot change them
NEVER_RUN = ("denoising_unet.down_blocks.3.motion_modules.", "denoising_unet.up_blocks.0.motion_modules.")


def _reference_tail(net) -> set[str]:
    """ReferenceNet parameters after the last recorded ``norm1`` (their output is discarded, spec §11 item 48)."""
    last = [p for p in net.reference_unet.transformer_paths() if p.startswith("up_blocks.")][-1]
    last = f"reference_unet.{last}."
    keep = (f"{last}norm.", f"{last}proj_in.", f"{last}transformer_blocks.0.norm1.")
    return {n for n, _ in net.named_parameters() if n.startswith(last) and not n.startswith(keep)}


@pytest.mark.parametrize("name", [r[0] for r in RUNS])
def test_each_phase_changes_only_its_trainable_groups(chain, name):
    from omegaconf import OmegaConf

    from emocast.training.common import build_training_net

    run = chain[name]
    cfg = OmegaConf.load(run["out"] / "config.yaml")
    torch.manual_seed(int(cfg.seed))
    net = build_training_net(cfg.models)  # the phase's starting point (fresh modules seeded as in training)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    after = _load(run["out"] / "final" / "net.pth")
    trainable = {n for n, _ in group_parameters(net, cfg.train.trainable)}
    assert trainable
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed <= trainable, f"frozen tensors changed: {sorted(changed - trainable)[:5]}"
    expected = {k for k in trainable if not k.startswith(NEVER_RUN)} - _reference_tail(net)
    unchanged = expected - changed
    assert not unchanged, f"trainable tensors unchanged after {STEPS} steps: {sorted(unchanged)[:8]}"


def test_exported_checkpoint_renders_a_video_with_the_inference_script(chain, tiny_models, tmp_path):
    
    import av
    import soundfile as sf
    from PIL import Image

    from emocast.cli import run_main
    from emocast.testing.synthetic import face_image, speech

    Image.fromarray(face_image("hanks")[0]).save(tmp_path / "portrait.png")
    sf.write(tmp_path / "speech.wav", speech("Hello there.", 0.2, sr=16000), 16000)
    cli = load_script("inference")
    out = tmp_path / "render.mp4"
    code = run_main(cli.main, ["--source_image", str(tmp_path / "portrait.png"), "--driving_audio",
                               str(tmp_path / "speech.wav"), "--prompt_emo", "A person is talking with happy emotion.",
                               "--models", str(tiny_models), "--checkpoint", str(chain["phase3"]["out"] / "final"),
                               "--output", str(out), "--steps", "2", "--no-separator", "--device", "cpu",
                               "--no-progress", "data.n_sample_frames=4"])
    assert code == 0 and out.is_file()
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 5 and frames[0].std() > 0


def test_export_checkpoint_script_matches_the_final_export(chain, tmp_path):
    
    from emocast.cli import run_main

    cli = load_script("export_checkpoint")
    run = chain["phase2"]["out"]
    assert run_main(cli.main, [str(run), "-o", str(tmp_path / "exp")]) == 0  # newest checkpoint of the run
    a, b = _load(tmp_path / "exp" / "net.pth"), _load(run / "final" / "net.pth")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "exp" / "net.json").read_text())["reference_pairing"] == "matched"
    assert run_main(cli.main, [str(tmp_path)]) != 0  # not a checkpoint: a message, no traceback


def test_accelerate_launch_entry_point_with_a_loader_worker(tiny_models, tmp_path):
    """The documented launcher (accelerate launch + configs/accelerate/cpu.yaml), one DataLoader worker process."""
    import os
    import subprocess
    import sys

    meta = make_prepared_dataset(tmp_path / "data", identities={"astro": "astronaut"})
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(REPO / "configs" / "accelerate" / "cpu.yaml"),
           str(REPO / "scripts" / "train_stage2.py"), "--config", str(REPO / "configs" / "train" / "stage2_phase3.yaml"),
           "--output_dir", str(tmp_path / "out"), "--models", str(tiny_models), "--max_steps", "1",
           *tiny_overrides(meta, 2), "data.num_workers=1", "models.init_checkpoint=null", "train.mixed_precision=auto"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "out" / "final" / "net.pth").is_file() and "done: step 1" in res.stdout


def test_user_errors_are_one_message_and_a_nonzero_exit(tiny_models, tmp_path, capsys):
    cfg = str(REPO / "configs" / "train" / "stage2_phase1.yaml")
    rc = run_train_script(2, ["--config", cfg, "--output_dir", str(tmp_path), "--models", str(tiny_models),
                              "data.datasets=[{meta: /nonexistent/meta.json}]", "models.net=tiny",
                              "models.init_checkpoint=null"])
    err = capsys.readouterr().err
    assert rc != 0 and "meta file /nonexistent/meta.json not found" in err and "Traceback" not in err
    rc = run_train_script(1, ["--config", cfg])  # a stage-2 config given to the stage-1 script
    assert rc != 0 and "train_stage2.py" in capsys.readouterr().err
    rc = run_train_script(2, ["--config", cfg, "--output_dir", str(tmp_path), "--models", str(tmp_path / "none")])
    assert rc != 0 and "download_models.py" in capsys.readouterr().err


def test_two_process_ddp_on_cpu(tiny_models, tmp_path):
    """Real DistributedDataParallel (gloo) with two CPU processes: one export, summed counters, per-rank RNG."""
    import os
    import subprocess
    import sys

    meta = make_prepared_dataset(tmp_path / "data", identities={"astro": "astronaut"})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29561",
           str(REPO / "scripts" / "train_stage2.py"), "--config", str(REPO / "configs" / "train" / "stage2_phase1.yaml"),
           "--output_dir", str(out), "--models", str(tiny_models), "--max_steps", "2", *tiny_overrides(meta, 2),
           "models.init_checkpoint=null", "checkpointing.every=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("exported") == 1 and res.stdout.count("done: step 2") == 2
    assert read_metrics(out)[-1]["data/samples"] == 4  # 2 steps x batch 1 x 2 processes
    ckpt = out / "checkpoints" / "checkpoint-0000002"
    assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()
    assert json.loads((ckpt / "trainer_state.json").read_text())["world_size"] == 2


def test_config_mistakes_fail_before_training_naming_the_key(tiny_models, tmp_path, capsys):
    cfg = str(REPO / "configs" / "train" / "stage2_phase1.yaml")
    for override, message in (("train.max_stpes=5", "did you mean 'train.max_steps'"),
                              ("train.max_steps=abc", "train.max_steps must be an integer"),
                              ("data.batch_size=0", "data.batch_size must be at least 1")):
        rc = run_train_script(2, ["--config", cfg, "--output_dir", str(tmp_path / "x"), override])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "Traceback" not in err, override
    rc = run_train_script(1, ["--output_dir", str(tmp_path / "x"), "lip_wieght=0.2"])
    assert rc == 2 and "unknown config key 'lip_wieght'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing was started


def test_output_dir_is_a_path_not_yaml(tiny_models, tmp_path, capsys):
    """`--output_dir "runs/my run #2"` trains into exactly that folder (YAML would cut it at the '#')."""
    meta = make_prepared_dataset(tmp_path / "data", identities={"astro": "astronaut"})
    out = tmp_path / "runs" / "my run #2"
    rc = run_train_script(2, ["-c", str(REPO / "configs" / "train" / "stage2_phase3.yaml"), "--output_dir", str(out),
                              "--models", str(tiny_models), "--max_steps", "1", *tiny_overrides(meta, 2),
                              "models.init_checkpoint=null"])
    assert rc == 0 and (out / "final" / "net.pth").is_file()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["my run #2"]


def test_an_epsilon_128px_checkpoint_renders_at_128px_with_epsilon_sampling(tiny_models, tmp_path):
    """The checkpoint card carries what sampling needs: a net trained at 128 px with prediction_type=epsilon renders
    at 128 px with the epsilon schedule through scripts/inference.py, with no flag saying so."""
    import av
    import soundfile as sf
    from PIL import Image

    from emocast.pipelines.inference import EmoCASTPipeline
    from emocast.testing.synthetic import face_image, speech

    meta = make_prepared_dataset(tmp_path / "data", size=128, identities={"astro": "astronaut"})
    run = tmp_path / "eps"
    rc = run_train_script(2, ["-c", str(REPO / "configs" / "train" / "stage2_phase3.yaml"), "--output_dir", str(run),
                              "--models", str(tiny_models), "--max_steps", "1", *tiny_overrides(meta, 2),
                              "data.size=128", "data.n_sample_frames=4", "noise.prediction_type=epsilon",
                              "noise.beta_schedule=scaled_linear", "noise.zero_snr=false", "models.init_checkpoint=null"])
    assert rc == 0
    pipe = EmoCASTPipeline.from_pretrained(tiny_models, run / "final", device="cpu", progress=False,
                                           **{"preprocess.separate_vocals": False})
    sched = pipe.sampler.scheduler.config
    assert pipe.image_size == 128 and pipe.settings.clip_length == 4 and pipe.settings.reference_pairing == "matched"
    assert sched.prediction_type == "epsilon" and sched.beta_schedule == "scaled_linear"
    pipe.close()
    Image.fromarray(face_image("hanks")[0]).save(tmp_path / "portrait.png")
    sf.write(tmp_path / "speech.wav", speech("Hi.", 0.2, sr=16000), 16000)
    out = tmp_path / "render.mp4"
    code = run_main(load_script("inference").main, [
        "--source_image", str(tmp_path / "portrait.png"), "--driving_audio", str(tmp_path / "speech.wav"),
        "--models", str(tiny_models), "--checkpoint", str(run / "final"), "--output", str(out), "--steps", "2",
        "--no-separator", "--device", "cpu", "--no-progress"])
    assert code == 0
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (128, 128, 3)
