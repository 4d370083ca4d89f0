"""Files written whole or not at all: each is written to a temporary beside its target and renamed over it.

Only a regular file is ever replaced: a target that is a device (``/dev/null``), a FIFO, a socket, a folder or a
symbolic link is refused with ``NotRegularFile`` before anything is written.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


class NotRegularFile(OSError):
    """The target exists and is not a regular file: a rename over it would replace it."""


def check_target(path: str | Path) -> None:
    """Raise NotRegularFile unless ``path`` is absent or a regular file (a link is not followed: it is refused)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a link" if stat.S_ISLNK(mode) else "a device, FIFO or socket"
        raise NotRegularFile(f"{path}: is {kind}, not a regular file; give the name of a file to write")


def stage(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary)`` on a temporary beside ``path`` and return it; on failure nothing is left behind.
    NotRegularFile when ``path`` is there and not a regular file."""
    check_target(path)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        write(temporary)
        temporary.chmod(0o644)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary)`` and rename the result to ``path``; on failure nothing is left behind."""
    path = Path(path)
    _rename(stage(path, write), path)
    return path


def write_all(writes: list[tuple[Path, Callable[[Path], object]]]) -> None:
    """Every file or none: each ``write(temporary)`` runs first, the renames into place only when all succeeded."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in writes:
            staged.append((stage(Path(path), write), Path(path)))
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, path in staged:
        _rename(temporary, path)


def _rename(temporary: Path, path: Path) -> None:
    """Rename ``temporary`` over ``path``, checked again just before (it may have become a link or device)."""
    try:
        check_target(path)
    except NotRegularFile:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(path)
