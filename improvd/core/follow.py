"""Following the player's tempo: a call heard on the engine's grid is heard again on the player's own.

At a phrase end with ``clock = "follow"`` the engine estimates the call's tempo and beat (improvd.core.tempo),
lays a new 16th grid from that beat (bar 1 on the call's first beat, or after a pickup where its rhythm says so:
``downbeat``; a call that sped up
or slowed down gets a grid that did too, ``Beat.time``) and replays the call's messages onto it exactly as they
would have been heard live: each snaps to the nearest boundary and each step closes once the messages played
before its end are in. The answer then plays on that grid, extrapolated from the call's end at its last tempo.

That work (the tempo fit, the replay and an LSTM hearing the replayed call: tens of milliseconds for a long call)
need not hold the timing thread. ``Following`` is all of it for one call, for the phrase end expected at a given
time, done in slices by whoever runs it (the daemon: a thread of its own, while the phrase end's silence passes);
the engine takes its result at the phrase end when it finished for that very phrase end, and otherwise does the
same work at once, taking what an earlier work for the same call did of it (its fit of the same notes, its LSTM from a
checkpoint). Its result depends on its inputs alone, never on when or where it ran, nor on what was taken.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import mido

from improvd.core.encoding import is_pitch
from improvd.core.grid import bar_steps, strong_positions
from improvd.core.lookback import Place
from improvd.core.priming import Priming
from improvd.core.seedbuffer import SeedBuffer
from improvd.core.tempo import Beat, estimate
from improvd.core.touch import beat_steps

FOLLOW_LEAD = 0.03  # seconds: the answer's first step starts at least this long after the phrase-end tick
SUSTAIN = 64
SILENT_BAR_LINE = 2  # what a bar line with no onset on it costs a place of the call's first note (``downbeat``)
DOWNBEAT_BARS = 4  # ``downbeat`` hears a call's first bars only (its cost stays small)
LONG_NOTES = 0.2  # how much a long note on a strong place counts for that place (``downbeat``)
PICKUP_MARGIN = 3  # how much less than none a pickup must cost to be heard (chosen on Essen validation tunes)
COMPOUND_STEPS = 6  # 16ths in a compound metre's beat (a dotted quarter: 6/8, 9/8, 12/8)


def compound(meter: str) -> bool:
    """Whether ``meter`` is compound (its beat a dotted quarter): the tempo fit hears its beats in threes."""
    return beat_steps(meter) == COMPOUND_STEPS


@dataclass
class Regridded:
    """The call heard on the player's grid: its buffer, its melody onsets (step, velocity, deviation in steps),
    the step open at the phrase end and the steps the call has lasted."""

    buffer: SeedBuffer
    open_step: int
    call_steps: int
    onsets: list[tuple[int, int, float]] = field(default_factory=list)
    offset: int = 0  # the step number of the beat's origin (``downbeat``): the call's first note's place in its bar


def regrid(
    messages: list[tuple[float, mido.Message]], beat: Beat, now: float, length: int, offset: int = 0
) -> Regridded | None:
    """``messages`` (the call's, in time order) replayed on ``beat``'s grid up to the step open at ``now``
    (the last step that starts at least FOLLOW_LEAD before the answer's first), its origin numbered ``offset``
    (bar lines at the multiples of the bar's 16ths); None without a note."""
    starts = onsets(messages)
    if not starts:
        return None

    def steps(time: float) -> float:
        return beat.beats(time) * 4 + offset

    def snap(time: float) -> int:
        return math.floor(steps(time) + 0.5)

    first = snap(min(starts))
    open_step = open_step_at(beat, first, now, offset)
    result = Regridded(SeedBuffer(length), open_step, open_step - first, offset=offset)
    deviations: dict[tuple[int, int], float] = {}
    pending = iter(messages)
    waiting = next(pending, None)
    for k in range(first, open_step):
        while waiting is not None and waiting[0] < beat.time((k + 1 - offset) / 4):
            time, message = waiting
            at = snap(time)
            deviations[(at, getattr(message, "note", -1))] = steps(time) - at
            hear(result.buffer, message, at)
            waiting = next(pending, None)
        symbol = result.buffer.close(k)
        if is_pitch(symbol):
            result.onsets.append((k, result.buffer.velocities[-1], deviations.get((k, int(symbol)), 0.0)))
    return result


def onsets(messages: list[tuple[float, mido.Message]]) -> list[float]:
    """The times of the note_ons among ``messages``."""
    return [t for t, m in messages if m.type == "note_on" and m.velocity > 0]


def open_step_at(beat: Beat, first: int, now: float, offset: int = 0) -> int:
    """The step of ``beat``'s grid (its origin numbered ``offset``) open at a phrase end at ``now`` (the last that
    starts at least FOLLOW_LEAD before the answer's first), for a call whose first step is ``first``."""
    return max(first + 1, math.ceil(beat.beats(now + FOLLOW_LEAD) * 4 + offset) - 1)


def downbeat(starts: list[float], beat: Beat, meter: str) -> int:
    """The 16ths from the first of ``starts`` (onsets in time order) to its bar line on ``beat``'s grid: 0 where the
    call starts on it, else the pickup's length (a whole number of 8ths), told by the onsets of its first
    DOWNBEAT_BARS bars and a pickup's. Each place of the first note in the bar costs the syncopation it makes of
    them (Longuet-Higgins and Lee: a note on a weaker place than one that falls inside it, before the next onset,
    costs the difference of their metrical levels), SILENT_BAR_LINE for each bar line with no onset on it, from the
    first to the last onset's, less LONG_NOTES times each note's level weighed by log2 of its 16ths to the next
    onset (long notes on strong places); a pickup is heard only where it costs PICKUP_MARGIN less than none (then
    the one that costs least). On the first 4 bars of 216 Essen validation tunes (onsets fitted at 100, where these
    weights were chosen): 85 of 88 calls without a pickup kept on bar 1, 65 of 128 pickups found (none before)."""
    bar = bar_steps(meter)
    first = math.floor(beat.beats(starts[0]) * 4 + 0.5)
    heard = {math.floor(beat.beats(t) * 4 + 0.5) - first for t in starts}
    steps = sorted(step for step in heard if step < (DOWNBEAT_BARS + 1) * bar)
    spans = list(pairwise(steps))
    levels = _levels(meter)

    def cost(place: int) -> float:
        silent = set(range(-place % bar, steps[-1] + 1, bar)).difference(steps)
        total = float(SILENT_BAR_LINE * len(silent))
        for start, end in spans:
            mine = levels[(start + place) % bar]
            inside = max((levels[(k + place) % bar] for k in range(start + 1, min(end, start + bar + 1))), default=-1)
            total += max(0, inside - mine) - LONG_NOTES * math.log2(1 + end - start) * mine
        return total

    best = min(range(2, bar, 2), key=cost, default=0)
    return (bar - best) % bar if best and cost(best) <= cost(0) - PICKUP_MARGIN else 0


def _levels(meter: str) -> list[int]:
    """Each 16th of a bar of ``meter``'s metrical level: 4 the bar line, 3 the bar's middle (``strong_positions``),
    2 a beat, 1 an 8th, 0 a 16th."""
    strong, beat = strong_positions(meter), beat_steps(meter)
    return [
        4 if k == 0 else 3 if k in strong else 2 if k % beat == 0 else 1 if k % 2 == 0 else 0
        for k in range(bar_steps(meter))
    ]


class Following:
    """The follow work of one call, for a phrase end at ``end``: the tempo fit (``beat``), the call replayed on the
    player's grid (``regridded``) and ``priming`` (a spare LSTM and song cache) hearing ``call`` moved by ``shift``:
    the replayed call, or where there is none (its tempo cannot be told) ``as_heard``, the call as the engine's own
    grid will hold it then, the phrase end opening its step ``open_step`` (``prepare`` gives the shift, the LSTM's
    indices of a call's symbols and the place in the bar of its first, from the step that phrase end opens). ``inputs`` are
    what it was made from besides those: the tempo prior, the metre (a compound one or not for the fit; ``downbeat``
    numbers the replayed call's steps so that its first bar line falls where the music puts it) and the buffer's
    length, which it uses, then whatever else the caller's ``prepare`` depends on; the engine takes its result only
    where the phrase end finds them unchanged. ``finished`` once done; ``cancelled`` asks whoever runs it to stop. ``earlier``: the work
    made before for the same call (dropped, or not finished in time), whose progress ``slices`` takes."""

    def __init__(
        self,
        messages: list[tuple[float, mido.Message]],
        as_heard: list[str],
        end: float,
        open_step: int,
        inputs: tuple[Any, ...],
        priming: Priming,
        prepare: Callable[[list[str], int], tuple[int, list[int], Place]],
        earlier: Following | None = None,
    ) -> None:
        self.messages = list(messages)
        self.call = as_heard
        self.end = end
        self.open_step = open_step
        self.inputs = inputs
        self.priming = priming
        self._prepare = prepare
        while earlier is not None and not earlier.fitted and earlier._earlier is not None:
            earlier = earlier._earlier  # cancelled before it began: what it would have taken, instead
        self._earlier = earlier if earlier is not None and earlier.inputs == inputs else None
        self.beat: Beat | None = None
        self.fitted = False  # the beat is found (None too)
        self.begun = False  # the priming has begun
        self.regridded: Regridded | None = None
        self.shift = 0
        self.finished = False
        self.cancelled = False

    def slices(self) -> Iterator[None]:
        """The work, yielding between slices (the fit, the replay, each PRIME_STEPS of the LSTM's priming). What an
        ``earlier`` work of the same inputs (perhaps cancelled, or still going on in another thread) has done of it
        already is taken from it: its fit and replay of the same messages, its priming's checkpoints (so a note
        played after that work was handed aside costs the fit, the replay and the steps from that note on)."""
        prior_bpm, meter, length = self.inputs[:3]
        earlier = self._earlier
        same = earlier is not None and earlier.fitted and earlier.messages == self.messages
        self.beat = earlier.beat if same else estimate(onsets(self.messages), prior_bpm, compound=compound(meter))
        self.fitted = True
        if self.beat is not None:
            yield
            # its replay once it has begun priming: by then it reads the replayed buffer no more (the engine will)
            replayed = earlier.regridded if same and earlier.end == self.end and earlier.begun else None
            offset = -downbeat(onsets(self.messages), self.beat, meter) % bar_steps(meter)
            self.regridded = replayed or regrid(self.messages, self.beat, self.end, length, offset)
        open_step = self.open_step
        if self.regridded is not None:
            self.call, open_step = self.regridded.buffer.last_note_symbols(), self.regridded.open_step
        yield
        self.shift, indices, place = self._prepare(self.call, open_step)
        self.priming.begin(self.shift, indices, place, earlier.priming if earlier is not None else None, keep=True)
        self.begun = True
        self._earlier = None  # all taken: no chain of earlier works kept
        while not self.priming.done:
            yield
            self.priming.advance()
        self.finished = True

    def run(self) -> Following:
        """All of it, at once."""
        for _ in self.slices():
            pass
        return self

    def ready_for(self, now: float, inputs: tuple[Any, ...]) -> bool:
        """Finished, for a phrase end at ``now`` with these ``inputs``: its replay ends on the step that phrase end
        opens (a phrase end sooner or later than expected, or a tempo changed meanwhile, lays another grid)."""
        if not self.finished or self.cancelled or inputs != self.inputs:
            return False
        regridded = self.regridded
        if self.beat is None or regridded is None:
            return True  # nothing to follow: the tempo could not be told, or the call has no note
        first = regridded.open_step - regridded.call_steps
        return open_step_at(self.beat, first, now, regridded.offset) == regridded.open_step


class TurnFit:
    """The tempo fit of a followed turn's onsets heard so far (``turns`` in bars) and where its first bar line falls
    (``pickup``: ``downbeat``): the engine counts the player's bars on it, and hands it aside at the tick that heard a
    new onset, for the next tick. ``result()`` is the beat (None: too few onsets), done at once where the work aside
    has not finished it: the same result either way."""

    def __init__(self, starts: list[float], prior_bpm: float, meter: str) -> None:
        self.starts = starts
        self.prior_bpm = prior_bpm
        self.meter = meter
        self.beat: Beat | None = None
        self.pickup = 0  # 16ths from the turn's first note to its first bar line
        self.finished = False
        self.cancelled = False

    def fits(self, starts: list[float], prior_bpm: float, meter: str) -> bool:
        """Made from these very onsets, prior and metre."""
        return (starts, prior_bpm, meter) == (self.starts, self.prior_bpm, self.meter)

    def slices(self) -> Iterator[None]:
        """The fit, in one slice."""
        self.result()
        yield from ()

    def run(self) -> TurnFit:
        self.result()
        return self

    def result(self) -> Beat | None:
        if not self.finished:
            self.beat = estimate(self.starts, self.prior_bpm, compound=compound(self.meter))
            self.pickup = 0 if self.beat is None else downbeat(self.starts, self.beat, self.meter)
            self.finished = True
        return self.beat


def hear(buffer: SeedBuffer, message: mido.Message, step: int) -> None:
    """``buffer`` hears a player's ``message`` (a note, a release or the sustain pedal) at ``step``."""
    if message.type == "note_on" and message.velocity > 0:
        buffer.note_on(message.note, message.velocity, step)
    elif message.type in ("note_on", "note_off"):
        buffer.note_off(message.note, step)
    elif message.type == "control_change" and message.control == SUSTAIN:
        buffer.pedal(message.value >= 64, step)
