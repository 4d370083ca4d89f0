"""Sampling the next symbol: temperature on the logits, optional top-p, a mask, a seeded generator.

The generator is Python's own (one uniform draw per symbol is all it takes): numpy.random would add
3 MB to the daemon's memory.
"""

from __future__ import annotations

import random

import numpy as np

from improvd.core.runtime import softmax


class Sampler:
    """Draws symbol indices; the same seed and the same logits give the same draws."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def sample(
        self,
        logits: np.ndarray,
        temperature: float,
        top_p: float | None = None,
        allowed: np.ndarray | None = None,
    ) -> int:
        """An index drawn from softmax(logits / temperature), restricted to ``allowed`` (a bool mask)
        and to the smallest set of most likely symbols whose probability reaches ``top_p``. A mask that allows
        nothing is a caller's bug: ValueError."""
        probabilities = softmax(logits, temperature)
        if allowed is not None:
            probabilities = np.where(allowed, probabilities, 0.0)
            total = probabilities.sum()
            if total > 0:
                probabilities /= total
            elif allowed.any():
                probabilities = allowed / allowed.sum()
            else:
                raise ValueError("the mask allows no symbol")
        if top_p is not None and top_p < 1.0:
            probabilities = _nucleus(probabilities, top_p)
        cumulative = probabilities.cumsum()
        index = int(cumulative.searchsorted(self._rng.random() * cumulative[-1], side="right"))
        return min(index, len(probabilities) - 1)


def _nucleus(probabilities: np.ndarray, top_p: float) -> np.ndarray:
    order = np.argsort(-probabilities, kind="stable")
    keep = np.cumsum(probabilities[order]) - probabilities[order] < top_p
    kept = np.zeros_like(probabilities)
    kept[order[keep]] = probabilities[order[keep]]
    return kept / kept.sum()
