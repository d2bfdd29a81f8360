"""Helpers shared by the test modules (``from helpers import load_script``; tests/ is on sys.path under pytest)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """``scripts/<name>.py`` as a module, so a test runs its real entry point in-process:
    ``run_main(load_script("inference").main, argv)``."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
