"""Helpers shared by the command-line scripts: typed configs from YAML + flags + overrides, friendly failure."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Mapping, Sequence

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


def add_config_arguments(parser: argparse.ArgumentParser, default_config: str | None = None,
                         what: str = "settings") -> None:
    """``-c/--config``, ``--print_config`` and the trailing ``key=value`` overrides of a script."""
    parser.add_argument("-c", "--config", default=default_config,
                        help=f"YAML file of {what}; keys it leaves out keep their defaults"
                             + (" (default: %(default)s)" if default_config else ""))
    parser.add_argument("--print_config", action="store_true",
                        help="print the effective config (defaults, file, flags and overrides) as YAML and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides after the flags, e.g. data.size=256 (see docs/config-reference.md)")


def config_from_args(schema, args, values: Mapping[str, Any] | None = None, layers: Sequence = ()):
    """The config of ``schema`` from a script's arguments: defaults <- ``layers`` <- ``args.config`` <- ``values``
    (flags that were given, already typed; None values are skipped) <- ``args.overrides``."""
    from . import config

    paths = list(layers) + ([args.config] if getattr(args, "config", None) else [])
    given = {k: v for k, v in (values or {}).items() if v is not None}
    return config.load(schema, paths, list(getattr(args, "overrides", []) or []), given)


def print_config(cfg) -> int:
    from . import config

    print(config.dump(cfg), end="")
    return 0

