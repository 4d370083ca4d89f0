"""An n-gram baseline over the same symbols, with interpolated Witten-Bell backoff smoothing.

p_k(w | h) = (c(h, w) + T(h) * p_{k-1}(w | h')) / (c(h) + T(h)), where h' is h without
its oldest symbol, c counts what followed h in training and T(h) is the number of
different symbols seen after h. The chain starts from a uniform distribution, so no
symbol ever has probability zero. Pure Python and numpy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np


class NGram:
    """Counts of every context up to ``max_order - 1`` symbols long."""

    def __init__(self, vocab_size: int, max_order: int) -> None:
        if max_order < 1:
            raise ValueError(f"max_order must be at least 1, got {max_order}")
        self.vocab_size = vocab_size
        self.max_order = max_order
        self.order = max_order  # the order used for predictions; choose_order() sets it
        # context -> (times seen, distinct followers, {follower: count})
        self.table: dict[tuple[int, ...], tuple[int, int, dict[int, int]]] = {}

    def fit(self, sequences: Iterable[Sequence[int]]) -> NGram:
        """Count every (context, next symbol) pair in each sequence."""
        counts: dict[tuple[int, ...], dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for sequence in sequences:
            for t in range(1, len(sequence)):
                following = sequence[t]
                for length in range(min(self.max_order, t + 1)):
                    counts[tuple(sequence[t - length : t])][following] += 1
        self.table = {ctx: (sum(found.values()), len(found), dict(found)) for ctx, found in counts.items()}
        return self

    def _levels(self, history: Sequence[int], order: int):
        """The table entries of the contexts of length 0, 1, ... up to ``order - 1``, while they exist."""
        for length in range(min(order, len(history) + 1)):
            entry = self.table.get(tuple(history[len(history) - length :]) if length else ())
            if entry is None:
                return
            yield entry

    def distribution(self, history: Sequence[int], order: int | None = None) -> np.ndarray:
        """Probabilities of the next symbol after ``history`` (float64, sums to 1)."""
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for total, types, found in self._levels(history, order or self.order):
            p *= types / (total + types)
            for symbol, count in found.items():
                p[symbol] += count / (total + types)
        return p

    def probabilities_by_order(self, history: Sequence[int], symbol: int) -> np.ndarray:
        """p(symbol | history) at every order 1..max_order, in one pass (for choosing the order)."""
        by_order = np.empty(self.max_order)
        p, seen = 1.0 / self.vocab_size, 0
        for level, (total, types, found) in enumerate(self._levels(history, self.max_order)):
            p = (found.get(symbol, 0) + types * p) / (total + types)
            by_order[level] = p
            seen = level + 1
        by_order[seen:] = p  # contexts never seen: higher orders predict as the longest one seen
        return by_order

    def choose_order(self, validation: list[Sequence[int]], start: int) -> dict[int, float]:
        """Set ``order`` to the one with the lowest validation bits per step; returns bits by order."""
        total = np.zeros(self.max_order)
        steps = 0
        for sequence in validation:
            for t in range(start, len(sequence)):
                total -= np.log2(self.probabilities_by_order(sequence[:t], sequence[t]))
                steps += 1
        scores = {order: round(float(total[order - 1] / max(steps, 1)), 4) for order in range(1, self.max_order + 1)}
        self.order = min(scores, key=scores.get)
        return scores
