"""Third-party start-up noise stays out of the terminal; real messages still get through."""
import subprocess
import sys


def test_mediapipe_import_message_is_filtered():
    code = "from emocast.preprocess.quiet import import_mediapipe; mp = import_mediapipe(); print(hasattr(mp, 'solutions'))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "True"
    assert "GetPrototype" not in p.stderr


def test_quiet_transformers_restores_the_settings():
    from transformers.utils import logging as hf_logging

    from emocast.preprocess.quiet import quiet_transformers

    before = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    with quiet_transformers():
        assert hf_logging.get_verbosity() == hf_logging.ERROR and not hf_logging.is_progress_bar_enabled()
    assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before


def test_mediapipe_quiet_drops_only_the_known_noise(capfd):
    import os

    from emocast.preprocess.quiet import mediapipe_quiet

    with mediapipe_quiet():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E0000 something real went wrong\n")
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "something real went wrong" in err
