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


class OutputError(EmoCASTError):
    """An output that cannot be written: a read-only or protected folder, a full disk. ``path`` is the file."""

    #: errno -> (what happened, the fix)
    CAUSES = {
        "ENOSPC": ("the disk is full", "free some space or write to another disk"),
        "EDQUOT": ("the disk quota is exhausted", "free some space or write to another disk"),
        "EFBIG": ("the file is larger than this file system (or the process's file size limit) allows",
                  "write to another disk or raise the limit (ulimit -f)"),
        "EROFS": ("the folder is on a read-only file system", "choose a writable output folder"),
        "EACCES": ("no permission to write there", "choose a folder you can write to, or fix its permissions"),
        "EPERM": ("the operating system does not allow writing there", "choose a folder you can write to"),
    }

    def __init__(self, path, problem: str, fix: str):
        self.path = path
        super().__init__(f"cannot write {path}: {problem}. Fix: {fix}.")

    @classmethod
    def from_os_error(cls, path, err: OSError) -> "OutputError | None":
        """The message for a write that failed with ``err``; None when its errno is not one of :data:`CAUSES`
        (a fault that is not about the output location)."""
        import errno

        name = errno.errorcode.get(getattr(err, "errno", None) or 0)
        if name not in cls.CAUSES:
            return None
        return cls(path, *cls.CAUSES[name])


class UnreadableMedia(InputError):
    """A video or audio file that cannot be opened or decoded (raised by :mod:`emocast.media`); ``path`` is the
    file and ``problem`` the short cause, for callers that re-word it with their own advice."""

    FIX = "check that the file is complete (ffprobe shows what FFmpeg reads in it) or re-encode it with ffmpeg"

    def __init__(self, path, problem: str, fix: str = FIX):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}. Fix: {fix}.")

    @classmethod
    def from_error(cls, path, err: BaseException, decoding: bool = False) -> "UnreadableMedia":
        """From the exception FFmpeg (PyAV) raised while opening or decoding ``path``."""
        detail = str(err).splitlines()[0] if str(err) else ""
        what = "decoding failed" if decoding else "cannot be opened"
        return cls(path, f"{what} ({type(err).__name__}: {detail}); the file is corrupt, truncated or not a "
                         "media file")
