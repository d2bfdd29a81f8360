"""Atomic file and folder writes: readers see the old version or the new one, never a half-written one.

- :func:`atomic_write_text` / :func:`atomic_write_bytes`: a file via a temporary sibling and ``os.replace``.
- :func:`replace_dir`: a finished folder moved into place as one unit. On Linux an existing folder is swapped with
  ``renameat2(RENAME_EXCHANGE)`` (one atomic step: a kill leaves the old folder or the new one); elsewhere it is
  renamed aside first, and :func:`recover_dir` puts it back if a kill struck between the two renames.
- :func:`staging_dir`: the hidden temporary sibling to build a folder in, after removing stale ones a killed
  process left behind.
- :func:`check_writable`: whether a file can be created in a folder (tried, before any long work).
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import uuid
from pathlib import Path

_TMP = ".tmp-"
_OLD = ".old-"


def fsync_dir(folder: os.PathLike) -> None:
    """Flush a folder's entries (renames) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_files(folder: os.PathLike) -> None:
    """fsync every file directly inside ``folder``."""
    for p in Path(folder).iterdir():
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def check_writable(folder: os.PathLike) -> None:
    """:class:`~emocast.errors.OutputError` naming ``folder`` when no file can be created in it (or, while it does
    not exist yet, in its nearest existing parent, where it would be created). Tried with an anonymous temporary
    file, so a read-only file system, missing permissions and special folders are found the way the real write
    would find them, and nothing is left behind."""
    import tempfile

    from .errors import OutputError

    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return  # a file in the way: the caller says so
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OutputError.from_os_error(folder, err) or OutputError(
            folder, f"a file cannot be created there ({err.strerror or err})", "choose another folder") from None


def atomic_write_bytes(path: os.PathLike, data: bytes) -> None:
    """Write a file via a temporary sibling and ``os.replace`` (readers never see a partial file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``); False where that is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # the file system cannot exchange: fall back to two renames
    raise OSError(err, os.strerror(err), str(a))


def staging_dir(final: os.PathLike) -> Path:
    """A fresh hidden sibling ``.tmp-<name>-<id>`` to build ``final`` in; stale ones of ``final`` (from a killed
    process) are removed first and an interrupted swap is undone (:func:`recover_dir`)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(final)
    for stale in final.parent.glob(f"{_TMP}{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f"{_TMP}{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def recover_dir(final: os.PathLike) -> None:
    """Undo a swap a kill interrupted: ``final`` missing but its renamed-aside old version present -> put it back;
    both present -> delete the old one."""
    final = Path(final)
    olds = sorted(final.parent.glob(f"{_OLD}{final.name}-*")) if final.parent.is_dir() else []
    for i, old in enumerate(olds):
        if not final.exists() and i == len(olds) - 1:
            os.rename(old, final)
        else:
            shutil.rmtree(old, ignore_errors=True)


def replace_dir(tmp: os.PathLike, final: os.PathLike) -> None:
    """Move the finished folder ``tmp`` to ``final`` as one unit (replacing an existing ``final``)."""
    tmp, final = Path(tmp), Path(final)
    fsync_files(tmp)
    fsync_dir(tmp)
    if final.exists():
        if _exchange(tmp, final):  # tmp now holds the old version
            fsync_dir(final.parent)
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = final.parent / f"{_OLD}{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        os.rename(tmp, final)
        fsync_dir(final.parent)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.rename(tmp, final)
    fsync_dir(final.parent)
