"""Training faults end in a skipped sample, one message, or a safe resume: damaged artifacts, a tampered
optimizer state, a kill while pruning checkpoints, metrics after a resume."""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from test_train_data import make_prepared_dataset

from emocast.data import layout
from emocast.data.datasets import Stage2Dataset, build_index
from emocast.errors import CheckpointError, InputError

pytestmark = pytest.mark.usefixtures("one_thread")

DAMAGED = {  # artifact -> how it is read
    layout.AUDIO_EMB: lambda d: layout.read_audio_emb(d),
    layout.FACE_EMB: lambda d: layout.read_face_emb(d),
    layout.MASK_LIP: lambda d: layout.read_masks(d),
    layout.FACE_REGION: lambda d: layout.read_face_region(d),
    layout.FRAMES: lambda d: layout.read_frames(d, [0, 5]),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    return root, make_prepared_dataset(root)


@pytest.mark.parametrize("artifact", list(DAMAGED))
def test_a_truncated_artifact_is_skipped_counted_and_named(prepared, tmp_path, caplog, artifact):
    """One cut file (a copy interrupted, a full disk) in one sample: the reader says which file, the dataset skips
    and counts that sample with a warning naming it, and the other samples keep coming."""
    src, _ = prepared
    shutil.copytree(src, tmp_path / "data")
    meta = make_prepared_dataset(tmp_path / "data")  # the copied samples are complete: only the meta is rewritten
    bad = layout.sample_dir(tmp_path / "data", "hanks_happy") / artifact
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=artifact):
        DAMAGED[artifact](bad.parent)
    ds = Stage2Dataset(build_index([{"meta": str(meta)}]), 64, seed=5, n_sample_frames=4)
    with caplog.at_level(logging.WARNING, logger="emocast.data"):
        items = [ds[k] for k in range(12)]
    assert sum(it["skipped"] for it in items) > 0
    assert all("hanks_happy" not in it["video_id"] for it in items)
    assert str(bad) in caplog.text and "skipping bad sample hanks_happy" in caplog.text


# ---------------------------------------------------------------------------------------------------- checkpoints
def _accelerate_checkpoint(path: Path):
    """A real accelerate checkpoint of a small model and optimizer, with our trainer state file."""
    from accelerate import Accelerator

    from emocast.training.checkpointing import STATE_FILE

    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, opt = acc.prepare(model, opt)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    acc.save_state(str(path))
    (path / STATE_FILE).write_text(json.dumps({"step": 3, "data_position": 6}))
    return acc


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


@pytest.mark.parametrize("damage", ["malicious-pickle", "truncated"])
def test_a_tampered_or_cut_optimizer_state_is_one_message_naming_the_checkpoint(tmp_path, damage):
    """Resuming from a checkpoint whose optimizer.bin was replaced by a pickle that runs code (refused by
    weights_only loading) or cut short: one CheckpointError naming the folder, saying it is corrupt or unsafe and
    how to resume from an earlier one; the payload never runs."""
    from emocast.training.checkpointing import load_checkpoint

    root = tmp_path / "checkpoints"
    earlier, ckpt = root / "checkpoint-0000002", root / "checkpoint-0000003"
    _accelerate_checkpoint(earlier)
    acc = _accelerate_checkpoint(ckpt)
    optimizer_file = ckpt / "optimizer.bin"
    if damage == "malicious-pickle":
        _Payload.marker = tmp_path / "PWNED"
        optimizer_file.write_bytes(pickle.dumps({"state": _Payload()}))
    else:
        optimizer_file.write_bytes(optimizer_file.read_bytes()[:100])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(acc, ckpt)
    msg = str(err.value)
    assert str(ckpt) in msg and "corrupt or unsafe" in msg, msg
    assert f"train.resume_from={earlier}" in msg
    assert not (tmp_path / "PWNED").exists()


def test_a_kill_while_pruning_never_leaves_a_checkpoint_that_looks_complete(tmp_path, monkeypatch):
    """Pruning renames a checkpoint to a hidden name before deleting it: a kill in the middle of the deletion
    (simulated: the weights are deleted, then the process dies) leaves a hidden folder that listing ignores and the
    next prune removes, never a checkpoint-<step> folder with a trainer state but no weights."""
    from emocast.training import checkpointing

    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        d = root / f"checkpoint-{step:07d}"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"weights")
        (d / checkpointing.STATE_FILE).write_text(json.dumps({"step": step}))

    real_rmtree = shutil.rmtree

    def killed_midway(path, *args, **kwargs):
        (Path(path) / "model.safetensors").unlink()
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(checkpointing.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpointing.prune_checkpoints(root, keep_last=2)
    monkeypatch.setattr(checkpointing.shutil, "rmtree", real_rmtree)
    listed = checkpointing.list_checkpoints(root)
    assert [step for step, _ in listed] == [2, 3]
    assert all((p / "model.safetensors").is_file() for _, p in listed)
    checkpointing.prune_checkpoints(root, keep_last=2)  # the next prune finishes the job
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-0000002", "checkpoint-0000003"]


def test_resuming_truncates_the_metrics_log_to_the_resumed_step(tmp_path):
    """Steps logged after the last checkpoint are logged again after a resume: the log keeps each step once (a line
    cut by the kill is dropped too), and TensorBoard is told to purge the events after the checkpoint."""
    from emocast.training.tracking import MetricsLogger, read_metrics

    class Acc:
        is_main_process = True

        def log(self, *a, **k):
            pass

    log_file = tmp_path / "metrics.jsonl"
    log_file.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 6))
                        + '{"step": 6, "lo')
    metrics = MetricsLogger(Acc(), tmp_path, use_trackers=False, resume_step=3)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    metrics.log(4, {"loss": 0.5})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]
    from emocast.training.tracking import tracker_init_kwargs

    assert tracker_init_kwargs("tensorboard", resume_step=3) == {"tensorboard": {"purge_step": 4}}
    assert tracker_init_kwargs("tensorboard", resume_step=None) == {}


def test_a_resumed_run_logs_every_step_once(prepared, tiny_models, tmp_path):
    """A run killed after logging step 2 but before its checkpoint 2 was kept resumes from checkpoint 1: step 2 is
    trained and logged again, and metrics.jsonl holds it once."""
    from test_train_data import REPO, tiny_overrides

    from emocast import config
    from emocast.training.config import SCHEMAS
    from emocast.training.stage1 import Stage1Task
    from emocast.training.tracking import read_metrics
    from emocast.training.trainer import Trainer

    _, meta = prepared
    cfg = config.load(SCHEMAS["stage1"], REPO / "configs" / "train" / "stage1.yaml",
                      [*tiny_overrides(meta, 1), f"models.root={tiny_models}", "models.init_checkpoint=null",
                       f"output_dir={tmp_path}", "train.max_steps=2", "checkpointing.every=1", "logging.tracker=jsonl"])
    Trainer(cfg, Stage1Task(cfg)).run()
    shutil.rmtree(tmp_path / "checkpoints" / "checkpoint-0000002")  # the kill struck before it was complete
    shutil.rmtree(tmp_path / "final")
    Trainer(cfg, Stage1Task(cfg)).run()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_an_epsilon_run_with_zero_terminal_snr_is_refused_before_training():
    """Epsilon prediction cannot be sampled with zero-terminal-SNR betas (the first DDIM step divides by 0: every
    rendered frame NaN): the training config says so before a step is trained, not the render after it."""
    from emocast import config
    from emocast.errors import ConfigError
    from emocast.training.config import SCHEMAS

    with pytest.raises(ConfigError, match="noise.zero_snr=false"):
        config.load(SCHEMAS["stage2"], [], ["noise.prediction_type=epsilon"])
    assert config.load(SCHEMAS["stage2"], [], ["noise.prediction_type=epsilon", "noise.zero_snr=false"]).noise.zero_snr \
        is False
