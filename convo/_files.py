"""Private files written whole: a 0600 temp file beside the target, fsync, then rename.

A reader sees the old file or the new one, never a torn one; the temp file is removed when
the write fails. Used by conversation files and the on-disk model list. :func:`make_private`
does the same for SQLite files (caches, checkpoints), which are written in place.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path

__all__ = ["make_private", "remove_stale_temps", "write_private"]

#: SQLite's side files: they hold recent pages of the database, so they are as private.
SIDE_FILES = ("-wal", "-shm", "-journal")
#: A temp file of ours older than this was left by a killed writer (a live write takes seconds).
STALE_AFTER = 600.0


def make_private(path: Path) -> None:
    """Create ``path`` owner-only if absent; tighten it and its SQLite side files to 0600 if they
    exist with wider permissions (a file made by an older version or another tool). OSError on
    failure to create; a file owned by someone else is left as it is."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for candidate in (path, *(path.with_name(path.name + side) for side in SIDE_FILES)):
        try:
            info = candidate.stat()
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077 and info.st_uid == os.getuid():
                os.chmod(candidate, 0o600)
        except OSError:
            continue  # absent (most side files), or not ours to change


def remove_stale_temps(path: Path) -> None:
    """Remove temp files of :func:`write_private` for ``path`` that a killed writer left behind
    (older than :data:`STALE_AFTER`; a write in progress elsewhere is younger)."""
    directory = path.parent if str(path.parent) else Path(".")
    cutoff = time.time() - STALE_AFTER
    try:
        leftovers = list(directory.glob(f".{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return
    for tmp in leftovers:
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            continue


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (OSError on failure)."""
    directory = path.parent if str(path.parent) else Path(".")
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
