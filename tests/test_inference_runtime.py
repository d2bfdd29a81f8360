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
    from emocast import config
    from emocast.errors import CheckpointError
    from emocast.pipelines.card import read_card
    from emocast.pipelines.config import InferenceConfig
    from emocast.pipelines.inference import resolve_sampling

    ckpt = tmp_path / "net.pth"
    auto = config.load(InferenceConfig)
    assert auto.reference_pairing == "auto"  # resolved when the checkpoint is known
    assert resolve_sampling(auto, *read_card(ckpt)).settings.reference_pairing == "release"  # no card: the release
    (tmp_path / "net.json").write_text('{"producer": "emocast.training", "reference_pairing": "matched"}')
    assert resolve_sampling(auto, *read_card(ckpt)).settings.reference_pairing == "matched"  # a first-version card
    forced = config.load(InferenceConfig, (), ["reference_pairing=release"])
    assert resolve_sampling(forced, *read_card(ckpt)).settings.reference_pairing == "release"
    (tmp_path / "net.json").write_text('{"reference_pairing": "sideways"}')
    with pytest.raises(CheckpointError, match="net.json.*reference_pairing"):
        read_card(ckpt)
    with pytest.raises(ConfigError, match="reference_pairing must be one of auto, release, matched"):
        config.load(InferenceConfig, (), ["reference_pairing=x"])
