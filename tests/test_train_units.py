"""Training building blocks: per-sample Min-SNR weighting, v-target, noise offset, CFG dropout, checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emocast.errors import ConfigError
from emocast.training import checkpointing
from emocast.training.config import DropoutConfig, NoiseConfig, OptimizerConfig
from emocast.training.dropout import draw_keep
from emocast.training.losses import diffusion_loss, min_snr_weights, per_sample_mse, snr
from emocast.training.noise import make_train_scheduler, noisy_and_target, sample_noise, train_schedule

REPO = Path(__file__).resolve().parents[1]


def test_min_snr_weights_are_applied_per_sample_not_batch_collapsed():
    pred = torch.zeros(2, 4, 1, 2, 2)
    target = torch.stack([torch.full((4, 1, 2, 2), 1.0), torch.full((4, 1, 2, 2), 3.0)])
    w = torch.tensor([1.0, 0.1])
    loss, per = diffusion_loss(pred, target, w)
    assert torch.allclose(per, torch.tensor([1.0, 9.0]))
    assert loss.item() == pytest.approx((1.0 * 1 + 0.1 * 9) / 2)  # Hallo's stage 2 would give 5 * 0.55 = 2.75
    assert loss.item() != pytest.approx(per.mean().item() * w.mean().item())


def test_min_snr_v_prediction_formula_and_zero_snr_end():
    s = torch.tensor([0.0, 1.0, 5.0, 100.0])
    w = min_snr_weights(s, 5.0, "v_prediction")
    assert torch.allclose(w, torch.tensor([0.0, 0.5, 5 / 6, 5 / 101]))
    assert torch.equal(min_snr_weights(s, None), torch.ones(4))
    sched = make_train_scheduler(train_schedule(NoiseConfig(beta_schedule="linear", zero_snr=True)))
    t = torch.tensor([0, 500, 999])
    values = snr(sched.alphas_cumprod, t)
    assert values[2] == 0 and values[0] > values[1] > 0  # zero terminal SNR


def test_schedule_choice_and_v_target():
    lin, scaled = (make_train_scheduler(train_schedule(NoiseConfig(beta_schedule=b)))
                   for b in ("linear", "scaled_linear"))
    assert not torch.allclose(lin.alphas_cumprod, scaled.alphas_cumprod)
    from emocast import config
    from emocast.training.config import Stage1Config

    with pytest.raises(ConfigError, match="noise.beta_schedule must be one of linear, scaled_linear"):
        config.load(Stage1Config, (), ["noise.beta_schedule=cosine"])
    x0, eps = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    t = torch.tensor([10, 900])
    noisy, v = noisy_and_target(lin, x0, eps, t)
    a = lin.alphas_cumprod[t].sqrt().view(2, 1, 1, 1, 1)
    s = (1 - lin.alphas_cumprod[t]).sqrt().view(2, 1, 1, 1, 1)
    assert torch.allclose(noisy, a * x0 + s * eps, atol=1e-6) and torch.allclose(v, a * eps - s * x0, atol=1e-6)


def test_noise_offset_is_per_sample_and_channel_and_seeded():
    lat = torch.zeros(3, 4, 5, 6, 6)
    n1 = sample_noise(lat, 0.5, torch.Generator().manual_seed(1))
    n2 = sample_noise(lat, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(n1, n2)
    plain = sample_noise(lat, 0.0, torch.Generator().manual_seed(1))
    offset = n1 - plain
    assert torch.allclose(offset, offset[:, :, :1, :1, :1].expand_as(offset))  # constant over frames and pixels
    assert offset[:, :, 0, 0, 0].std() > 0.1


def test_cfg_dropout_rates_and_all_drop():
    g = torch.Generator().manual_seed(0)
    m = draw_keep(20000, DropoutConfig(reference=0.1, audio=0.3, text=0.0, face=0.0, face_region=0.0, all=0.05), g)
    assert abs((~m.reference).float().mean() - (0.1 + 0.05 - 0.005)) < 0.01
    assert abs((~m.audio).float().mean() - (0.3 + 0.05 - 0.015)) < 0.015
    assert torch.equal(~m.text, ~m.face)  # only the joint drop removes text and face here
    assert abs((~m.text).float().mean() - 0.05) < 0.006
    from emocast import config
    from emocast.pipelines.conditioning import keep_rows
    from emocast.training.config import Stage2Config

    assert torch.equal(keep_rows(torch.ones(2, 3), torch.tensor([True, False])), torch.tensor([[1.0] * 3, [0.0] * 3]))
    with pytest.raises(ConfigError, match="did you mean 'dropout.reference'"):
        config.load(Stage2Config, (), ["dropout.refernce=0.1"])
    with pytest.raises(ConfigError, match="dropout.all must be at most 1"):
        config.load(Stage2Config, (), ["dropout.all=1.5"])


class _FakeAccelerator:
    is_main_process = True

    def wait_for_everyone(self):
        pass

    def save_state(self, path):
        from pathlib import Path

        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "model.safetensors").write_bytes(b"x")


def test_checkpoints_are_atomic_pruned_and_resolved(tmp_path):
    acc = _FakeAccelerator()
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        checkpointing.save_checkpoint(acc, root, step, {"step": step, "data_position": step}, keep_last=2)
    (root / ".tmp-checkpoint-0000004").mkdir()  # a write interrupted by a crash
    (root / "checkpoint-0000005").mkdir()  # a folder without trainer_state.json is not complete
    assert [s for s, _ in checkpointing.list_checkpoints(root)] == [2, 3]
    assert checkpointing.resolve_resume("latest", root).name == "checkpoint-0000003"
    assert checkpointing.resolve_resume("none", root) is None
    assert json.loads((root / "checkpoint-0000003" / "trainer_state.json").read_text())["step"] == 3
    with pytest.raises(Exception, match="not a complete training checkpoint"):
        checkpointing.resolve_resume(str(root / "checkpoint-0000005"), root)


def test_export_writes_plain_state_dict_safetensors_and_card(tmp_path):
    from safetensors.torch import load_file

    from emocast.pipelines.card import CheckpointCard, read_card

    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    card = CheckpointCard(image_size=128, reference_pairing="matched", provenance={"producer": "emocast.training"})
    paths = checkpointing.export_weights(net, tmp_path / "final", card, dtype=torch.float16)
    sd = torch.load(paths["pth"], map_location="cpu", weights_only=True)
    assert type(sd) is dict and set(sd) == {"0.weight", "0.bias"} and sd["0.weight"].dtype == torch.float16
    st = load_file(str(paths["safetensors"]))
    assert torch.equal(st["0.weight"], sd["0.weight"])
    assert read_card(paths["pth"]) == (card, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no temporary folder left


def test_per_sample_mse_shape():
    assert per_sample_mse(torch.ones(3, 2, 2), torch.zeros(3, 2, 2)).shape == (3,)


def test_optimizers_adamw_and_8bit_adamw():
    from emocast.training.trainer import build_optimizer

    for name in ("adamw", "adamw8bit"):
        p = torch.nn.Parameter(torch.randn(64, 64))
        opt = build_optimizer([p], OptimizerConfig(name=name, lr=1e-3))
        before = p.detach().clone()
        p.grad = torch.randn_like(p)
        opt.step()
        assert (p.detach() - before).abs().max() > 5e-4
        if name == "adamw8bit":  # bitsandbytes keeps quantised (uint8) moments
            assert any(v.dtype == torch.uint8 for v in opt.state[p].values() if isinstance(v, torch.Tensor))


def test_ddp_find_unused_parameters_per_stage_and_guard():
    """Stage 1 trains the ReferenceNet, whose last block never gets a gradient -> DDP must search for unused
    parameters; every stage-2 phase's trainable tensors all get one (the two-process DDP test runs phase 1 with
    false), so DDP skips that search; false with the ReferenceNet trainable is refused before DDP fails."""
    from emocast import config
    from emocast.training.config import SCHEMAS

    expected = {"stage1.yaml": True, "stage2_phase1.yaml": False, "stage2_phase2.yaml": False,
                "stage2_phase3.yaml": False}
    for name, value in expected.items():
        path = REPO / "configs" / "train" / name
        cfg = config.load(SCHEMAS[config.read_yaml(path)["stage"]], path)
        assert cfg.train.find_unused_parameters is value, name
    with pytest.raises(ConfigError, match="find_unused_parameters=true"):
        config.load(SCHEMAS["stage2"], (), ["train.find_unused_parameters=false",
                                            "train.trainable=[reference_unet, audioproj]"])


def test_never_running_motion_modules_cannot_be_trained():
    from emocast.models import build_net
    from emocast.training.params import set_trainable

    net = build_net("tiny")
    with pytest.raises(ConfigError, match="never run"):
        set_trainable(net, ["motion_modules", "unused_motion_modules"])


def test_stage2_reference_pass_keeps_the_graph_when_its_conditioning_is_trained():
    """A frozen ReferenceNet runs without autograd, unless the face tokens it reads come from a trainable ImageProj
    (their gradient through the reference tokens would otherwise be lost silently)."""
    from emocast.models import build_net
    from emocast.training.common import StepModule
    from emocast.training.params import set_trainable

    class Stop(Exception):
        pass

    net = build_net("tiny")
    seen = []

    def record(*args, **kwargs):
        seen.append(torch.is_grad_enabled())
        raise Stop

    net.reference_features = record
    cfg = net.config
    text = torch.zeros(1, 77, cfg.cross_attention_dim)
    inputs = dict(text_emb=text, empty_text=text, face_emb=torch.randn(1, 512),
                  face_region=torch.zeros(1, 3, 64, 64), ref_latents=torch.zeros(3, 4, 8, 8), masks=None,
                  audio=torch.zeros(1, 2, cfg.audio_window, cfg.audio_layers, cfg.audio_feature_dim),
                  keep={k: torch.ones(1, dtype=torch.bool) for k in ("reference", "audio", "text", "face",
                                                                       "face_region")})
    for groups, grad in ((["audio_modules", "audioproj"], False), (["imageproj", "audioproj"], True)):
        set_trainable(net, groups)
        with pytest.raises(Stop):
            StepModule(net)(torch.zeros(1, 4, 2, 8, 8), None, **inputs)
        assert seen.pop() is grad, groups


def test_export_default_output_is_outside_the_pruned_checkpoints(tmp_path):
    from helpers import load_script

    cli = load_script("export_checkpoint")
    ckpt = tmp_path / "run" / "checkpoints" / "checkpoint-0000500"
    assert cli.default_output(ckpt) == tmp_path / "run" / "exports" / "checkpoint-0000500"
    assert cli.default_output(tmp_path / "elsewhere") == tmp_path / "elsewhere" / "export"


def test_stage2_drop_all_row_is_the_samplers_unconditional_row_and_keep_all_its_conditional_row():
    """Through the one step owner: a training batch of [drop everything, keep everything] (empty text,
    imageproj(0), zero audio tokens, no reference tokens, zero face-region feature, motion tokens kept) predicts
    what the sampler's [unconditional, conditional] CFG rows predict (tiny net with every weight perturbed, so no
    zero-init hides a branch), and so do single-sample batches."""
    from emocast.models import build_net
    from emocast.pipelines.conditioning import Keep, model_output, prepare_clip, prepare_video
    from emocast.training.common import StepModule

    torch.manual_seed(0)
    net = build_net("tiny")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cfg, f, m, h = net.config, 2, 2, 8
    g = torch.Generator().manual_seed(1)
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    cond_text, empty_text = rnd(1, 77, cfg.cross_attention_dim), rnd(1, 77, cfg.cross_attention_dim)
    face_emb, face_region = rnd(1, 512), torch.rand(1, 3, 8 * h, 8 * h, generator=g)
    audio = rnd(1, f, cfg.audio_window, cfg.audio_layers, cfg.audio_feature_dim)
    ref = rnd(1 + m, 4, h, h)
    per = {k: [torch.rand((h >> lvl) ** 2, generator=g) for lvl in range(cfg.num_levels)] for k in "abc"}
    noisy, t = rnd(1, 4, f, h, h), 500

    with torch.no_grad():
        video = prepare_video(net, text_emb=cond_text, uncond_text_emb=empty_text, face_emb=face_emb,
                              face_region=face_region, full_masks=per["a"], face_masks=per["b"], lip_masks=per["c"],
                              keep=Keep.rows(False, True))
        clip = prepare_clip(net, video, ref_latents=ref, audio_windows=audio, pairing="matched")
        sampler = model_output(net, video, clip, noisy, t)
        module = StepModule(net, "matched")

        def train_rows(keep_rows):
            b = len(keep_rows)
            masks = {lvl: tuple(per[k][lvl][None].expand(b, -1) for k in "abc") for lvl in range(cfg.num_levels)}
            keep = {k: torch.tensor(keep_rows) for k in ("reference", "audio", "text", "face", "face_region")}
            rows = lambda x: x.expand(b, *x.shape[1:])  # noqa: E731
            return module(rows(noisy), torch.full((b,), t), text_emb=rows(cond_text), empty_text=empty_text,
                          face_emb=rows(face_emb), face_region=rows(face_region), ref_latents=rows(ref[None]),
                          audio=rows(audio), masks=masks, keep=keep)

        torch.testing.assert_close(train_rows([False, True]), sampler, atol=2e-4, rtol=1e-3)  # batch layout: float order only
        torch.testing.assert_close(train_rows([False]), sampler[:1], atol=2e-4, rtol=1e-3)
        torch.testing.assert_close(train_rows([True]), sampler[1:], atol=2e-4, rtol=1e-3)
    assert (sampler[1] - sampler[0]).abs().max() > 1e-2  # the two rows really differ


def test_eight_bit_adamw_is_refused_under_deepspeed_with_a_message():
    from emocast.training.trainer import build_optimizer

    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ConfigError, match="optimizer.name=adamw"):
        build_optimizer(p, OptimizerConfig(name="adamw8bit", lr=1e-5), deepspeed=True)
    assert isinstance(build_optimizer(p, OptimizerConfig(name="adamw", lr=1e-5), deepspeed=True), torch.optim.AdamW)


def test_training_memory_estimate_runs_on_the_meta_device():
    """`python -m emocast.training.memory` builds the full-size net on the meta device and records what autograd
    saves for one step; gradient checkpointing must save less than storing every activation."""
    from emocast.training.memory import saved_activation_bytes

    plain = saved_activation_bytes(2, ["audio_modules", "audioproj"], batch=1, checkpointing=False, frames=2, size=64)
    ckpt = saved_activation_bytes(2, ["audio_modules", "audioproj"], batch=1, checkpointing=True, frames=2, size=64)
    assert plain["params"] == ckpt["params"] > 2_000_000_000 and 0 < plain["trainable"] < plain["params"]
    assert 0 < ckpt["activations"] < plain["activations"]
