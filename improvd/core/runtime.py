"""Stateful LSTM in numpy: one symbol in, next-symbol probabilities out, per 16th step.

The first layer's input projection is folded into a lookup table
(``embedding @ kernel + bias`` or, for one-hot input, ``kernel + bias``), so a
step costs one table row plus one small matrix product per layer. A lookback
model (improvd.core.lookback) adds four more rows a step: the symbols one and
two bars back and the place in the bar, which the runtime keeps itself from the
place it is ``seat``-ed at and the symbols it has heard since the last song end.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np

from improvd.core.encoding import SONG_END
from improvd.core.lookback import MAX_LOOKBACK, PLACES, Place
from improvd.core.model import Model


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """0.5 * (tanh(0.5 * x) + 1): the exact sigmoid, no overflow warnings (in place on one new array)."""
    y = x * 0.5
    np.tanh(y, out=y)
    y += 1.0
    y *= 0.5
    return y


class LSTMRuntime:
    """The model's recurrent state and a one-step forward pass (float32)."""

    def __init__(self, model: Model) -> None:
        w = model.weights
        first = w["lstm_0_kernel"]
        if model.input == "embedding":
            first = w["embedding"] @ first
        vocab = len(model.vocabulary)
        self._input_table = (first[:vocab] + w["lstm_0_bias"]).astype(np.float32)
        self._lookback = _LookbackTables(first[vocab:], vocab) if model.input == "lookback" else None
        self._song_end = model.vocabulary.index[SONG_END]
        self._layers = [
            (
                w[f"lstm_{k}_kernel"] if k else None,
                w[f"lstm_{k}_recurrent_kernel"],
                w[f"lstm_{k}_bias"] if k else None,
                units,
            )
            for k, units in enumerate(model.lstm_units)
        ]
        self._top_first = False  # which half of each recurrent kernel the next step reads first (``_times``)
        self._dense_kernel = w["dense_kernel"]
        self._dense_bias = w["dense_bias"]
        self.vocabulary = model.vocabulary
        self.reset()

    def twin(self, snapshot: tuple | None = None) -> LSTMRuntime:
        """A runtime of the same model in the state of ``snapshot`` (this one's own by default), sharing this one's
        tables, which never change (so another thread may make it while this one steps): no folding of the input
        table again, as a new ``LSTMRuntime(model)`` does."""
        twin = copy.copy(self)
        twin.restore(self.snapshot() if snapshot is None else snapshot)
        return twin

    def reset(self) -> None:
        """Forget everything heard: zero state, as Keras starts a sequence; no place in a bar, no history."""
        self._state = [(np.zeros(u, np.float32), np.zeros(u, np.float32)) for *_, u in self._layers]
        self._place: Place | None = None
        self._history: list[int] = []

    def seat(self, place: Place | None) -> None:
        """The step that the next ``step`` predicts falls at ``place`` (None: no bar, as between songs); the steps
        after it follow on bar by bar."""
        self._place = place

    def snapshot(self) -> tuple:
        """The state, to restore after trying a continuation. Its arrays are shared, not copied: ``step`` makes new
        ones and never writes into those it had (so another thread may restore a snapshot while this one steps)."""
        return tuple(self._state), self._place, tuple(self._history)

    def restore(self, snapshot: tuple) -> None:
        state, self._place, history = snapshot
        self._state = list(state)
        self._history = list(history)

    def step(self, index: int) -> np.ndarray:
        """Feed one symbol index; return the logits of the next symbol (float32, vocab-sized)."""
        first = self._input_table[index]
        if self._lookback is not None:
            first = first + self._look_back(index)
        x = None
        new_state = []
        self._top_first = not self._top_first
        for (kernel, recurrent, bias, units), (h, c) in zip(self._layers, self._state, strict=True):
            z = _times(h, recurrent, self._top_first)
            z += first if kernel is None else x @ kernel + bias
            gates = _sigmoid(z)  # i, f and o in one pass (the g quarter's is not used)
            c = gates[units : 2 * units] * c + gates[:units] * np.tanh(z[2 * units : 3 * units])
            h = gates[3 * units :] * np.tanh(c)
            new_state.append((h, c))
            x = h
        self._state = new_state
        logits = x @ self._dense_kernel
        logits += self._dense_bias
        return logits

    def _look_back(self, index: int) -> np.ndarray:
        """The lookback rows for the step after ``index``; the history and the place move on by one step."""
        history = self._history
        if index == self._song_end:
            history.clear()  # before a song's start, lookback hears song ends
        else:
            history.append(index)
            if len(history) > MAX_LOOKBACK:
                del history[: len(history) - MAX_LOOKBACK]
        place = self._place
        if place is None:
            return self._lookback.none
        bar = place.bar_steps
        back = [history[-n] if len(history) >= n else self._song_end for n in (bar, 2 * bar)]
        self._place = place.following()
        return self._lookback.row(back[0], back[1], *place.rows())

    def prime(self, indices: Iterable[int]) -> np.ndarray | None:
        """Reset, then feed ``indices``; return the last logits (None if there were none)."""
        self.reset()
        logits = None
        for index in indices:
            logits = self.step(index)
        return logits


def _times(h: np.ndarray, kernel: np.ndarray, top_first: bool) -> np.ndarray:
    """``h @ kernel``, the kernel's top and bottom rows taken in the order ``top_first`` says (the runtime turns it
    at each step), the same sum either way. A kernel over a core's L2 (the shipped LSTM 384's 2.4 MB, this VM's
    2 MB) read in one order at every step streams from L3 each time; read there and back, the half read last is still
    in L2 when the next step begins: the product 49 to 36 microseconds (p50, this VM)."""
    cut = len(h) // 2
    if top_first:
        top = h[:cut] @ kernel[:cut]
        bottom = h[cut:] @ kernel[cut:]
    else:
        bottom = h[cut:] @ kernel[cut:]
        top = h[:cut] @ kernel[:cut]
    top += bottom
    return top


class _LookbackTables:
    """The first kernel's rows past the symbol's, split by part (improvd.core.lookback's order)."""

    def __init__(self, rows: np.ndarray, vocab: int) -> None:
        rows = rows.astype(np.float32)
        self._one, self._two = rows[:vocab], rows[vocab : 2 * vocab]
        self._position, self._left = rows[2 * vocab : 2 * vocab + PLACES], rows[2 * vocab + PLACES :]
        self.none = np.zeros(rows.shape[1], np.float32)

    def row(self, one: int, two: int, position: int, left: int) -> np.ndarray:
        return self._one[one] + self._two[two] + self._position[position] + self._left[left]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities from logits divided by ``temperature`` (float64 for a stable sum)."""
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max()
    exp = np.exp(scaled)
    return exp / exp.sum()
