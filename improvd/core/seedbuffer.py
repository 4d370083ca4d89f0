"""The player's melody as 16th-note symbols: a rolling buffer fed whole grid steps.

The engine snaps times to the grid and tells the buffer which step each note
starts and ends on; the buffer decides each closed step's symbol:

* the highest pitch among the notes starting on that step, when it is above
  every key still down from before (the melody is the top line; a note the pedal
  holds after its key came up hides nothing, so a pedalled falling line stays a
  line, and a pitch struck again under the pedal is a new note);
* ``_`` while a note (or a rest) goes on;
* ``r`` at the first silent step (no key down and no note held by the pedal).

A key or pedal that has made no onset for ``STUCK_STEPS`` steps is taken as
released, and so is a key down for ``STUCK_STEPS`` since its own onset while the
player goes on: one lost note_off (or sustain-off) cannot hold a call open forever.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence

from improvd.core.encoding import HOLD, REST, is_pitch

STUCK_STEPS = 64  # four bars of 4/4 without an onset: held keys and the pedal are forgotten


class SeedBuffer:
    """Keeps the last ``length`` symbols of the player's line, one per closed step."""

    def __init__(self, length: int) -> None:
        self.symbols: deque[str] = deque(maxlen=length)
        self._onsets: dict[int, dict[int, int]] = {}  # step -> {pitch: velocity}
        self._down: dict[int, int] = {}  # pitch -> onset step, key held
        self._pedalled: dict[int, int] = {}  # pitch -> onset step, released key held by the pedal
        self._released_at: int | None = None  # step a release snapped to, when it ended the last sounding note
        self._pedal = False
        self._sounding_pitch: int | None = None  # the melody note now sounding
        self.velocities: deque[int] = deque(maxlen=4)
        self.silent_steps = 0
        self._last_onset = 0  # the step of the latest onset, for forgetting stuck keys

    @property
    def held(self) -> bool:
        """A key is down or the pedal holds a note."""
        return bool(self._down or self._pedalled)

    def note_on(self, pitch: int, velocity: int, step: int) -> None:
        self._onsets.setdefault(step, {})[pitch] = velocity
        self._pedalled.pop(pitch, None)  # struck again: the key is down, not held by the pedal
        self._down[pitch] = step
        self._last_onset = step

    def note_off(self, pitch: int, step: int) -> None:
        """A key released; its sound ends on ``step`` (the snapped boundary) unless the pedal holds it."""
        onset = self._down.pop(pitch, None)
        if onset is None:
            return  # a note_off for a key that was never pressed (or already released)
        if self._pedal:
            self._pedalled[pitch] = onset
        elif not self.held:
            self._released_at = step

    def pedal(self, down: bool, step: int) -> None:
        self._pedal = down
        if not down and self._pedalled:
            self._pedalled.clear()
            if not self._down:
                self._released_at = step

    def release_all(self, step: int) -> None:
        """Every key up and the pedal up on ``step`` (input was lost: a release may have been among it)."""
        for pitch in list(self._down):
            self.note_off(pitch, step)
        self.pedal(False, step)

    def has_onset(self, step: int) -> bool:
        return step in self._onsets

    def pending_onsets(self) -> bool:
        """Notes played whose step has not closed yet."""
        return bool(self._onsets)

    def start_call(self) -> None:
        """A new call began with the last closed step: forget the symbols before it."""
        first = self.symbols[-1]
        self.symbols.clear()
        self.symbols.append(first)

    def resize(self, length: int) -> None:
        """Keep the last ``length`` symbols from now on."""
        self.symbols = deque(self.symbols, maxlen=length)

    def reset_call(self) -> None:
        """Forget everything held or pending (after a panic, a disable or a Stop)."""
        self._onsets.clear()
        self._down.clear()
        self._pedalled.clear()
        self._released_at = None
        self._sounding_pitch = None
        self.silent_steps = 0

    def close(self, step: int) -> str:
        """The symbol for ``step``, now over; appended to the buffer and returned."""
        self._forget_stuck(step)
        symbol = self._symbol_for(step)
        self.symbols.append(symbol)
        return symbol

    def _forget_stuck(self, step: int) -> None:
        """Released as of ``step`` (a late note_off or sustain-off is then ignored): a key down for STUCK_STEPS since
        its own onset, however many others were struck meanwhile, and the pedal after STUCK_STEPS without any onset
        (a line played under it keeps it)."""
        stuck = [pitch for pitch, onset in self._down.items() if step - onset >= STUCK_STEPS]
        for pitch in stuck:
            del self._down[pitch]
        if self._pedalled and step - self._last_onset >= STUCK_STEPS and step not in self._onsets:
            self._pedalled.clear()
            self._pedal = False
            stuck.append(step)
        if stuck and not self.held:
            self._released_at = step

    def _symbol_for(self, step: int) -> str:
        onsets = self._onsets.pop(step, {})
        earlier = [p for p, on in self._down.items() if on < step]
        if onsets and max(onsets) > max(earlier, default=-1):
            pitch = max(onsets)
            self.velocities.append(onsets[pitch])
            self._sounding_pitch = pitch
            self.silent_steps = 0
            self._released_at = None
            return str(pitch)
        if self._sounds_during(step):
            self.silent_steps = 0
            return HOLD
        self.silent_steps += 1
        starts_rest = self.silent_steps == 1 and self.symbols and self._sounding_pitch is not None
        self._sounding_pitch = None
        return REST if starts_rest else HOLD

    def _sounds_during(self, step: int) -> bool:
        if any(on <= step for on in {**self._down, **self._pedalled}.values()):
            return True
        return self._released_at is not None and self._released_at > step

    def last_note_symbols(self) -> list[str]:
        """The buffer's symbols, from the first note on (leading holds of nothing dropped)."""
        return from_first_note(list(self.symbols))

    def after_silence(self, steps: int) -> list[str]:
        """``last_note_symbols`` as they will be after ``steps`` more silent steps (the first silent one closed)."""
        kept = self.symbols.maxlen or 0
        return from_first_note([*self.symbols, *[HOLD] * steps][-kept:] if kept else [])


def from_first_note(symbols: list[str]) -> list[str]:
    """``symbols`` from the first note or rest on (leading holds of nothing dropped)."""
    for index, symbol in enumerate(symbols):
        if is_pitch(symbol) or symbol == REST:
            return symbols[index:]
    return []


def usual_gap(symbols: Sequence[str]) -> int:
    """The silent steps the player would leave after the last note of ``symbols`` before playing on, at the call's
    own articulation: that note's sounding steps times the usual ratio of silence to sound in its notes before
    (the median over each note followed by another, the lower middle), rounded down; 0 for legato playing and for a
    single note."""
    ratios: list[float] = []
    last = tail = 0  # the last note's sounding steps, and the silence after it
    for symbol in symbols:
        if is_pitch(symbol):
            if last:
                ratios.append(tail / last)
            last, tail = 1, 0
        elif symbol == REST or tail:
            tail += 1
        elif last:
            last += 1
    return math.floor(last * statistics.median_low(ratios) + 1e-9) if ratios else 0
