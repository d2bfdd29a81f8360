"""emocast.registry: the component list matches the official layout; status/require report missing files."""
from __future__ import annotations

import pytest

from emocast import registry
from emocast.errors import EmoCASTError, MissingModelError

# the official pretrained_models/ tree (EmoCAST README) + the CLIP text encoder we keep locally
OFFICIAL = [
    "audio_separator/download_checks.json", "audio_separator/mdx_model_data.json",
    "audio_separator/vr_model_data.json", "audio_separator/Kim_Vocal_2.onnx",
    "face_analysis/models/face_landmarker_v2_with_blendshapes.task", "face_analysis/models/1k3d68.onnx",
    "face_analysis/models/2d106det.onnx", "face_analysis/models/genderage.onnx",
    "face_analysis/models/glintr100.onnx", "face_analysis/models/scrfd_10g_bnkps.onnx",
    "motion_module/mm_sd_v15_v2.ckpt",
    "sd-vae-ft-mse/config.json", "sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
    "stable-diffusion-v1-5/unet/config.json", "stable-diffusion-v1-5/unet/diffusion_pytorch_model.safetensors",
    *[f"wav2vec/wav2vec2-base-960h/{f}" for f in (
        "config.json", "feature_extractor_config.json", "model.safetensors", "preprocessor_config.json",
        "special_tokens_map.json", "tokenizer_config.json", "vocab.json")],
    "emocast/net.pth",
    *[f"clip-vit-large-patch14/{f}" for f in ("config.json", "model.safetensors", "vocab.json", "merges.txt")],
]


def all_files():
    return {f"{c.folder}/{f}" for c in registry.COMPONENTS.values() for f in c.files}


def test_registry_covers_the_official_layout():
    assert set(OFFICIAL) <= all_files()


def test_every_component_has_a_source_and_a_way_to_get_it():
    for name, c in registry.COMPONENTS.items():
        assert c.name == name and c.source and c.size and c.purpose
        assert c.group in ("inference", "train", "eval")
        fetchable = set(c.hub_files) | set(c.urls)
        assert c.manual or fetchable == set(c.files), name  # every file is downloadable, or a manual step exists


def test_status_missing_incomplete_present(tmp_path):
    assert registry.status("sd-vae-ft-mse", tmp_path) == ("missing", [
        str(tmp_path / "sd-vae-ft-mse" / f) for f in ("config.json", "diffusion_pytorch_model.safetensors")])
    d = tmp_path / "sd-vae-ft-mse"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "diffusion_pytorch_model.safetensors").touch()  # empty = not there
    assert registry.status("sd-vae-ft-mse", tmp_path)[0] == "incomplete"
    (d / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    assert registry.status("sd-vae-ft-mse", tmp_path) == ("present", [])


def test_require_raises_the_download_report(tmp_path):
    with pytest.raises(MissingModelError) as err:
        registry.require(["wav2vec", "sd-vae-ft-mse"], tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, EmoCASTError) and err.value.missing == ["wav2vec", "sd-vae-ft-mse"]
    assert f"python scripts/download_models.py --only wav2vec --root {tmp_path}" in msg
    assert "model.safetensors" in msg and registry.COMPONENTS["wav2vec"].source in msg


def test_component_dir_and_models_root(tmp_path, monkeypatch):
    d = tmp_path / "motion_module"
    d.mkdir()
    (d / "mm_sd_v15_v2.ckpt").write_bytes(b"x")
    assert registry.component_dir("motion_module", tmp_path) == d
    assert registry.component_dir("wav2vec", tmp_path, check=False) == tmp_path / "wav2vec" / "wav2vec2-base-960h"
    monkeypatch.setenv(registry.ENV_ROOT, str(tmp_path))
    assert registry.models_root() == tmp_path and registry.require("motion_module") == tmp_path
    monkeypatch.delenv(registry.ENV_ROOT)
    assert registry.models_root() == registry.DEFAULT_ROOT
    assert registry.fix_command("wav2vec") == "python scripts/download_models.py --only wav2vec"


def test_inference_components_exclude_optional_and_training_only():
    names = registry.inference_components()
    assert "emocast" in names and "clip-vit-large-patch14" in names
    assert "face_landmarker" not in names and "motion_module" not in names and "syncnet" not in names
