"""Helpers shared by the command-line scripts: config loading with overrides and friendly failure."""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from .errors import EmoCASTError


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; an :class:`EmoCASTError` becomes one message on stderr and a non-zero exit."""
    try:
        code = main(argv)
    except EmoCASTError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def check_overrides(overrides: Sequence[str]) -> list[str]:
    """``overrides`` unchanged; a :class:`ConfigError` naming every item that is not ``key=value``."""
    from .errors import ConfigError

    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError(f"config overrides must look like key=value, got: {' '.join(bad)}")
    return list(overrides)


def load_config(path, overrides: Sequence[str] = ()):
    """Load a YAML config (OmegaConf) and apply ``key=value`` dot-list overrides (checked first)."""
    from omegaconf import OmegaConf

    from .errors import ConfigError

    check_overrides(overrides)
    try:
        cfg = OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return cfg
