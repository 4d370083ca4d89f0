"""Priming a second LSTM in slices, so that a change of key at a phrase end costs the timing thread nothing.

The engine hears the call on the white keys (improvd.core.keys.diatonic_shift). When the call's collection
moves, the LSTM must hear the whole call again, moved: up to a buffer's length of steps (128 for the shipped
model, several milliseconds). The engine starts that on a second runtime and song cache at the step the
collection of the call so far moves: while it is played, ``PLAYING_STEPS`` steps a tick (so that a tick of a call
steps the LSTMs three times at most, and a key the call leaves again cost little); in the phrase-end silence
``PRIME_STEPS``, more when that would not catch up by the tick before the phrase end's (a call of 128 steps whose
last notes moved it takes 23-24 a tick with ``phrase_end_steps`` 8); and swaps it in once the call is silent and it
has caught up (at the phrase end at the latest, where what is left is done at once: nothing, unless the call ended sooner than
``phrase_end_steps`` of silence). After an answer that the player played over, the call in progress
is heard again the same way. With the daemon's thread aside (``aside``) the LSTM's steps given leave go there, on a
copy of its state (``Steps``), and the timing thread takes the result. A followed call's priming (improvd.core.follow)
keeps checkpoints, so that the same call heard again with a note more starts from the last one that heard the same
first steps.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterator
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

    def __init__(
        self, runtime: Any, cache: SongCache, start: Any, song_end: int, aside: Callable[[Steps], None] | None = None
    ) -> None:
        """``aside`` (the daemon's thread for work off the timing thread) takes the LSTM's steps that ``advance``
        gives leave for, a job at a time (``Steps``), on a copy of its state; the song cache hears them at once.
        ``done`` counts what was given leave, so the caller's decisions never depend on that thread; ``settle``
        takes its result, or does what it has not done yet."""
        self.runtime = runtime
        self.cache = cache
        self.aside = aside
        self._job: Steps | None = None  # the steps handed aside, their result not taken yet
        self._queued: list[int] = []  # given leave while that job ran: the next job's
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
        self._drop_job()
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
        """Hear at most ``steps`` (``PRIME_STEPS``) of the pending indices (with ``aside``, hand the LSTM's steps to
        it, unless it keeps checkpoints)."""
        count = min(PRIME_STEPS if steps is None else steps, len(self._pending))
        if self.aside is not None and self._song is None:
            self._hand([self._pending.popleft() for _ in range(count)])
            return
        for _ in range(count):
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

    def _hand(self, indices: list[int]) -> None:
        """The song cache hears ``indices`` now, the LSTM aside: a job of them and those queued, once the job before
        is taken (each job starts from the state the last one left); where that thread has fallen a tick behind (its
        job not done, and steps queued from a tick before), here."""
        for index in indices:
            self.cache.add(index)
        self._heard += len(indices)
        behind = self._queued
        self._queued = behind + indices
        self._take()
        if self._job is not None and behind:
            self.settle()
        elif self._job is None and self._queued and self.aside is not None:
            self._job = Steps(copy.copy(self.runtime), self.runtime.snapshot(), self._queued)
            self._queued = []
            self.aside(self._job)

    def _take(self) -> None:
        """The result of the job handed aside, once it is done."""
        job = self._job
        if job is not None and job.done:
            self.runtime.restore(job.state)
            self.logits = job.logits
            self._job = None

    def settle(self) -> None:
        """The LSTM's steps given leave are all taken: the result of the job aside if it is done, else its steps
        and those queued done here (it goes on for nothing)."""
        self._take()
        if self._job is not None:
            self._job.cancelled = True
            self._queued[:0] = self._job.indices
            self._job = None
        for index in self._queued:
            self.logits = self.runtime.step(index)
        self._queued = []

    @property
    def busy_aside(self) -> bool:
        """A job handed aside is not done yet."""
        return self._job is not None and not self._job.done

    def finish(self) -> None:
        """Hear everything pending now, here."""
        aside, self.aside = self.aside, None
        try:
            self.settle()
            self.advance(len(self._pending))
        finally:
            self.aside = aside

    def cancel(self) -> None:
        self._drop_job()
        self.shift = None
        self._pending.clear()

    def _drop_job(self) -> None:
        if self._job is not None:
            self._job.cancelled = True
            self._job = None
        self._queued = []


class Steps:
    """LSTM steps of a priming heard on the daemon's aside thread (improvd.daemon.aside), on ``runtime`` (a copy of
    the priming's, that thread's alone) from ``state``: the priming takes the result (``state``, ``logits``) once
    ``done``, and never one ``cancelled``."""

    def __init__(self, runtime: Any, state: Any, indices: list[int]) -> None:
        self.cancelled = False
        self.done = False
        self.runtime, self.state, self.indices = runtime, state, indices
        self.logits: np.ndarray | None = None

    def slices(self) -> Iterator[None]:
        """One LSTM step a slice."""
        runtime = self.runtime
        runtime.restore(self.state)
        for index in self.indices:
            self.logits = runtime.step(index)
            yield
        self.state = runtime.snapshot()
        self.done = True
