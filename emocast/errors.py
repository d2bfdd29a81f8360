"""Errors meant for people.

Every problem a user can fix (a bad input file, a missing model, a wrong checkpoint) is raised as an
:class:`EmoCASTError` whose message says what is wrong and how to fix it. Command-line entry points run
through :func:`emocast.cli.run_main`, which prints that message (no traceback) and exits non-zero.
"""


class EmoCASTError(Exception):
    """A problem the user can fix; ``str(err)`` is the complete message shown to them."""

    exit_code = 2


class InputError(EmoCASTError):
    """A bad user input: a missing/corrupt image or audio file, no face found, a bad manifest row..."""


class MissingModelError(EmoCASTError):
    """One or more pretrained components are missing or incomplete (message = the download report)."""

    def __init__(self, message, missing=()):
        super().__init__(message)
        self.missing = list(missing)


class CheckpointError(EmoCASTError):
    """A checkpoint that is not what it claims to be (wrong keys, shapes, or not an EmoCAST file)."""


class ConfigError(EmoCASTError):
    """A bad configuration value."""
