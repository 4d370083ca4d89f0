"""Files written whole or not at all: each is written to a temporary beside its target and renamed over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def stage(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary)`` on a temporary beside ``path`` and return it; on failure nothing is left behind."""
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
    stage(path, write).replace(path)
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
        temporary.replace(path)
