"""Opening media files with PyAV, and the exceptions that mean the file (not our code) is bad."""
from __future__ import annotations

import os


def decode_errors() -> tuple[type[BaseException], ...]:
    """What PyAV raises for a file that is corrupt, truncated or not media."""
    import av

    return av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError


def open_container(path: str | os.PathLike):
    """``av.open(path)`` for reading; :class:`~emocast.errors.UnreadableMedia` naming the file when it fails."""
    import av

    from ..errors import UnreadableMedia

    try:
        return av.open(str(path))
    except decode_errors() as err:
        raise UnreadableMedia.from_error(path, err) from None
