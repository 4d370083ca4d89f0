"""The daemon's models: where the configured one is, loading it, and LSTM runtimes (and a model's own candidates)
primed off the timing thread."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from improvd.core.encoding import SONG_END
from improvd.core.model import DEFAULT_MODEL_DIR, Model, ModelError, load_model
from improvd.core.runtime import LSTMRuntime
from improvd.core.styles import Styles, own_styles
from improvd.daemon.config import Config


def model_dir(config: Config) -> Path:
    """The configured model's directory: ``model``, or the shipped model's."""
    return Path(config.model).expanduser() if config.model else DEFAULT_MODEL_DIR


def models_root(config: Config) -> Path:
    """The models path: ``models_path``, or the folder that holds the configured model."""
    return Path(config.models_path).expanduser() if config.models_path else model_dir(config).parent


def load_configured_model(config: Config) -> Model:
    """The configured model; a missing shipped model says how to get one."""
    path = model_dir(config)
    if not config.model and not path.is_dir():
        raise ModelError(f"the shipped model {path} is missing: train it (improvd-train) or give --model DIR")
    return load_model(path)


class PrimedRuntimes:
    """LSTM runtimes made and primed in a loader thread, for the engine to take when it switches to their model.

    The engine primes a new model's runtime with ``song_gap`` song ends; a
    runtime prepared here has done that already, so that first prime only
    restores its state. Any other model gets a plain ``LSTMRuntime``. The
    model's own candidates (improvd.core.styles.own_styles: itself in each of
    its transpositions, each primed) are made here too.
    """

    def __init__(self) -> None:
        self._runtimes: dict[int, tuple[Model, LSTMRuntime]] = {}
        self._styles: dict[int, tuple[Model, Styles | None]] = {}
        self._lock = threading.Lock()

    def prepare(self, model: Model) -> None:
        """Make and prime ``model``'s runtime and its own candidates (slow: call it in a loader thread); ModelError
        for a card they cannot use."""
        runtime, styles = _PrimedRuntime(model), own_styles(model)
        with self._lock:  # only the newest prepared model is kept
            self._runtimes, self._styles = {id(model): (model, runtime)}, {id(model): (model, styles)}

    def take(self, model: Model) -> LSTMRuntime:
        """The runtime prepared for ``model`` (once), else a new plain one."""
        prepared = self._pop(self._runtimes, model)
        return prepared[0] if prepared else LSTMRuntime(model)

    def styles(self, model: Model) -> Styles | None:
        """The own candidates prepared for ``model`` (once), else made now: the engine's ``candidates``."""
        prepared = self._pop(self._styles, model)
        return prepared[0] if prepared else own_styles(model)

    def _pop(self, ready: dict[int, tuple[Model, Any]], model: Model) -> tuple[Any] | None:
        """(what was prepared for ``model``,) taken out of ``ready``, or None."""
        with self._lock:
            prepared, made = ready.pop(id(model), (None, None))
        return (made,) if prepared is model else None


class _PrimedRuntime(LSTMRuntime):
    """An LSTM runtime that has heard ``song_gap`` song ends; the first prime with exactly those restores."""

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        self._primed_with = [model.vocabulary.index[SONG_END]] * model.song_gap
        self._primed_logits = super().prime(self._primed_with)
        self._primed_state: Any = self.snapshot()

    def prime(self, indices: Iterable[int]) -> np.ndarray | None:
        indices = list(indices)
        if self._primed_state is None or indices != self._primed_with:
            return super().prime(indices)
        state, self._primed_state = self._primed_state, None
        self.restore(state)
        return self._primed_logits
