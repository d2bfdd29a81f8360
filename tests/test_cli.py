"""emocast.cli: errors for people (one message, non-zero exit)."""
from __future__ import annotations

from emocast.cli import run_main
from emocast.errors import InputError


def test_run_main_prints_one_message_and_exits_non_zero(capsys):
    def main(argv):
        raise InputError("image not found: x.png. Fix: pass an existing file")

    assert run_main(main, []) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: image not found: x.png. Fix: pass an existing file"
    assert run_main(lambda argv: None, []) == 0
    assert run_main(lambda argv: 3, []) == 3
