"""End to end through the real entry points on the tiny model kit: stage 1, then stage-2 phases 1 → 2 → 3, each
starting from the previous export; per phase, frozen parameters stay identical and trainable ones change (except
those whose gradient is zero in exact arithmetic at the test's size, named by :func:`exact_zero_gradients`); the
final export renders a video with scripts/inference.py.

The chain trains under PyTorch's MATH attention kernel: there a softmax over one key is exactly 1.0 and its
backward ``y * (g - sum(g * y))`` exactly 0, so the query/key weights of an attention with a single key get an
exactly-zero gradient on every CPU (the fused CPU flash kernel leaves rounding noise there, which moved those
weights on some machines and not on others). With ``optimizer.weight_decay=0`` AdamW's update of a parameter
whose gradient is always zero is exactly zero."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
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
    with sdpa_kernel(SDPBackend.MATH):  # exact zeros stay exact (module docstring)
        for name, stage, cfg in RUNS:
            _train(root, meta, tiny_models, name, stage, cfg, init)
            runs[name] = {"out": root / name, "init": init, "cfg": cfg, "models": tiny_models}
            init = root / name / "final" / "net.pth"
    return runs


def _train(root, meta, tiny_models, name, stage, cfg, init):
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
    assert run_train_script(stage, args) == 0, name  # in this process: the MATH kernel choice applies


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
STAGE = {name: stage for name, stage, _ in RUNS}
VAE_DOWNSAMPLING = 8  # the kit's VAE, like SD's


def _reference_tail(net) -> set[str]:
    """ReferenceNet parameters after the last recorded ``norm1`` (their output is discarded, spec §11 item 48)."""
    last = [p for p in net.reference_unet.transformer_paths() if p.startswith("up_blocks.")][-1]
    last = f"reference_unet.{last}."
    keep = (f"{last}norm.", f"{last}proj_in.", f"{last}transformer_blocks.0.norm1.")
    return {n for n, _ in net.named_parameters() if n.startswith(last) and not n.startswith(keep)}


def _level_sizes(latent: int, levels: int) -> list[int]:
    """Side of the feature maps at each UNet level: each Downsample2D (3x3, stride 2, padding 1) maps s to
    floor((s - 1) / 2) + 1 = ceil(s / 2)."""
    sizes = [latent]
    while len(sizes) < levels:
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def _level(path: str, levels: int) -> int:
    """UNet level of a module path inside a UNet: down_blocks.i -> i, mid_block -> last, up_blocks.i -> last - i
    (every module of a block runs at the block's resolution, before its down/upsampler); others: level 0."""
    parts = path.split(".")
    if parts[0] == "down_blocks":
        return int(parts[1])
    if parts[0] == "up_blocks":
        return levels - 1 - int(parts[1])
    return levels - 1 if parts[0] == "mid_block" else 0


def exact_zero_gradients(net, latent: int, *, temporal: bool, frames: int = 1, motion_frames: int = 0,
                         text_tokens: int = 77) -> dict[str, set[str]]:
    """The parameters of an EmoCASTNet whose gradient is zero in exact arithmetic when it trains on
    ``latent`` x ``latent`` latents, from the network structure alone, by reason.

    ``temporal=False``: stage 1 (no audio/motion modules); ``True``: stage 2 with ``frames`` target frames and
    ``motion_frames`` motion frames. The denoising UNet's self-attention also attends to the reference tokens
    (as many as its own); the ReferenceNet's does not. Text contexts have ``text_tokens`` tokens (CLIP: 77).

    ``"single_key"``: ``to_q``/``to_k`` of every attention that runs with one key/value token: the softmax over
    one key is 1 whatever the query and the key, so the output is ``to_v``'s. Checked for every attention: the
    spatial self-attention (``attn1``, keys = own h*w [+ reference h*w]), the decoupled cross-attention
    (``attn2``: text keys through ``to_k``, face keys through ``processor.to_k_ip``, ``to_q`` shared), the audio
    module's self-attention (h*w), emotive audio attention (audio context tokens) and mask-gated
    cross-attentions (``text_tokens``), and the motion modules' temporal attentions (frames + motion frames).
    Under the MATH SDPA kernel these gradients are exactly 0 in float too.

    ``"single_value_norm"``: the weight of every GroupNorm that normalises one value per group
    (channels / groups x h x w = 1): ``x - mean(x) = 0``, so the output is the bias whatever the weight. In float
    ``x - mean(x)`` is rounding noise amplified by ``1/sqrt(eps)``: whether such a weight moves depends on the
    CPU's GroupNorm kernel, so a test can assert neither that it changes nor that it stays.
    """
    from diffusers.models.attention_processor import Attention

    from emocast.models.audio_module import AudioModule
    from emocast.models.motion_module import MotionModule
    from emocast.models.spatial_transformer import SpatialTransformer

    cfg = net.config
    single_key: set[str] = set()
    single_value: set[str] = set()

    def qk(prefix: str, attn: Attention, which=("to_q", "to_k")):
        for part in which:
            single_key.update(f"{prefix}.{part}.{n}" for n, _ in attn.get_submodule(part).named_parameters())

    for unet_name in ("reference_unet", "denoising_unet"):
        unet = getattr(net, unet_name)
        denoising = unet_name == "denoising_unet"
        sizes = _level_sizes(latent, cfg.num_levels)
        tail = unet.up_blocks[-1].attentions[-1].path if not denoising else None  # runs up to its norm1 only

        def runs(path: str) -> bool:
            if tail is not None and path.startswith(f"{tail}.") and not path.startswith(f"{tail}.norm"):
                return False
            if ".audio_modules." in f".{path}" or ".motion_modules." in f".{path}":
                if not temporal:
                    return False
            if ".motion_modules." in f".{path}":  # only in the blocks with a spatial transformer (spec §2.4)
                block = unet.get_submodule(path.split(".motion_modules.")[0])
                return hasattr(block, "attentions")
            return True

        for path, m in unet.named_modules():
            if not isinstance(m, (torch.nn.GroupNorm, SpatialTransformer, AudioModule, MotionModule)) or not runs(path):
                continue
            hw = sizes[_level(path, cfg.num_levels)] ** 2
            full = f"{unet_name}.{path}"
            if isinstance(m, torch.nn.GroupNorm) and (m.num_channels // m.num_groups) * hw == 1:
                single_value.add(f"{full}.weight")
            elif isinstance(m, SpatialTransformer) and path != tail:
                block = m.transformer_blocks[0]
                if hw * (2 if denoising else 1) == 1:  # denoising: own tokens + the reference's
                    qk(f"{full}.transformer_blocks.0.attn1", block.attn1)
                if text_tokens == 1:
                    qk(f"{full}.transformer_blocks.0.attn2", block.attn2, ("to_k",))
                if cfg.num_face_tokens == 1:
                    single_key.update(f"{full}.transformer_blocks.0.attn2.processor.to_k_ip.{n}"
                                      for n, _ in block.attn2.processor.to_k_ip.named_parameters())
                if text_tokens == 1 and cfg.num_face_tokens == 1:
                    qk(f"{full}.transformer_blocks.0.attn2", block.attn2, ("to_q",))
            elif isinstance(m, AudioModule):
                assert m.level == _level(path, cfg.num_levels), path  # the mask level it reads = its resolution
                block = m.transformer_blocks[0]
                keys = {"attn1": hw, "attn_audioemo": cfg.audio_context_tokens, "attn2_0": text_tokens,
                        "attn2_1": text_tokens, "attn2_2": text_tokens}
                for name, n_keys in keys.items():
                    if n_keys == 1:
                        qk(f"{full}.transformer_blocks.0.{name}", getattr(block, name))
            elif isinstance(m, MotionModule) and frames + motion_frames == 1:
                block = m.temporal_transformer.transformer_blocks[0]
                for i, attn in enumerate(block.attention_blocks):
                    qk(f"{full}.temporal_transformer.transformer_blocks.0.attention_blocks.{i}", attn)
    names = {n for n, _ in net.named_parameters()}
    assert single_key <= names and single_value <= names
    return {"single_key": single_key, "single_value_norm": single_value}


def _zero_gradients_of_run(net, cfg, name) -> dict[str, set[str]]:
    d = cfg.data
    stage2 = STAGE[name] == 2
    return exact_zero_gradients(net, int(d.size) // VAE_DOWNSAMPLING, temporal=stage2,
                                frames=int(d.n_sample_frames) if stage2 else 1,
                                motion_frames=int(d.n_motion_frames) if stage2 else 0)


@pytest.mark.parametrize("name", [r[0] for r in RUNS])
def test_each_phase_changes_only_its_trainable_groups(chain, name):
    """Frozen tensors are bit-identical; the trainable ones whose gradient is zero in exact arithmetic
    (single-key attention) are bit-identical too; every other trainable tensor that runs has changed."""
    from omegaconf import OmegaConf

    from emocast.training.common import build_training_net

    run = chain[name]
    cfg = OmegaConf.load(run["out"] / "config.yaml")
    # the premise of "zero gradient -> unchanged": no decoupled weight decay (module docstring)
    assert cfg.optimizer.name == "adamw" and float(cfg.optimizer.weight_decay) == 0.0
    torch.manual_seed(int(cfg.seed))
    net = build_training_net(cfg.models)  # the phase's starting point (fresh modules seeded as in training)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    after = _load(run["out"] / "final" / "net.pth")
    trainable = {n for n, _ in group_parameters(net, cfg.train.trainable)}
    assert trainable
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed <= trainable, f"frozen tensors changed: {sorted(changed - trainable)[:5]}"
    zero = _zero_gradients_of_run(net, cfg, name)
    moved = zero["single_key"] & changed
    assert not moved, f"tensors with an exactly-zero gradient changed: {sorted(moved)[:5]}"
    expected = ({k for k in trainable if not k.startswith(NEVER_RUN)} - _reference_tail(net) - zero["single_key"]
                - zero["single_value_norm"])
    unchanged = expected - changed
    assert not unchanged, f"trainable tensors unchanged after {STEPS} steps: {sorted(unchanged)[:8]}"


SINGLE_KEY_AT_TEST_SIZE = {  # stage 2 at 64 px: the mid block is 1x1
    f"{unet}.mid_block.{module}.transformer_blocks.0.attn1.{qk}.weight"
    for unet, module in (("reference_unet", "attentions.0"), ("denoising_unet", "audio_modules.0"))
    for qk in ("to_q", "to_k")}  # the denoising UNet's spatial attn1 there also sees the reference token
SINGLE_VALUE_NORMS_AT_TEST_SIZE = {  # 32 channels / 32 groups at 1x1 (up_blocks.0 norm1 sees 64 channels)
    f"{unet}.{module}.weight" for unet in ("reference_unet", "denoising_unet")
    for module in ("down_blocks.3.resnets.0.norm1", "down_blocks.3.resnets.0.norm2", "mid_block.resnets.0.norm1",
                   "mid_block.resnets.0.norm2", "mid_block.resnets.1.norm1", "mid_block.resnets.1.norm2",
                   "mid_block.attentions.0.norm", "up_blocks.0.resnets.0.norm2", "up_blocks.0.resnets.1.norm2")} | {
    "denoising_unet.mid_block.audio_modules.0.norm.weight",
    "denoising_unet.mid_block.motion_modules.0.temporal_transformer.norm.weight"}


@pytest.fixture(scope="module")
def tiny_net():
    from emocast.models import TINY, build_net

    return build_net(TINY)


def test_exact_zero_gradients_names_the_degenerate_parameters(tiny_net):
    """The rule of exact_zero_gradients on the tiny net: the test's sizes, sizes without any degenerate
    attention or norm, and degenerate temporal attention (one frame, no motion frames)."""
    net = tiny_net
    stage2 = exact_zero_gradients(net, 64 // VAE_DOWNSAMPLING, temporal=True, frames=6, motion_frames=2)
    assert stage2 == {"single_key": SINGLE_KEY_AT_TEST_SIZE, "single_value_norm": SINGLE_VALUE_NORMS_AT_TEST_SIZE}
    # stage 1 at the same size: no audio/motion modules, the ReferenceNet's mid attn1 still has one key
    stage1 = exact_zero_gradients(net, 64 // VAE_DOWNSAMPLING, temporal=False)
    assert stage1["single_key"] == {k for k in SINGLE_KEY_AT_TEST_SIZE if k.startswith("reference_unet.")}
    assert stage1["single_value_norm"] == {k for k in SINGLE_VALUE_NORMS_AT_TEST_SIZE
                                           if ".audio_modules." not in k and ".motion_modules." not in k}
    # 128 px (stage 1 of the chain): the lowest level is 2x2, every attention sees >= 2 keys, every norm >= 2 values
    for temporal in (False, True):
        assert exact_zero_gradients(net, 128 // VAE_DOWNSAMPLING, temporal=temporal, frames=6, motion_frames=2) == {
            "single_key": set(), "single_value_norm": set()}
    # one frame and no motion frames: every motion module that runs has single-key temporal attentions
    one = exact_zero_gradients(net, 128 // VAE_DOWNSAMPLING, temporal=True, frames=1, motion_frames=0)["single_key"]
    running = [n for n, _ in net.named_parameters() if ".motion_modules." in n and not n.startswith(NEVER_RUN)]
    assert one == {n for n in running if ".attention_blocks." in n and (".to_q." in n or ".to_k." in n)}
    assert len(one) == 2 * 2 * 10  # 2 attentions x (to_q, to_k) x 10 running motion modules (bias-free)


@pytest.mark.parametrize("keys", [1, 2])
def test_single_key_attention_gets_an_exactly_zero_query_key_gradient_under_math_sdpa(keys):
    """The premise of the phase test, on this CPU: one key -> to_q/to_k gradients exactly 0 (two keys: not)."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    from emocast.models.attention_ops import multihead as attention

    torch.manual_seed(0)
    attn = Attention(query_dim=32, heads=8, dim_head=4, bias=False)
    assert isinstance(attn.processor, AttnProcessor2_0)  # diffusers' processor calls F.scaled_dot_product_attention
    x = torch.randn(6, keys, 32) * 3
    g = torch.randn(6, keys, 32)
    with sdpa_kernel(SDPBackend.MATH):
        (attn(x) * g).sum().backward()
        q = torch.randn(6, 5, 32, requires_grad=True)  # the decoupled processor's attention (5 queries)
        k = torch.randn(6, keys, 32, requires_grad=True)
        (attention(q, k, torch.randn(6, keys, 32), heads=8) * torch.randn(6, 5, 32)).sum().backward()
    grads = [attn.to_q.weight.grad, attn.to_k.weight.grad, q.grad, k.grad]
    if keys == 1:
        assert all(bool((gr == 0).all()) for gr in grads)
    else:
        assert all(float(gr.abs().max()) > 1e-3 for gr in grads)
    assert float(attn.to_v.weight.grad.abs().max()) > 1e-3


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
    assert not sched.rescale_betas_zero_snr
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
    assert all(np.isfinite(f).all() and f.std() > 0 for f in frames)
