"""A score drawn by MuseScore, headless: a MusicXML file to PNG or PDF (``mscore3 -o out.png score.musicxml``).

MuseScore is a program, not a Python package: ``missing`` says which Debian package to install when it is not
there. A PNG of several pages is written as ``out.png`` (page 1), ``out-2.png``, ... ; each file whole or not at all.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from improvd.files import write_all

PROGRAMS = ("mscore3", "musescore3", "mscore", "musescore")
PACKAGE = "musescore3"
SUFFIXES = (".png", ".pdf")
TIMEOUT = 120.0  # seconds MuseScore may take for one score
PNG_DPI, PNG_MARGIN = 150, 20  # a PNG is trimmed to the music with this margin in pixels


class RenderError(RuntimeError):
    """MuseScore is missing, failed or timed out; the text says which and what to do."""


def program() -> str | None:
    return next((found for name in PROGRAMS if (found := shutil.which(name))), None)


def missing() -> str | None:
    """Why a score cannot be drawn here (with the package to install), or None."""
    if program() is None:
        return f"MuseScore is not installed (Debian: sudo apt-get install {PACKAGE})"
    return None


def check_suffix(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise RenderError(f"{path}: a score picture is {' or '.join(SUFFIXES)}")


def pages(musicxml: Path, folder: Path, suffix: str) -> list[Path]:
    """Draw ``musicxml`` into ``folder`` as ``score<suffix>``; the files MuseScore wrote, page 1 first."""
    found = program()
    if found is None:
        raise RenderError(missing())
    out = folder / f"score{suffix}"
    command = [found, "-o", str(out), str(musicxml)]
    if suffix == ".png":
        command[1:1] = ["-T", str(PNG_MARGIN), "-r", str(PNG_DPI)]
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(folder)}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=environment)
    except subprocess.TimeoutExpired:
        raise RenderError(f"MuseScore took over {TIMEOUT:g} s to draw {musicxml}") from None
    drawn = [out] if out.exists() else sorted(folder.glob(f"score-*{suffix}"), key=_page_number)
    if done.returncode != 0 or not drawn:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RenderError(f"MuseScore could not draw {musicxml} (exit status {done.returncode}: {last})")
    return drawn


def _page_number(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


def drawings(musicxml: Path, path: Path, folder: Path) -> list[tuple[Path, Callable[[Path], object]]]:
    """Draw ``musicxml`` in ``folder``; the files to write for ``path`` (.png or .pdf; a PNG's later pages beside
    it) with their writers, for ``improvd.files.write_all``."""
    check_suffix(path)
    drawn = pages(musicxml, folder, path.suffix.lower())
    targets = [path] + [path.with_name(f"{path.stem}-{k}{path.suffix}") for k in range(2, len(drawn) + 1)]
    return [(target, functools.partial(shutil.copyfile, page)) for target, page in zip(targets, drawn, strict=True)]


def render(musicxml: Path, path: Path) -> list[Path]:
    """Draw ``musicxml`` to ``path`` (.png or .pdf); returns the files written (more than one: a PNG's pages)."""
    with tempfile.TemporaryDirectory(prefix="improvd-score-") as folder:
        writes = drawings(musicxml, path, Path(folder))
        write_all(writes)
    return [target for target, _ in writes]
