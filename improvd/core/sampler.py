"""Sampling the next symbol: temperature on the probabilities, optional top-p, a mask, a seeded generator.

The generator is Python's own (one uniform draw per symbol is all it takes): numpy.random would add
3 MB to the daemon's memory.
"""

from __future__ import annotations

import random

import numpy as np


class Sampler:
    """Draws symbol indices; the same seed and the same probabilities give the same draws."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def sample(
        self,
        probabilities: np.ndarray,
        temperature: float,
        top_p: float | None = None,
        allowed: np.ndarray | None = None,
    ) -> int:
        """An index drawn from ``probabilities`` sharpened or flattened by ``temperature`` (each raised to 1 /
        ``temperature``: the softmax of the log probabilities over it), restricted to ``allowed`` (a bool mask) and
        to the smallest set of most likely symbols whose probability reaches ``top_p``. A mask that allows nothing is
        a caller's bug: ValueError. Drawn from the probabilities themselves, not their logs: the answer's draw took
        a log, then an exponential again, at every step."""
        odds = np.asarray(probabilities, np.float64)
        if temperature != 1.0:
            odds = (odds / odds.max()) ** (1.0 / temperature)  # the most likely at 1, as the softmax's shift does
        if allowed is not None:
            odds = np.where(allowed, odds, 0.0)
            if not odds.sum() > 0:
                if not allowed.any():
                    raise ValueError("the mask allows no symbol")
                odds = allowed.astype(np.float64)
        if top_p is not None and top_p < 1.0:
            odds = _nucleus(odds / odds.sum(), top_p)
        cumulative = odds.cumsum()
        index = int(cumulative.searchsorted(self._rng.random() * cumulative[-1], side="right"))
        return min(index, len(odds) - 1)


def _nucleus(probabilities: np.ndarray, top_p: float) -> np.ndarray:
    order = np.argsort(-probabilities, kind="stable")
    keep = np.cumsum(probabilities[order]) - probabilities[order] < top_p
    kept = np.zeros_like(probabilities)
    kept[order[keep]] = probabilities[order[keep]]
    return kept / kept.sum()
