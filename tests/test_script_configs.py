"""The data and evaluation scripts read typed strict configs: a typo in a key is one message naming it and the
closest valid key (exit 2), a wrong value names its key, and path flags stay the strings given (never YAML).
Each script's real ``main`` runs in-process through emocast.cli.run_main; nothing is loaded before the config."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import load_script
from emocast.cli import run_main

REPO = Path(__file__).resolve().parents[1]
ODD = "my data #2/with space"  # a YAML comment marker and a space: a path flag must stay this string


def call(name, capsys, *args):
    code = run_main(load_script(name).main, [str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("script,args,typo,valid", [
    ("data_preprocess", ["--input", "in", "--output", "out"], "prep.crop_scal=1.8", "prep.crop_scale"),
    ("extract_meta_info", ["--root", "datasets/mead"], "stage2.min_frame=5", "stage2.min_frames"),
    ("evaluate", ["--videos", "v"], "fid.frames_per_vide=5", "fid.frames_per_video"),
])
def test_a_typo_fails_with_one_message_naming_the_key(script, args, typo, valid, capsys):
    code, out, err = call(script, capsys, *args, typo)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"'{typo.split('=')[0]}'" in err and f"did you mean '{valid}'?" in err


@pytest.mark.parametrize("script,override,key", [
    ("data_preprocess", "prep.size=big", "prep.size"),
    ("data_preprocess", "prep.max_no_face_ratio=1.5", "prep.max_no_face_ratio"),
    ("extract_meta_info", "stage2.missing_sync=sometimes", "stage2.missing_sync"),
    ("evaluate", "fid.sampling=random", "fid.sampling"),
    ("evaluate", "lse.vshift=0", "lse.vshift"),
])
def test_a_wrong_value_names_its_key(script, override, key, capsys):
    code, _, err = call(script, capsys, "--print_config", override)
    assert code == 2 and err.startswith(f"error: {key} must be")


def _printed(name, capsys, *args) -> dict:
    code, out, _ = call(name, capsys, *args, "--print_config")
    assert code == 0
    return yaml.safe_load(out)


def test_path_flags_stay_strings(capsys):
    assert _printed("data_preprocess", capsys, "--models-root", ODD, "--size", "256")["models_root"] == ODD
    cfg = _printed("evaluate", capsys, "--models-root", ODD, "--method", "ours #1", "--metrics", "lse,fid")
    assert (cfg["models_root"], cfg["method"], cfg["metrics"]) == (ODD, "ours #1", ["lse", "fid"])


def test_config_files_and_flags_layer_in_order(tmp_path, capsys):
    conf = tmp_path / ODD / "prep.yaml"
    conf.parent.mkdir(parents=True)
    conf.write_text("prep:\n  size: 128\n  crop_scale: 1.5\nemotion:\n  default: Neutral\n")
    cfg = _printed("data_preprocess", capsys, "-c", conf, "--size", "256", "prep.crop_scale=2.0")
    assert cfg["prep"]["size"] == 256 and cfg["prep"]["crop_scale"] == 2.0  # file < flag < override
    assert cfg["emotion"]["default"] == "neutral" and cfg["emotion"]["default_intensity"] == 1  # normalised


def test_defaults_and_examples(capsys):
    prep = _printed("data_preprocess", capsys)
    assert prep["models_root"] is None and prep["prep"]["size"] == 512 and prep["sync"]["enabled"] is False
    meta = _printed("extract_meta_info", capsys)
    assert (meta["stage1"]["min_frames"], meta["stage2"]["min_frames"]) == (1, 25)
    ev = _printed("evaluate", capsys)
    assert ev["metrics"] == ["acc_emo", "lse", "fid"] and ev["fid"]["frames_per_video"] == 5
    lipsync = _printed("extract_meta_info", capsys, "-c", REPO / "configs/data/meta_lipsync.yaml")
    assert lipsync["stage2"]["missing_sync"] == "drop" and lipsync["stage1"]["missing_sync"] == "keep"
    hdtf = _printed("data_preprocess", capsys, "-c", REPO / "configs/data/hdtf.yaml")
    assert hdtf["emotion"]["default"] == "neutral" and hdtf["sync"]["enabled"] is True


def test_help_names_the_settings(capsys):
    for name in ("data_preprocess", "extract_meta_info", "evaluate"):
        with pytest.raises(SystemExit) as ex:
            load_script(name).main(["--help"])
        assert ex.value.code == 0
        text = capsys.readouterr().out
        assert "--print_config" in text and "key=value" in text and "docs/config-reference.md" in text


def _training_dataset_names() -> set[str]:
    """Dataset names whose meta files the training configs read (defaults and the shipped phase files)."""
    import re

    from emocast import config
    from emocast.training.config import Stage1Config, Stage2Config

    metas = [d.meta for schema in (Stage1Config, Stage2Config) for d in schema().data.datasets]
    for path in sorted((REPO / "configs/train").glob("stage*.yaml")):
        schema = Stage1Config if path.name.startswith("stage1") else Stage2Config
        metas += [d.meta for d in config.load(schema, path).data.datasets]
    names = set()
    for meta in metas:
        m = re.fullmatch(r"datasets/([^/]+)/\1_(stage[12])\.json", meta)
        assert m, f"{meta} is not datasets/<name>/<name>_<stage>.json"
        names.add(m.group(1))
    return names


def test_readme_data_commands_write_what_training_reads(tmp_path, capsys, monkeypatch):
    from emocast.training.config import default_meta_path

    names = _training_dataset_names()
    assert names == {"mead", "etth_wild", "hdtf"}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Data preparation"):]
    section = section[:section.index("\n## ", 1)]
    for name in names:
        assert f"--output datasets/{name}" in section and f"--root datasets/{name}" in section, name
    # extract_meta_info.py --root datasets/<name> writes exactly default_meta_path(name, stage)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets" / "mead" / "samples").mkdir(parents=True)
    code, out, _ = call("extract_meta_info", capsys, "--root", "datasets/mead")
    assert code == 0
    for stage in ("stage1", "stage2"):
        assert (tmp_path / default_meta_path("mead", stage)).is_file()
