"""emocast.cli: config loading with overrides, and errors for people (one message, non-zero exit)."""
from __future__ import annotations

import pytest

from emocast.cli import load_config, run_main
from emocast.errors import ConfigError, InputError


def test_overrides_apply_and_bad_ones_are_named(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("a: 1\nb:\n  c: x\n")
    cfg = load_config(cfg_file, ["a=3", "b.c=y"])
    assert cfg.a == 3 and cfg.b.c == "y"
    with pytest.raises(ConfigError, match="key=value, got: oops =3"):
        load_config(cfg_file, ["a=2", "oops", "=3"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_run_main_prints_one_message_and_exits_non_zero(capsys):
    def main(argv):
        raise InputError("image not found: x.png. Fix: pass an existing file")

    assert run_main(main, []) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: image not found: x.png. Fix: pass an existing file"
    assert run_main(lambda argv: None, []) == 0
    assert run_main(lambda argv: 3, []) == 3
