"""The daemon's models: where the configured one is, loading it, and LSTM runtimes primed off the timing thread."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from improvd.core.encoding import SONG_END
from improvd.core.model import DEFAULT_MODEL_DIR, Model, ModelError, load_model
from improvd.core.runtime import LSTMRuntime
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
    restores its state. Any other model gets a plain ``LSTMRuntime``.
    """

    def __init__(self) -> None:
        self._ready: dict[int, tuple[Model, _PrimedRuntime]] = {}
        self._lock = threading.Lock()

    def prepare(self, model: Model) -> None:
        """Make and prime ``model``'s runtime (slow: call it in a loader thread)."""
        runtime = _PrimedRuntime(model)
        with self._lock:
            self._ready = {id(model): (model, runtime)}  # only the newest prepared model is kept

    def take(self, model: Model) -> LSTMRuntime:
        """The runtime prepared for ``model`` (once), else a new plain one."""
        with self._lock:
            prepared, runtime = self._ready.pop(id(model), (None, None))
        return runtime if prepared is model else LSTMRuntime(model)


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
