"""The song cache: what was played earlier in this song, mixed into the LSTM's next-symbol probabilities.

Folk tunes repeat themselves (AABB, a line played twice, a motif sequenced),
but an LSTM trained on short windows barely copies from far back. The cache
counts, over the song so far, which symbol followed each context of
``MIN_ORDER`` to ``MAX_ORDER`` steps, and interpolates those counts over the
LSTM's distribution from the shortest context up to the longest one seen
(Witten-Bell: a context seen ``n`` times with ``t`` different continuations
gets weight ``n / (n + ALPHA * t)``). With nothing repeated it returns the
LSTM's distribution unchanged. This is the short-term model of Pearce's IDyOM
(and of PPM), with the LSTM as the long-term model underneath.

The constants were chosen on the validation split (``improvd-train evaluate``
reports the LSTM with and without the cache). Only the last ``WINDOW`` steps
count, so a daemon left running for hours holds a bounded table.
"""

from __future__ import annotations

from collections import deque

import numpy as np

MIN_ORDER = 6  # steps of context; shorter contexts repeat by chance in any tune
MAX_ORDER = 24
ALPHA = 16.0  # how much the cache doubts a context: larger trusts the LSTM more
WINDOW = 1024  # steps remembered (64 bars of 4/4)


class SongCache:
    """Counts of (context, next symbol) over the last ``WINDOW`` symbols of one song; ``song_end`` starts a new one."""

    def __init__(self, song_end: int) -> None:
        self.song_end = song_end
        self._history: deque[int] = deque(maxlen=MAX_ORDER)
        self._added: deque[tuple[int, list[tuple[int, ...]]]] = deque()  # per step: symbol, contexts it counted in
        self._counts: dict[tuple[int, ...], dict[int, int]] = {}

    def reset(self) -> None:
        """A new song: forget everything."""
        self._history.clear()
        self._added.clear()
        self._counts.clear()

    def add(self, index: int, count: bool = True) -> None:
        """Count ``index`` after each context ending here, then make it part of the history.

        ``count=False`` only moves the context on: for symbols improvd generates
        itself, which would otherwise feed back until an answer loops on itself.
        """
        if index == self.song_end:
            self.reset()
            return
        history = tuple(self._history)
        top = min(MAX_ORDER, len(history)) if count else MIN_ORDER - 1
        contexts = [history[len(history) - k :] for k in range(MIN_ORDER, top + 1)]
        for context in contexts:
            following = self._counts.setdefault(context, {})
            following[index] = following.get(index, 0) + 1
        self._added.append((index, contexts))
        self._history.append(index)
        if len(self._added) > WINDOW:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        index, contexts = self._added.popleft()
        for context in contexts:
            following = self._counts[context]
            following[index] -= 1
            if not following[index]:
                del following[index]
                if not following:
                    del self._counts[context]

    def mix(self, probabilities: np.ndarray) -> np.ndarray:
        """The LSTM's ``probabilities`` with what followed the current contexts earlier in the song."""
        mixed = np.asarray(probabilities, np.float64)
        history = tuple(self._history)
        for k in range(MIN_ORDER, len(history) + 1):
            following = self._counts.get(history[len(history) - k :])
            if following is None:
                break  # a longer context ending here cannot have been seen either
            total = sum(following.values())
            weight = total / (total + ALPHA * len(following))
            mixed = mixed * (1.0 - weight)
            for index, count in following.items():
                mixed[index] += weight * count / total
        return mixed
