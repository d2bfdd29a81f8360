"""Typed, strict configs (emocast.config): unknown keys, wrong types and impossible values fail with one message
naming the key (and the closest valid key); flags are typed, never YAML; layers apply in order; every entry
point's schema loads its shipped YAML files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from emocast import config
from emocast.config import option, section
from emocast.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    rate: float = option(0.5, "a probability", ge=0, le=1)
    mode: Literal["a", "b"] = option("a", "a choice")


@dataclass
class Schema:
    steps: int = option(40, "steps", ge=1)
    scale: float = option(3.5, "a finite number")
    path: str | None = option(None, "a path")
    size: int | Literal["auto"] = option("auto", "a size or auto", ge=64)
    flag: bool = option(False, "a switch")
    items: list[str] = option(factory=lambda: ["x"], help="a list")
    inner: Inner = section(Inner)


@pytest.mark.parametrize("override, message", [
    ("stesp=3", "unknown config key 'stesp' (override stesp=3); did you mean 'steps'?"),
    ("inner.rte=0.1", "did you mean 'inner.rate'?"),
    ("rate=0.1", "did you mean 'inner.rate'?"),  # a key of another section
    ("steps=abc", "steps must be an integer, got 'abc'"),
    ("steps=0", "steps must be at least 1, got 0"),
    ("scale=inf", "scale must be a finite number, got inf"),
    ("scale=nan", "scale must be a finite number"),
    ("inner.rate=1.5", "inner.rate must be at most 1, got 1.5"),
    ("inner.mode=c", "inner.mode must be one of a, b, got 'c'"),
    ("size=32", "size must be at least 64, got 32"),
    ("size=big", "size must be an integer or one of auto"),
    ("flag=maybe", "flag must be true or false"),
    ("items=3", "items must be a list of string"),
])
def test_every_problem_is_one_message_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        config.load(Schema, (), [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_layers_apply_in_order_and_strings_stay_strings(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("steps: 10\ninner: {rate: 0.25}\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nscale: 2\npath: 2024\n")
    cfg = config.load(Schema, child, ["inner.mode=b", "size=128", "path=runs/my run #2"], {"steps": 7})
    assert (cfg.steps, cfg.scale, cfg.inner.rate, cfg.inner.mode, cfg.size) == (7, 2.0, 0.25, "b", 128)
    assert cfg.path == "runs/my run #2"  # an override of a string field is never parsed as YAML
    assert config.load(Schema, child).path == "2024"  # YAML's 2024 is the folder name "2024"
    assert config.load(Schema, (), ["path=null"]).path is None
    assert config.load(Schema, (), values={"path": "a b #c"}).path == "a b #c"
    again = config.load(Schema, [config.to_dict(cfg)])  # a dump reloads to an equal config
    assert again == cfg and config.load(Schema, [_yaml_roundtrip(cfg)]) == cfg
    assert config.config_hash(again) == config.config_hash(cfg) != config.config_hash(Schema())


def _yaml_roundtrip(cfg):
    import yaml

    return yaml.safe_load(config.dump(cfg))


def test_yaml_files_fail_with_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML at line 2"):
        config.load(Schema, bad)
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(Schema, tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        config.load(Schema, listy)
    typo = tmp_path / "typo.yaml"
    typo.write_text("inner:\n  rat: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'inner.rat' \(in .*typo.yaml\)"):
        config.load(Schema, typo)
    with pytest.raises(ConfigError, match="key=value"):
        config.load(Schema, (), ["steps"])


def test_shipped_configs_load_with_their_schemas():
    from emocast.training.config import SCHEMAS, default_meta_path

    for path in sorted((REPO / "configs" / "train").glob("*.yaml")):
        cfg = config.load(SCHEMAS[config.read_yaml(path)["stage"]], path)
        stage = "stage2" if cfg.stage == "distill" else cfg.stage  # distillation reads stage-2 clips
        for entry in cfg.data.datasets:  # where scripts/extract_meta_info.py --root datasets/<name> writes
            name = Path(entry.meta).parent.name
            assert entry.meta == default_meta_path(name, stage), entry.meta
    phases = [config.load(SCHEMAS["stage2"], REPO / "configs" / "train" / f"stage2_phase{i}.yaml") for i in (1, 2, 3)]
    assert [p.phase for p in phases] == [1, 2, 3]
    assert phases[1].models.init_checkpoint == phases[0].output_dir + "/final"
    assert phases[2].models.init_checkpoint == phases[1].output_dir + "/final"
    distill = config.load(SCHEMAS["distill"], REPO / "configs" / "train" / "distill.yaml")
    assert distill.models.teacher == phases[2].output_dir + "/final"  # the student of the last phase's export


def test_models_root_defaults_to_emocast_models(monkeypatch, tmp_path):
    from emocast import registry
    from emocast.pipelines.config import InferenceConfig
    from emocast.training.config import Stage1Config

    monkeypatch.setenv("EMOCAST_MODELS", str(tmp_path))
    for schema in (InferenceConfig, Stage1Config):
        cfg = config.load(schema)
        root = cfg.models_root if hasattr(cfg, "models_root") else cfg.models.root
        assert root is None and registry.models_root(root) == tmp_path


def test_describe_lists_every_leaf_with_help():
    rows = {key: (kind, default, text) for key, kind, default, text in config.describe(Schema)}
    assert rows["inner.rate"] == ("a number (>= 0, <= 1)", 0.5, "a probability")
    assert rows["steps"][1] == 40 and "items" in rows and "inner" not in rows


def test_the_config_reference_page_is_current():
    """docs/config-reference.md is generated from the schemas: a schema change without regenerating it fails."""
    from helpers import load_script

    assert load_script("make_config_reference").main(["--check"]) == 0
