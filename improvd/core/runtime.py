"""Stateful LSTM in numpy: one symbol in, next-symbol probabilities out, per 16th step.

The first layer's input projection is folded into a lookup table
(``embedding @ kernel + bias`` or, for one-hot input, ``kernel + bias``), so a
step costs one table row plus one small matrix product per layer.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from improvd.core.model import Model


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # exact sigmoid, no overflow warnings


class LSTMRuntime:
    """The model's recurrent state and a one-step forward pass (float32)."""

    def __init__(self, model: Model) -> None:
        w = model.weights
        first = w["lstm_0_kernel"]
        if model.input == "embedding":
            first = w["embedding"] @ first
        self._input_table = (first + w["lstm_0_bias"]).astype(np.float32)
        self._layers = [
            (
                w[f"lstm_{k}_kernel"] if k else None,
                w[f"lstm_{k}_recurrent_kernel"],
                w[f"lstm_{k}_bias"] if k else None,
                units,
            )
            for k, units in enumerate(model.lstm_units)
        ]
        self._dense_kernel = w["dense_kernel"]
        self._dense_bias = w["dense_bias"]
        self.vocabulary = model.vocabulary
        self.reset()

    def reset(self) -> None:
        """Forget everything heard: zero state, as Keras starts a sequence."""
        self._state = [(np.zeros(u, np.float32), np.zeros(u, np.float32)) for *_, u in self._layers]

    def snapshot(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """A copy of the state, to restore after trying a continuation."""
        return [(h.copy(), c.copy()) for h, c in self._state]

    def restore(self, snapshot: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self._state = [(h.copy(), c.copy()) for h, c in snapshot]

    def step(self, index: int) -> np.ndarray:
        """Feed one symbol index; return the logits of the next symbol (float32, vocab-sized)."""
        x = None
        new_state = []
        for (kernel, recurrent, bias, units), (h, c) in zip(self._layers, self._state, strict=True):
            z = self._input_table[index] if kernel is None else x @ kernel + bias
            z = z + h @ recurrent
            gates = _sigmoid(z)  # i, f and o in one pass (the g quarter's is not used)
            c = gates[units : 2 * units] * c + gates[:units] * np.tanh(z[2 * units : 3 * units])
            h = gates[3 * units :] * np.tanh(c)
            new_state.append((h, c))
            x = h
        self._state = new_state
        return x @ self._dense_kernel + self._dense_bias

    def prime(self, indices: Iterable[int]) -> np.ndarray | None:
        """Reset, then feed ``indices``; return the last logits (None if there were none)."""
        self.reset()
        logits = None
        for index in indices:
            logits = self.step(index)
        return logits


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities from logits divided by ``temperature`` (float64 for a stable sum)."""
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max()
    exp = np.exp(scaled)
    return exp / exp.sum()
