"""Priming a second LSTM in slices, so that a change of key at a phrase end costs the timing thread nothing.

The engine hears the call on the white keys (improvd.core.keys.diatonic_shift). When the call's collection
moves, the LSTM must hear the whole call again, moved: up to a buffer's length of steps (128 for the shipped
model, several milliseconds). The engine starts that on a second runtime and song cache at the step the
collection of the call so far moves: while it is played, ``PLAYING_STEPS`` steps a tick (so that a tick of a call
steps the LSTMs three times at most, and a key the call leaves again cost little); in the phrase-end silence
``PRIME_STEPS``, more when that would not catch up by the tick before the phrase end's (a call of 128 steps whose last
notes moved it takes 23-24 a tick with ``phrase_end_steps`` 8); and swaps it in once the call is silent and it has caught up
(at the phrase end at the latest, where what is left is done at once: nothing, unless the call ended sooner than
``phrase_end_steps`` of silence). After an answer that the player played over, the call in progress
is heard again the same way. A followed call's priming (improvd.core.follow) keeps checkpoints, so that the same call
heard again with a note more starts from the last one that heard the same first steps.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from improvd.core.lookback import Place
from improvd.core.songcache import SongCache

PRIME_STEPS = 16  # LSTM steps a tick at least in the silence (about 0.08 ms each at the shipped model's size)
PLAYING_STEPS = 2  # ... while the call is played: one to keep up with it, one to catch up
SILENT_STEPS = 2  # the call is taken to have fallen silent (a gap of one 16th is staccato, not a phrase end)
CHECKPOINT_STEPS = 4  # LSTM steps between a checkpointed priming's checkpoints (``begin`` with ``keep``)


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
        self._song: tuple[int, Place, list[int]] | None = None  # begun with checkpoints: (shift, place, indices)
        self._heard = 0  # of those indices (the song end first)
        self.checkpoints: list[tuple[int, Any, tuple, np.ndarray | None]] = []  # (heard, runtime, cache, logits)

    def begin(
        self, shift: int, indices: list[int], place: Place, earlier: Priming | None = None, keep: bool = False
    ) -> None:
        """Start hearing, moved by ``shift``, a call whose LSTM indices so far are ``indices``, the first of them at
        ``place`` in its bar, from the last checkpoint of ``earlier`` (a priming from the same start begun with
        ``keep``, perhaps still going on in another thread) that heard what this one hears first (the same shift,
        place and first indices): the same state, in fewer steps. ``keep``: keep a checkpoint every CHECKPOINT_STEPS
        steps (those taken from ``earlier`` too)."""
        self.shift = shift
        song = [self._song_end, *indices]
        self._pending = deque(song)
        self._song, self._heard, self.checkpoints = None, 0, []
        found = [] if earlier is None else earlier._checkpoints_for(self._start, shift, place, song)
        if not found:
            self.runtime.restore(self._start)
            self.runtime.seat(place)
        else:
            self._heard, runtime, cache, self.logits = found[-1]
            self.runtime.restore(runtime)
            self.cache.restore(cache)
            for _ in range(self._heard):
                self._pending.popleft()
        if keep:
            self._song, self.checkpoints = (shift, place, song), found

    def _checkpoints_for(self, start: Any, shift: int, place: Place, song: list[int]) -> list[tuple]:
        """The checkpoints that heard only the first of ``song``'s indices from ``start`` (the shift and place)."""
        if self._song is None or start is not self._start or self._song[:2] != (shift, place):
            return []
        heard = self._song[2]
        common = next(
            (k for k, (a, b) in enumerate(zip(heard, song, strict=False)) if a != b), min(len(heard), len(song))
        )
        return [found for found in list(self.checkpoints) if found[0] <= common]

    def feed(self, index: int) -> None:
        """One more step of the call, heard after those already given."""
        self._pending.append(index)

    def advance(self, steps: int | None = None) -> None:
        """Hear at most ``steps`` (``PRIME_STEPS``) of the pending indices."""
        for _ in range(min(PRIME_STEPS if steps is None else steps, len(self._pending))):
            index = self._pending.popleft()
            self.logits = self.runtime.step(index)
            self.cache.add(index)
            self._heard += 1
            if self._song is not None and self._heard % CHECKPOINT_STEPS == 0:
                self.checkpoints.append((self._heard, self.runtime.snapshot(), self.cache.snapshot(), self.logits))

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
