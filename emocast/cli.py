"""Helpers shared by the command-line scripts: typed configs from YAML + flags + overrides, friendly failure."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Any, Callable, Mapping, Sequence

from .errors import EmoCASTError


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (a job scheduler stopping it, ``kill``), so the
    running code cleans up exactly as on Ctrl-C (temporary outputs are deleted by the same handlers)."""


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; an :class:`EmoCASTError` becomes one message on stderr and a non-zero exit; Ctrl-C exits
    130 and SIGTERM 143 (128 + the signal), each with one line, after the code under way has cleaned up."""
    try:
        with sigterm_raises():
            code = main(argv)
    except EmoCASTError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except Terminated:
        print("terminated (SIGTERM) before finishing; run the same command again to redo what was not finished",
              file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


@contextlib.contextmanager
def sigterm_raises():
    """While inside, SIGTERM raises :class:`Terminated` in the main thread (once: a second SIGTERM during the
    clean-up is ignored); the previous handler is restored on the way out. Outside the main thread: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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

