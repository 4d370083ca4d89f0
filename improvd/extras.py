"""The optional parts of an install: which extra brings which modules, and a clear stop when one is missing.

``pip install improvd`` is the daemon alone (``improvd run`` and ``improvd ports``); the offline tools
(``improvd continue`` and ``improvd demo``: music21, matplotlib) come with the ``offline`` extra, training
(``improvd-train``: also Keras and TensorFlow) with the ``train`` extra.
"""

from __future__ import annotations

import importlib.util

EXTRAS = {
    "offline": ("music21", "matplotlib"),
    "train": ("music21", "matplotlib", "keras", "tensorflow"),
}


class MissingExtra(RuntimeError):
    """A command whose extra is not installed; the text says what to install."""


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, command: str) -> None:
    """Raise MissingExtra, naming the extra to install, when a module of ``extra`` is missing."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(
            f"{command} needs the '{extra}' extra ({', '.join(absent)} not installed): "
            f"pip install 'improvd[{extra}]' (from a source folder: pip install '.[{extra}]')"
        )
