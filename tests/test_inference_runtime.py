import pytest
import torch

from emocast.errors import ConfigError
from emocast.runtime import dtype_name, select_device, select_dtype


def test_auto_device_and_dtype():
    dev = select_device(None)
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device("auto") == dev
    assert select_dtype("auto", torch.device("cpu")) == torch.float32
    assert select_dtype(None, torch.device("cuda")) == torch.float16
    assert select_dtype("bf16", torch.device("cpu")) == torch.bfloat16 and dtype_name(torch.bfloat16) == "bf16"
    assert select_dtype(torch.float16, "cpu") == torch.float16


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="unknown dtype"):
        select_dtype("int8", torch.device("cpu"))
    with pytest.raises(ConfigError, match="unknown device"):
        select_device("tpu:0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_gpu():
    with pytest.raises(ConfigError, match="no CUDA GPU.*--device cpu"):
        select_device("cuda")


def test_reference_pairing_auto_follows_the_checkpoint(tmp_path):
    from omegaconf import OmegaConf

    from emocast.errors import CheckpointError
    from emocast.pipelines.inference import checkpoint_pairing, sampler_settings

    ckpt = tmp_path / "net.pth"
    assert checkpoint_pairing(ckpt) == "release"  # the released net.pth: no net.json beside it
    (tmp_path / "net.json").write_text('{"producer": "emocast.training", "reference_pairing": "matched"}')
    assert checkpoint_pairing(ckpt) == "matched"
    (tmp_path / "net.json").write_text('{"reference_pairing": "sideways"}')
    with pytest.raises(CheckpointError, match="net.json.*reference_pairing"):
        checkpoint_pairing(ckpt)
    (tmp_path / "net.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read .*net.json"):
        checkpoint_pairing(ckpt)
    from pathlib import Path

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "inference" / "default.yaml")
    assert sampler_settings(cfg).reference_pairing == "auto"  # resolved when the checkpoint is known
    with pytest.raises(ConfigError, match="reference_pairing"):
        sampler_settings(OmegaConf.merge(cfg, {"reference_pairing": "x"}))
