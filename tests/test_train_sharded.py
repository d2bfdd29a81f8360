"""Sharded training that actually runs: DeepSpeed ZeRO-2 through ``accelerate launch`` with two CPU processes
(``configs/accelerate/deepspeed_zero2_cpu.yaml``) on the tiny kit.

- A run stopped after step 1 (``train.stop_at_step``) leaves a ZeRO checkpoint whose optimizer states are sharded
  over the two ranks; the same command resumes it and finishes, exporting once.
- The resumed ZeRO-2 export is bit-identical to an uninterrupted two-process DDP run of the same steps: sharding
  and resume change nothing.
- The export has the layout of a single-process run's (``net.pth`` keys, shapes, dtypes, the ``net.json`` card),
  and ``scripts/export_checkpoint.py`` consolidates the ZeRO checkpoint to the same tensors.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_data import REPO, make_prepared_dataset, run_train_script, tiny_overrides

from helpers import free_port, load_script
from emocast.cli import run_main

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 2


def train_args(meta, tiny_models, out, *extra) -> list[str]:
    return [str(REPO / "scripts" / "train_stage2.py"), "--config", str(REPO / "configs" / "train" / "stage2_phase1.yaml"),
            "--output_dir", str(out), "--models", str(tiny_models), "--max_steps", str(STEPS), *tiny_overrides(meta, 2),
            "models.init_checkpoint=null", "checkpointing.every=1", *extra]


def run(cmd, cwd, **env) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **env)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=cwd)
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-3000:]
    return res


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def runs(tiny_models, tmp_path_factory):
    pytest.importorskip("deepspeed", reason="DeepSpeed is part of the train extra: bash scripts/install.sh")
    root = tmp_path_factory.mktemp("sharded")
    meta = make_prepared_dataset(root / "data", identities={"astro": "astronaut"})
    accelerate = Path(sys.executable).with_name("accelerate")
    zero = [str(accelerate), "launch", "--config_file", str(REPO / "configs" / "accelerate" / "deepspeed_zero2_cpu.yaml")]
    ds = root / "zero2"
    stopped = run([*zero, "--main_process_port", str(free_port()),
                   *train_args(meta, tiny_models, ds, "train.stop_at_step=1")], root)
    resumed = run([*zero, "--main_process_port", str(free_port()), *train_args(meta, tiny_models, ds)], root)
    ddp = root / "ddp"
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         *train_args(meta, tiny_models, ddp)], root, ACCELERATE_USE_CPU="true")  # as test_two_process_ddp_on_cpu
    single = root / "single"
    assert run_train_script(2, train_args(meta, tiny_models, single)[1:]) == 0
    return {"ds": ds, "ddp": ddp, "single": single, "stopped": stopped, "resumed": resumed}


def test_zero2_stops_resumes_and_exports_once(runs):
    assert runs["stopped"].stdout.count("done: step 1 (stopped early)") == 2
    first = runs["ds"] / "checkpoints" / "checkpoint-0000001"
    shards = sorted(p.name for p in (first / "pytorch_model").glob("zero_pp_rank_*_optim_states.pt"))
    assert shards == ["zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    out = runs["resumed"].stdout
    assert f"resumed from {first} at step 1" in out
    assert out.count("exported") == 1 and out.count("done: step 2") == 2
    state = json.loads((runs["ds"] / "checkpoints" / "checkpoint-0000002" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 2


def test_resumed_zero2_equals_an_uninterrupted_ddp_run(runs):
    a, b = load(runs["ds"] / "final" / "net.pth"), load(runs["ddp"] / "final" / "net.pth")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    first = load(runs["single"] / "final" / "net.pth")  # and training did change the weights
    assert any(not torch.equal(a[k], first[k]) for k in a)


def test_sharded_export_has_the_single_process_layout_and_card(runs):
    a, b = load(runs["ds"] / "final" / "net.pth"), load(runs["single"] / "final" / "net.pth")
    assert {k: (v.shape, v.dtype) for k, v in a.items()} == {k: (v.shape, v.dtype) for k, v in b.items()}
    card_a = json.loads((runs["ds"] / "final" / "net.json").read_text())
    card_b = json.loads((runs["single"] / "final" / "net.json").read_text())
    for card in (card_a, card_b):  # the hash of each run's config, whose output_dir differs
        assert len(card["provenance"].pop("config_hash")) == 16
    assert card_a == card_b and card_a["provenance"]["step"] == STEPS
    assert sorted(p.name for p in (runs["ds"] / "final").iterdir()) == \
        sorted(p.name for p in (runs["single"] / "final").iterdir())
    from emocast.pipelines.inference import load_networks

    load_networks(runs["ds"] / "final" / "net.pth")  # strict, like scripts/inference.py --checkpoint


def test_export_checkpoint_consolidates_the_zero_checkpoint(runs, tmp_path):
    cli = load_script("export_checkpoint")
    assert run_main(cli.main, [str(runs["ds"]), "-o", str(tmp_path / "exp")]) == 0  # the newest: checkpoint-2
    a, b = load(tmp_path / "exp" / "net.pth"), load(runs["ds"] / "final" / "net.pth")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
