"""Priming a second LSTM in slices, so that a change of key at a phrase end costs the timing thread nothing.

The engine hears the call on the white keys (improvd.core.keys.diatonic_shift). When the call's collection
moves, the LSTM must hear the whole call again, moved: up to a buffer's length of steps (128 for the shipped
model, several milliseconds). The engine starts that on a second runtime and song cache at the step the
collection of the call so far moves, while it is played, ``PRIME_STEPS`` steps a tick (in the phrase-end silence,
more when that would not catch up by the tick before the phrase end's: a call of 128 steps whose last notes moved
it takes 23-24 a tick with ``phrase_end_steps`` 8), and swaps it in once the call is silent and it has caught up
(at the phrase end at the latest, where what is left is done at once: nothing, unless the call ended sooner than
``phrase_end_steps`` of silence). After an answer that the player played over, the call in progress
is heard again the same way.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from improvd.core.lookback import Place
from improvd.core.songcache import SongCache

PRIME_STEPS = 16  # LSTM steps a tick at least (about 0.08 ms each at the shipped model's size)
SILENT_STEPS = 2  # the call is taken to have fallen silent (a gap of one 16th is staccato, not a phrase end)


class Priming:
    """``runtime`` and ``cache`` (the engine's spare pair) hearing a song from ``start`` (a runtime snapshot):
    the song end, then the indices given to ``begin`` and ``feed``, a slice at a time."""

    def __init__(self, runtime: Any, cache: SongCache, start: Any, song_end: int) -> None:
        self.runtime = runtime
        self.cache = cache
        self.logits: np.ndarray | None = None
        self.shift: int | None = None  # the shift being primed, None when idle
        self._start = start
        self._song_end = song_end
        self._pending: deque[int] = deque()

    def begin(self, shift: int, indices: list[int], place: Place) -> None:
        """Start hearing, moved by ``shift``, a call whose LSTM indices so far are ``indices``, the first of them at
        ``place`` in its bar."""
        self.shift = shift
        self.runtime.restore(self._start)
        self.runtime.seat(place)
        self._pending = deque([self._song_end, *indices])

    def feed(self, index: int) -> None:
        """One more step of the call, heard after those already given."""
        self._pending.append(index)

    def advance(self, steps: int | None = None) -> None:
        """Hear at most ``steps`` (``PRIME_STEPS``) of the pending indices."""
        for _ in range(min(PRIME_STEPS if steps is None else steps, len(self._pending))):
            index = self._pending.popleft()
            self.logits = self.runtime.step(index)
            self.cache.add(index)

    @property
    def pending(self) -> int:
        """Indices given and not yet heard."""
        return len(self._pending)

    @property
    def done(self) -> bool:
        """Primed, and every index given so far heard."""
        return self.shift is not None and not self._pending

    def finish(self) -> None:
        """Hear everything pending now."""
        self.advance(len(self._pending))

    def cancel(self) -> None:
        self.shift = None
        self._pending.clear()
