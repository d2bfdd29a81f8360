"""Running the ``ffmpeg`` program, for the steps of a reference pipeline that are ffmpeg commands.

Some evaluation protocols (EAT's, syncnet_python's) are defined by ffmpeg command lines: the frames their
scorers see are what those commands write (``-r 25`` conversion, image2 MJPEG export, re-muxing). Running the same
command reproduces them bit for bit where re-implementing the encoder would not. :func:`run_ffmpeg` runs one
command quietly and turns a failure into one message naming the file.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from ..errors import EmoCASTError, UnreadableMedia


def require_ffmpeg(purpose: str = "this step", alternative: str = "") -> str:
    """The path of the ``ffmpeg`` program; an :class:`EmoCASTError` saying how to install it (or the
    ``alternative``) when absent."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise EmoCASTError(f"{purpose} needs the ffmpeg program on PATH, and none was found. Fix: install it "
                           "(Debian/Ubuntu: `sudo apt-get install ffmpeg`)" + (f", or {alternative}" if alternative
                                                                               else "") + ".")
    return exe


def run_ffmpeg(args: Sequence[str | Path], source, purpose: str = "this step", timeout: float = 600.0) -> None:
    """``ffmpeg -loglevel error -nostdin -y <args>``; :class:`UnreadableMedia` naming ``source`` on failure."""
    cmd = [require_ffmpeg(purpose), "-loglevel", "error", "-nostdin", "-y", *[str(a) for a in args]]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UnreadableMedia(source, f"ffmpeg failed to run ({type(err).__name__}: {err})") from None
    if res.returncode != 0:
        detail = (res.stderr.strip().splitlines() or ["no message"])[-1]
        raise UnreadableMedia(source, f"ffmpeg failed ({detail})")
