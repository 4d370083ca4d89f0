"""The engine: call and response, pure and clock-driven.

Timestamped MIDI messages go in, timestamped MIDI messages come out; the engine
has no clock, thread or port of its own, so the daemon drives it in real time
and tests and ``improvd continue`` drive it in simulated time, with the same
output for the same input, tempo, settings and seed.

The driver's contract (times are floats in seconds on the driver's clock):

* ``start(t)`` sets the grid origin (step 0, bar 1, begins at ``t``); then
  ``tick(t)`` at every grid boundary, in order, where ``next_boundary()`` puts
  it (a step on at the tempo; elsewhere once the grid follows the player). A
  tick closes the step that just ended: the seed buffer gets its symbol and the
  LSTM takes one step, so the model is primed at every moment.
* ``feed(message, t)`` for each player message, between ticks: note_on (velocity
  0 is a note_off), note_off and CC 64 (>= 64 down) make the call; other
  channels than ``input_channel`` are ignored. An event in the second half of a
  step counts on the next boundary (onsets and releases snap to the nearest).
  ``feed`` returns messages to send at once: the message itself with ``thru``,
  then the barge-in releases; usually [].
* Output is queued inside the engine with the time it is due (``schedule`` adds
  to it); the driver sleeps until ``next_due()`` and sends what ``pop_due(now)``
  returns, in time order; it also wakes the engine at ``next_deadline()`` with
  ``wake(now)`` (the bar line's grace of ``phrase_end = "music"``), having fed the
  messages that came before it (``feed`` and ``tick`` meet a deadline passed too);
  ``drop_late(t)`` drops what a stalled driver can no longer play on time
  (note_ons due before ``t`` and their note_offs). With a ``program``, ``start``
  and each change of it or of ``output_channel`` queue a program_change there.
  ``panic``, ``set_enabled(False, t)``, ``stop`` and a barge-in clear the queue
  and return (to send at once) a note_off for every
  sounding note (a barge-in for improvd's own only: the player's notes passed
  through sound on while their keys are down); ``panic``, disabling and ``stop``
  add CC 123 and CC 64 = 0 on the output channel. So every note_on sent has its
  note_off on every path. ``sounding`` is the set of (channel, note) pairs now
  on, improvd's and those passed through. ``all_notes_off(t)`` returns CC 123 and CC 64 = 0 alone,
  changing nothing: the daemon sends it at start and when its output port
  returns, for notes a killed run left on.
* ``update(time=None, **settings)`` checks all changes before applying any
  (ValueError naming the setting, the value and what is allowed) and returns
  the releases to send when it disables the engine. ``set_model`` takes effect
  at once when listening, at the end of the answer when responding.
* ``drain_events()`` returns what happened since the last call, each an
  ``Event(time, name, data)``: ``phrase_end`` {call_steps}, ``response_start``
  {steps, first_step, entry, transposition, offset, model}, ``response_end`` ({} or
  {interrupted: True}), ``barge_in``, ``panic``, ``forget`` {phrases}, ``input_lost`` {released},
  ``respond_ignored`` {reason}, ``count_in`` {listen_at_step}, ``notes_ignored`` {reason, notes} (played in a
  count-in before its last beat, or on the last 16th of a player's turn of ``turns``, or followed, after the tick
  before it), ``tempo`` {bpm, fit}.

Listening becomes responding at the tick that completes ``phrase_end_steps``
silent steps (no key down and no note held by the pedal) after a call of at
least ``min_call_steps`` played steps, at the first tick after ``respond_now``,
or when the call reaches ``max_call_steps``. A call too short to answer is
forgotten once the silence is long enough. With ``phrase_end = "music"`` a call
that fills 4 or 8 bars ends on the bar line that ends them when by a grace after it (10-40 ms, from the player's own
lateness: ``_grace``) no key is down and no note has begun (``_expect_entry``, ``wake``): the answer then starts on
that bar line, the LSTM drawing its step as the answer's own, its first note at the grace. One that falls silent in
the last half bar (or beat) before that bar line may end at the tick before it: two silent steps, or as many more as
the player's own articulation leaves after its last note (``_sounds_over``). With ``turns`` a number of bars, the call
ends at the tick before the bar line that ends the player's turn, whatever it
played, and the answer fills as many bars from that bar line; followed, that bar line is the player's, where the
tempo fitted to the turn's onsets so far puts it (``_turn_ends_in``).

One timeline. At the phrase-end tick the LSTM has consumed every closed step of
the call and its silence; it then consumes a hold for the step that opened at
the tick (already under way, silent) and draws the answer one symbol per
following grid step, so each answer symbol sounds on the step it was drawn
for (at the bar line's grace, the step under way is the answer's first: no hold). Before drawing, the engine
moves the call onto the white keys by its diatonic collection (improvd.core.keys.diatonic_shift), or by the ``key``
setting's when one is stated (``_key``); when that move changes, a spare LSTM
hears the call again in slices while the phrase-end silence passes
(improvd.core.priming) and takes over. With ``follow_tempo`` the call is heard again on the player's own grid
(improvd.core.follow.Following): work handed to ``aside`` FOLLOW_AHEAD steps before the phrase end is due (a turn's
too), again at the tick after each message played meanwhile, and taken there when it finished for it (otherwise done
there from what was done, with the same result); a phrase end it was not handed aside for waits FOLLOW_WAIT steps for
it (``_wait_for_follow``). A message heard after the tick before the phrase end comes too late for that work (aside or
not): the replayed call hears it on its open step, so a note begins the next call (``_hear_late``). With style auto
(``set_styles``) every candidate model hears the call too, a slice a tick, and at the phrase end the one that
predicted it best takes over as it heard it, in the transposition it heard it best in (the white keys, or a model's
minor transposition: the answer's collection and tonic move with it; improvd.core.styles; ``response_start`` names
it). A model answering alone whose minor tunes were trained on another tonic than A (its card's ``minor_tonic``) is
its own candidates the same way, itself in both transpositions (``candidates``: improvd.core.styles.own_styles), and
answers in the one that predicted the call better (``response_start``'s ``offset``, ``offset``). The answer is drawn
in slices
(improvd.core.answer): each tick draws the symbol of the step that opens at the
next boundary and at most ``SLICE_STEPS`` LSTM steps more, and queues the notes
drawn, moved back and folded by octaves into ``range`` (its notes are drawn
inside it where the collection has any there); so no tick holds the driver for
more than a slice, whatever the answer's length, metre or tempo.

Where it sounds (``AnswerPlan``). Bar lines fall every ``bar_steps(meter)``
steps from the grid origin. The model places the first note itself (holds and
rests of the silence may come first), but a note is forced on the first bar
line at or after the first answer step if none came before: at most a bar of
silence (with ``phrase_end = "music"``, on the first beat line at or after it, a quarter line in a metre of
half-note beats, and the answer's bars count from the bar line before it when it falls in that bar's
first beat: ``AnswerPlan.latest``). With ``response_steps`` None the answer fills ``response_bars`` bars
after that bar line (with ``"match"``, as many as the call played in:
``_call_bars``) and ends on a bar line; otherwise it lasts
``response_steps`` steps (or as many as the call played, with ``"match"``). Its
last bar is drawn again, up to ``CADENCE_TRIES`` times (as many as the slices fit
before it is due), until its last note on a strong beat is the tonic (the call's,
or the stated key's) or the dominant. A song end is never drawn, the
answer keeps to the call's collection (the white keys in the model's key, plus
the call's own accidentals), and it starts notes only at the places in the beat
where the call started some (a call in 8ths gets no 16th off the 8ths). The engine listens again at the boundary after
the answer's last step.

Memory. The song cache (improvd.core.songcache) mixes what followed the same
contexts earlier in the player's line into the LSTM's probabilities (it follows
the answer as it goes but does not learn from it, which would let an answer
loop); under it the session memory (improvd.core.recall) mixes what followed the same
contexts (and the same last notes, in any rhythm) in the player's earlier calls, each remembered as played once
it is answered and heard in the present call's key; the echo (improvd.core.echo) lays the call over the answer bar line on bar line, and the earlier calls under it.
Temperature divides the log probabilities; top-p keeps the smallest set of likely symbols; the generator is
seeded.

Touch (improvd.core.touch). Each note_off is due ``gate`` of its note's length after
its note_on and never after the next answer note's onset, so a repeated pitch
retriggers. Velocity is ``velocity``, or the call's recent level with the call's
accent at the same metric place; with ``groove = "follow"`` each note moves by
the call's mean timing off the grid at its place in the beat (at most a quarter
step). With ``barge_in = "stop"`` a player note during an answer releases every
sounding answer note at once, drops the rest of the answer and starts the next
call; with ``"overlap"`` the answer plays on and the player's notes go into the
buffer for the next call.

While answering, the LSTM consumes its own symbols (it is continuing). The
temperature, top-p and the rules of the answer are those of its phrase end. After
the answer the next call's first step (a barge-in: at once) re-primes the LSTM and the cache from the
player's buffer (a call played over the answer is heard again in slices), so
the next answer follows what the player played, not what improvd played.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mido
import numpy as np

from improvd.core.answer import (
    AnswerPlan,
    Drawing,
    Predictor,
    Rules,
    collection_mask,
    onset_places,
    sounds_its_downbeats,
)
from improvd.core.echo import Echo
from improvd.core.encoding import HOLD, REST, SONG_END, is_pitch, tonic_pitch_class
from improvd.core.follow import FOLLOW_LEAD, Following, TurnFit, hear, onsets
from improvd.core.grid import Grid, bar_steps, next_bar_line, strong_positions
from improvd.core.keys import DiatonicTally, call_key, diatonic_shift, key_shift, parse_key
from improvd.core.lookback import Place
from improvd.core.metronome import CLICK_STEPS, click
from improvd.core.model import Model
from improvd.core.priming import PLAYING_STEPS, PRIME_STEPS, SILENT_STEPS, Priming
from improvd.core.recall import SessionMemory
from improvd.core.runtime import LSTMRuntime
from improvd.core.sampler import Sampler
from improvd.core.schema import MATCH_BARS
from improvd.core.seedbuffer import SeedBuffer, usual_gap
from improvd.core.settings import Settings
from improvd.core.songcache import SongCache
from improvd.core.styles import STYLE_STEPS, Handover, Styles, moved, own_styles
from improvd.core.touch import Touch, beat_steps

SUSTAIN = 64
ALL_NOTES_OFF = 123
HEARD_MESSAGES = 256  # the call's last messages kept for following its tempo (128 notes; the phrase end replays them)
PHRASE_BARS = (4, 8)  # phrase_end = "music": a call that fills this many bars may end by its silence (``_over_at``)
GRACE = (0.010, 0.040)  # seconds: the bar line's grace (``_grace``) at least, and at most (or a third of a 16th)
GRACE_MARGIN = 1.5  # ... else this many times as late as the call's latest onset
FOLLOW_AHEAD = 4  # clock = "follow" with ``aside``: the follow work starts this many 16ths before the phrase end due
FOLLOW_WAIT = 2  # ... and a phrase end it was not started for waits this many 16ths for it (``_wait_for_follow``)


@dataclass(frozen=True)
class Timed:
    """A message to send at ``time``: improvd's own, or the player's passed through (``source`` "player")."""

    time: float
    message: mido.Message
    source: str = "improvd"


@dataclass(frozen=True)
class Event:
    """Something a listener may want to know; the names and their data are listed in the module docstring."""

    time: float
    name: str
    data: dict = field(default_factory=dict)


def explicit(changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` with what they imply said outright, so that applying several in turn equals applying them merged
    (later keys win): ``response_bars`` alone means whole bars, the length set last wins."""
    if "response_bars" in changes and "response_steps" not in changes:
        return {**changes, "response_steps": None}
    return dict(changes)


class Engine:
    """Seed buffer -> LSTM runtime -> sampler -> queued output, driven by ticks and messages."""

    def __init__(
        self,
        model: Model,
        settings: Settings | None = None,
        seed: int | None = None,
        predictor: Callable[[Model], Predictor] = LSTMRuntime,
        memory: bool = True,
        aside: Callable[[Following], None] | None = None,
        candidates: Callable[[Model], Styles | None] = own_styles,
    ) -> None:
        """``predictor`` makes the step model from ``model`` (the LSTM; evaluate passes an n-gram); without
        ``memory`` the answer is the predictor's alone (no song cache, no echo), for evaluate's comparisons.
        ``aside`` takes a followed call's work (improvd.core.follow.Following) to do off the caller's thread while
        the phrase end's silence passes (the daemon's thread for it); without it the phrase end does that work.
        ``candidates`` makes a model's own candidates when it answers alone, itself in each of its transpositions
        (improvd.core.styles.own_styles; the daemon's are made off its timing thread); not for a predictor other
        than the LSTM."""
        self.settings = (settings or Settings()).validate()
        self._predictor = predictor
        self._memory = memory
        self._sampler = Sampler(seed)
        self._queue: list[tuple[float, int, mido.Message]] = []
        self._order = itertools.count()  # ties in the queue keep insertion order
        self._on_grid: dict[int, float] = {}  # queue order -> grid position (steps) of what was queued on the grid
        self._response_end = 0.0  # grid position where the answer in progress ends
        self._events: list[Event] = []
        self._own: set[tuple[int, int]] = set()  # (channel, note) of improvd's own notes now on
        self._passed: set[tuple[int, int]] = set()  # ... and of the player's notes passed through and still on
        self._silent = False  # a panic's releases went out and nothing has been sent since: another sends nothing
        self._pending_model: Model | None = None
        self._candidates = candidates
        self._alone: tuple[Model, Styles | None] | None = None  # the model answering alone, its own candidates
        self._auto = False  # the candidates are style auto's (``set_styles``), not the model's own
        self._styles: Styles | None = None  # the candidates that hear the call, style auto's or the model's own
        self._offset = 0  # the last answer's transposition from the call's white keys (``offset``)
        self._pending_styles: tuple[Styles | None] | None = None  # set_styles during an answer, for after it
        self._resting = False  # while listening with candidates: they hear the call, the engine's LSTM rests
        self._grid = Grid()
        self._respond_requested = False
        self.mode = "listening" if self.settings.enabled else "idle"
        self._buffer = SeedBuffer(self.settings.buffer_steps or model.sequence_length)
        self._call_steps = 0
        self._shift = 0
        self._tally = DiatonicTally()  # the call's diatonic collection, counted as it grows
        self._touch = Touch()
        self._thru_channels: set[int] = set()  # channels the player's messages went out on (their pedal too)
        self._count_in_start = self._count_in_end = 0  # the count-in's grid steps: listening starts in its last beat
        self._count_in_ignored = 0  # notes played in the count-in before its last beat
        self._deviations: dict[tuple[int, int], float] = {}  # (step, pitch) -> how far off the grid it was played
        self._heard: deque[tuple[float, mido.Message]] = deque(maxlen=HEARD_MESSAGES)  # the call's, for follow
        self._late: list[tuple[float, mido.Message]] = []  # ... heard since the last tick (``_take_late``)
        self._aside = aside
        self._following: Following | None = None  # the follow work handed aside for the phrase end expected
        self._handed: Following | None = None  # the last made for this call (dropped or not): the next takes from it
        self._respond_at: int | None = None  # a phrase end waiting for its follow work: the step it answers at
        self._turn_fit: TurnFit | None = None  # a followed turn's tempo fit, that its last tick counted its bars on
        self._turn_next: TurnFit | None = None  # ... and the fit handed aside for its next tick
        self._drawing: Drawing | None = None  # the answer being drawn
        self._queued_symbols = 0  # of the drawing's symbols, those whose notes are queued
        self._open_note: tuple[float, int, int, mido.Message] | None = None  # (on time, first step, steps, note_on)
        self._recall = SessionMemory(self._phrases_kept())  # the player's earlier calls (improvd.core.recall)
        self._answered: list[str] = []  # the call being answered: remembered when its answer ends
        self._answered_at = (0, 16)  # its first step's place in its bar, and the bar's steps
        self._call_first = 0  # the grid step of the call's first note
        self._entry_at: float | None = None  # phrase_end = "music": when the call may be over on its bar line
        self._entry_time = -math.inf  # an answer that entered on that bar line: its first note sounds then
        self.model: Model | None = None
        self._load(model)

    # --- model and state -----------------------------------------------------

    def _load(self, model: Model, handover: Handover | None = None) -> None:
        """Answer with ``model`` from now on: primed afresh (its own candidates too), or as ``handover`` (the
        candidates' choice) has heard the call already, only the song cache hearing it again."""
        if handover is None or model is not self.model:
            self._bind(model)
        self._cache = SongCache(self._song_end, self._onset_mask, self._recall)
        if handover is None:
            self._runtime = self._predictor(model)
            self._runtime.prime([self._song_end] * model.song_gap)  # a call starts as a song does in training
            self._song_start = self._runtime.snapshot()
            self._priming = self._spare(self._aside)
        else:
            self._runtime, self._song_start = handover.runtime, handover.song_start
            cache = SongCache(self._song_end, self._onset_mask, self._recall)
            self._priming = Priming(handover.spare, cache, self._song_start, self._song_end, self._aside)
        self._drop_following()
        if handover is None:
            self._alone = (model, self._candidates(model) if isinstance(self._runtime, LSTMRuntime) else None)
            if not self._auto:  # the model answers alone: its own candidates hear the call, if it has them
                self._resting = self._resting and self._alone[1] is not None
                self._listen_with(self._alone[1])
            self._reprime()
            return
        self._logits = handover.logits
        for index in [self._song_end, *map(self._index_of, self._buffer.last_note_symbols())]:
            self._cache.add(index)

    def _bind(self, model: Model) -> None:
        """What the engine keeps of ``model`` itself: its vocabulary's symbols and masks, the buffer's length, the
        session memory in its vocabulary (skipped when the candidates hand over the model already answering)."""
        self.model = model
        self._buffer.resize(self.settings.buffer_steps or model.sequence_length)
        vocabulary = model.vocabulary
        self._song_end = vocabulary.index[SONG_END]
        self._recall.bind(vocabulary.symbols)  # a model of another vocabulary hears the earlier calls in its own
        self._onset_mask = np.array([is_pitch(s) for s in vocabulary.symbols])
        self._pitches = np.array([int(s) if is_pitch(s) else -1 for s in vocabulary.symbols])
        self._playable = np.array([s != SONG_END for s in vocabulary.symbols])
        self._opened: dict[Place, tuple[Any, np.ndarray]] = {}  # place -> the LSTM after a song's first song end

    def _spare(self, aside: Callable[[Any], None] | None = None) -> Priming:
        """A spare LSTM and song cache (the session memory under it too, as the engine's), to prime in slices (its
        LSTM's steps on ``aside``'s thread, with one)."""
        cache = SongCache(self._song_end, self._onset_mask, self._recall)
        return Priming(self._predictor(self.model), cache, self._song_start, self._song_end, aside)

    def _index_of(self, symbol: str, shift: int | None = None) -> int:
        """The LSTM's index of a player's symbol (a pitch transposed by ``shift``, the call's by default, and folded
        into the vocabulary)."""
        return self.model.vocabulary.played_index(symbol, self._shift if shift is None else shift)

    def _feed_lstm(self, symbol: str) -> None:
        """One LSTM step on a player's ``symbol``."""
        self._step(self._index_of(symbol))

    def _step(self, index: int, own: bool = False) -> None:
        """The LSTM and the song cache take one symbol (the cache does not count improvd's ``own``); the LSTM not
        while it rests (``_hear_styles``)."""
        if not self._resting:
            self._logits = self._runtime.step(index)
        self._cache.add(index, count=not own)

    def _reprime(self) -> None:
        self._priming.cancel()
        symbols = self._buffer.last_note_symbols()
        self._open_song(self._place_of(symbols))
        for symbol in symbols:
            self._feed_lstm(symbol)
        styles = self._hearing()
        if styles is not None:
            styles.restart(self._shift, symbols, self._place_of(symbols))  # heard in slices (_hear_styles)

    def _open_song(self, place: Place) -> None:
        """The LSTM at its song start, seated at ``place``, then a song end heard (the cache starts a new song too).
        The state after that song end is the same every time at a place: kept, so that a call's first tick steps the
        LSTM once."""
        opened = self._opened.get(place)
        if opened is None or self._resting:
            self._runtime.restore(self._song_start)
            self._runtime.seat(place)
            self._step(self._song_end)
            if not self._resting:
                self._opened[place] = (self._runtime.snapshot(), self._logits.copy())
            return
        self._runtime.restore(opened[0])
        self._logits = opened[1].copy()
        self._cache.add(self._song_end)

    def _place_of(self, symbols: list[str]) -> Place:
        """The place in the bar of the first of ``symbols``, the buffer's last (a lookback model hears it; the
        steps after follow on, one a tick)."""
        bar = bar_steps(self.settings.meter)
        return Place((self._grid.step - len(symbols)) % bar, bar)

    # --- the grid --------------------------------------------------------------

    def step_seconds(self) -> float:
        return 60.0 / self.settings.bpm / 4

    def open_step(self) -> tuple[int, float]:
        """The open step's index on the grid and its start time (a recording lays its bars out by them)."""
        return self._grid.step, self._grid.step_start

    def next_boundary(self) -> float:
        """Where the driver's next tick falls: the open step's end (the grid may move when it follows the player)."""
        return self._grid.step_start + self.step_seconds()

    def bar_line(self, time: float) -> float:
        """The time of the last bar line at or before ``time``, on the grid at its present tempo."""
        steps = math.floor((time - self._grid.step_start) / self.step_seconds())
        step = self._grid.step + steps
        return self._step_time(step - step % bar_steps(self.settings.meter))

    def _step_time(self, step: float) -> float:
        """When grid step ``step`` starts, counted from the open step at the present tempo."""
        return self._grid.step_start + (step - self._grid.step) * self.step_seconds()

    def start(self, time: float) -> None:
        """Step 0 (bar 1) begins at ``time``; a count-in starts there, and its click (or the metronome's) is queued."""
        self._renumber(0, time)
        self._queue_program(time)
        if self.mode != "idle" and self.settings.count_in_bars:
            self._count_in(0)
        self._queue_click(0, time)

    def _queue_program(self, time: float) -> None:
        """The answer's instrument: a program change on the output channel (none without ``program``)."""
        s = self.settings
        if s.program is not None:
            self._push(time, mido.Message("program_change", channel=s.output_channel, program=s.program), False)

    def _count_in(self, step: int) -> None:
        """Click ``count_in_bars`` bars from the first bar line at or after ``step`` (a step whose click is not yet
        queued); listen from the last beat of them on (a pickup starts the call), after them at the latest."""
        s = self.settings
        self._count_in_start = next_bar_line(step, s.meter)
        self._count_in_end = self._count_in_start + s.count_in_bars * bar_steps(s.meter)
        self._count_in_ignored = 0
        self.mode = "counting_in"
        self._buffer.reset_call()
        self._call_steps = 0
        self._respond_at = None
        self._events.append(Event(self._grid.step_start, "count_in", {"listen_at_step": self._count_in_end}))

    def _pickup_step(self) -> int:
        """The first step of the count-in's last beat: notes from there on start the call."""
        return self._count_in_end - beat_steps(self.settings.meter)

    def _counted_in(self, time: float) -> None:
        """The count-in's last beat has come: listen, and say how many notes played before it were not heard."""
        self.mode = "listening"
        if self._count_in_ignored:
            data = {"reason": "count-in", "notes": self._count_in_ignored}
            self._events.append(Event(time, "notes_ignored", data))
        self._count_in_ignored = 0

    def _queue_click(self, step: int, time: float) -> None:
        s = self.settings
        counting = self._count_in_start <= step < self._count_in_end
        if self.mode == "idle" or not (s.metronome or counting):
            return
        last_bar = counting and step >= self._count_in_end - bar_steps(s.meter)
        found = click(step, s.meter, s.metronome_notes, count_in_end=last_bar)
        if found is not None:
            note, velocity = found
            self._push(time, mido.Message("note_on", channel=s.metronome_channel, note=note, velocity=velocity))
            off = time + CLICK_STEPS * self.step_seconds()
            self._push(off, mido.Message("note_off", channel=s.metronome_channel, note=note, velocity=0))

    def _snap(self, time: float) -> int:
        return self._grid.snap(time, self.step_seconds())

    def tick(self, time: float) -> None:
        self.wake(time)
        predicted = self.next_boundary()
        closed = self._grid.advance(time)
        if closed is None:
            return  # the origin itself: no step has ended yet
        if abs(time - predicted) > 1e-9:  # a MIDI clock boundary; the internal clock's come where predicted
            self._retime_queue()
        if self.mode == "responding" and self._grid.step >= self._response_end - 1e-6:
            self._end_response(time)
        if self.mode == "responding":
            self._draw_answer()
        if self.mode == "counting_in" and self._grid.step >= self._pickup_step():
            self._counted_in(time)
        self._queue_click(self._grid.step + 1, time + self.step_seconds())
        if self.mode not in ("idle", "counting_in"):
            self._close_step(closed, time)
        self._take_late()

    def _close_step(self, step: int, time: float) -> None:
        in_call = self._call_steps > 0 or self._buffer.held or self._respond_requested
        symbol = self._buffer.close(step) if in_call or self._buffer.has_onset(step) else None
        if symbol is None:
            return
        if self._call_steps == 0 and not is_pitch(symbol) and not self._respond_requested:
            self._buffer.symbols.pop()  # silence before a call belongs to no call
            return
        starts = self._call_steps == 0
        self._call_steps += 1
        if starts:
            self._buffer.start_call()  # each call is a song of its own: the last call's key and motifs are gone
            self._call_first = step
        if is_pitch(symbol):
            deviation = self._deviations.get((step, int(symbol)), 0.0)
            self._touch.record(step, self._buffer.velocities[-1], deviation)
        self._deviations = {key: d for key, d in self._deviations.items() if key[0] > step}
        if self.mode == "responding":
            return  # overlap: the player's notes go into the next call; the LSTM is busy answering
        if starts:
            self._resting = self._resting or self._hearing() is not None  # the candidates hear the call
            self._shift = self._call_shift([symbol])  # heard afresh: in its own key from the start
            self._reprime()  # the song's start, then this first step
        index = None if starts else self._index_of(symbol)
        if not self._prime_ahead(symbol) and index is not None:
            self._step(index)  # (a spare that took over at this tick heard it already)
        self._hear_styles(None if starts else symbol)
        if self._phrase_ended():
            self._respond(time)
        else:
            self._take_late()
            self._follow_ahead(time)
            self._expect_entry(time)

    def _prime_ahead(self, symbol: str) -> bool:
        """While the call sounds, the spare LSTM hears it on the white keys of the collection that holds most of its
        sounding time so far, from the step that collection moves away from the one the engine's LSTM hears it in:
        PLAYING_STEPS a tick (one more than the call adds) until it has caught up. The engine's LSTM hears it on too,
        in case the call comes back. From the call's first silent step the one whose collection the call ended in is
        kept; the spare takes over once it has caught up (in the silence, as many steps a tick as catch up by the tick
        before the phrase end's, or by the tick the music ends the call: ``_catch_up``; at the phrase end at
        the latest: ``_rekey``), so ``phrase_end = "music"`` need not wait.
        Not with ``follow_tempo``: its phrase end hears the call again anyway (``_follow``). True when the spare took
        over at this tick: the engine's LSTM need not hear ``symbol``."""
        priming = self._priming
        if self.settings.follow_tempo:
            priming.cancel()
            return False
        if priming.shift is not None:
            priming.feed(self._index_of(symbol, priming.shift))
        silent = self._buffer.silent_steps
        if silent <= 1:
            call = self._buffer.last_note_symbols()
            shift = self._call_shift(call)
            if silent and shift == self._shift:
                priming.cancel()  # the call ended in the collection the LSTM hears it in
            elif shift not in (self._shift, priming.shift) and self._resting:
                self._shift = shift  # the candidates hear the call again (_hear_styles)
                priming.cancel()  # a spare begun before the engine rested would swap an older key back in
            elif shift not in (self._shift, priming.shift):
                priming.begin(shift, [self._index_of(s, shift) for s in call], self._place_of(call))
        if priming.shift is not None:
            priming.advance(self._catch_up(priming.pending, PLAYING_STEPS, PRIME_STEPS))
            if priming.done and silent:
                self._swap()
                return True
        return False

    def _catch_up(self, behind: int, playing: int, least: int) -> int:
        """Steps a tick for a second hearing of the call that is ``behind`` steps behind it: ``playing`` while the
        call is played; in its silence at least ``least``, and as many more as catch up by the tick before the
        silence's phrase end, or, when the music ends the call sooner (``_over_at``), by that tick (it primes before
        it asks ``_sounds_over``). A first silent step with ticks to spare after it is not yet a silence (a gap of a
        16th is staccato: SILENT_STEPS). While the call is played into the last bar of its 4th or 8th, as many as
        catch up by that bar line's tick (its grace needs the call heard in its key), ``least`` at most."""
        silent = self._buffer.silent_steps
        if not silent:
            ticks = self._ticks_to_grace()
            return playing if ticks is None else min(least, max(playing, -(-behind // ticks)))
        ticks = self.settings.phrase_end_steps - silent
        over = self._over_at()
        if over is not None:
            ticks = min(ticks, max(1, over - self._grid.step + 1))
        if silent < SILENT_STEPS and ticks > 1:
            return playing
        return max(least, -(-behind // ticks)) if ticks > 0 else least

    def _hear_styles(self, symbol: str | None) -> None:
        """The candidates (style auto's, or the model's own transpositions) hear the call's new ``symbol`` (None: a
        re-prime gave them the call) in the transposition it will be answered in (the spare LSTM's while it primes
        one: a move hears the call again), a slice a tick (improvd.core.styles): while it is played PLAYING_STEPS a
        candidate (one to keep up, one to catch up). Meanwhile the engine's own LSTM and spare rest: at the phrase end
        the chosen candidate takes over with the call heard (``_choose_style``)."""
        styles = self._hearing()
        if styles is None:
            if self._resting:  # they stopped hearing it (follow_tempo set during the call): the engine's LSTM does
                self._resting = False
                self._reprime()
            return
        self._resting = True
        shift = self._shift if self._priming.shift is None else self._priming.shift
        if shift != styles.shift:
            call = self._buffer.last_note_symbols()
            styles.restart(shift, call, self._place_of(call))
        elif symbol is not None:
            styles.feed(symbol)
        styles.advance(self._catch_up(styles.behind, PLAYING_STEPS * styles.hearings, STYLE_STEPS))

    def _hearing(self) -> Styles | None:
        """The candidates that hear the call: style auto's, or the model's own but not with ``follow_tempo`` (its
        phrase end hears the call again on the player's grid, aside, in one transposition; a second would be heard
        there at once, on the timing thread: a model alone then hears the call on the white keys alone)."""
        return self._styles if self._auto or not self.settings.follow_tempo else None

    def _choose_style(self) -> int:
        """At the phrase end: the candidate that predicted the call best (style auto's model, or the model's own
        transposition) answers it, handed over with the call heard in its transposition (improvd.core.styles).
        Returns the semitones that transposition lies from the call's white keys (0 without candidates)."""
        styles = self._hearing()
        self._resting = False
        if styles is None:
            return 0
        shift = styles.shift  # never None here: _hear_styles has given them the call in this tick
        handover = styles.choose()
        if shift is None:
            return 0
        self._shift = moved(shift, handover.offset)
        self._load(handover.model, handover)
        return handover.offset

    def _rekey(self, shift: int) -> None:
        """At the phrase end: hear the call moved by ``shift``: the spare LSTM primed for it (what is left of its
        priming done now), or, when none was, the call heard again at once."""
        priming = self._priming
        if priming.shift == shift:
            priming.finish()
            self._swap()
        elif shift != self._shift:
            self._shift = shift
            self._reprime()
        else:
            priming.cancel()

    def _swap(self, priming: Priming | None = None) -> None:
        """The primed spare LSTM and song cache (``priming``'s, the engine's spare pair by default) become the
        engine's; the engine's become ``priming``'s."""
        priming = priming or self._priming
        priming.settle()
        self._runtime, priming.runtime = priming.runtime, self._runtime
        self._cache, priming.cache = priming.cache, self._cache
        self._logits, self._shift = priming.logits, priming.shift
        priming.cancel()

    def _phrase_ended(self) -> bool:
        s = self.settings
        if self._respond_at is not None:
            return self._grid.step >= self._respond_at  # it ended already, and waits for its follow work
        if self._respond_requested:
            return True
        if s.turns != "phrase":
            self._fit_turn()
            ends_in = self._turn_ends_in()
            return ends_in is not None and ends_in <= 0
        silent = self._buffer.silent_steps
        played = self._call_steps - silent
        if self._buffer.held:
            silent = 0
        if silent >= s.phrase_end_steps or (silent and played >= s.min_call_steps and self._sounds_over()):
            if played >= s.min_call_steps:
                return True
            self._call_steps = 0  # too short to answer: forget it, listen for a new call
            self._forget_heard()
            return False
        return bool(s.max_call_steps) and self._call_steps >= s.max_call_steps

    def _sounds_over(self) -> bool:
        """With ``phrase_end = "music"``, the call is over before ``phrase_end_steps`` of silence when it has filled
        whole bars: it fell silent on the bar line that ends its 4th or 8th bar (the lengths of a phrase; counted
        from the first bar line at or after its first note, a pickup leading into it) or in the half bar (or beat,
        whichever is longer) before it, and its silence has gone on longer than the player's own articulation leaves after
        that last note (``_over_at``); the answer may start on that bar line. A rest inside a phrase falls elsewhere
        in it; the model's own probability of a note does not tell them apart (bench/dead_air.py). The LSTM must hear
        the call in the key it is answered in: a call whose last notes moved the key waits for the spare LSTM's
        priming (and style auto's candidates for theirs), so that no tick hears the whole call again (not with
        ``follow_tempo``, whose phrase end hears it again anyway)."""
        over = self._over_at()
        if over is None or self._grid.step < over:
            return False
        if over % bar_steps(self.settings.meter) == 0 and self._graced():
            return False  # over at its bar line's tick: the bar line's grace answers from that line (_expect_entry)
        if self.settings.follow_tempo:
            return True  # its phrase end hears the call again anyway
        shift = self._call_shift(self._buffer.last_note_symbols())
        styles = self._hearing()
        caught_up = styles is None or styles.caught_up  # the candidates have heard it all
        return shift == self._shift and self._priming.shift is None and caught_up

    def _over_at(self) -> int | None:
        """With ``phrase_end = "music"``, the open step from which the call in its silence is over by the music
        (``_sounds_over``), or None where its silence began elsewhere than in the half bar (or beat) before a phrase's
        bar line, or in the half bar (or beat) after one that its last note was held across: the step before that
        bar line at the earliest, once SILENT_STEPS silent steps are closed (a 16th is staccato) and more than the
        call's articulation leaves after its last note (improvd.core.seedbuffer.usual_gap: a player who releases
        every note early is not over at the first gap)."""
        s = self.settings
        bar, beat = bar_steps(s.meter), beat_steps(s.meter)
        silence = self._grid.step - self._buffer.silent_steps  # the first silent step
        line, window = next_bar_line(silence, s.meter), max(beat, bar // 2)
        if s.phrase_end != "music":
            return None
        if line - silence > window or not self._ends_phrase(line):
            line = silence - silence % bar  # or the bar line the call's last note was held across
            if silence - line > window or self._last_onset() >= line or not self._ends_phrase(line):
                return None
        return max(line - 1, silence + max(SILENT_STEPS, usual_gap(self._buffer.last_note_symbols()) + 1))

    def _ends_phrase(self, line: int) -> bool:
        """Whether the bar line at grid step ``line`` ends the call's 4th or 8th bar (PHRASE_BARS), counted from the
        first bar line at or after its first note."""
        meter = self.settings.meter
        return (line - next_bar_line(self._call_first, meter)) // bar_steps(meter) in PHRASE_BARS

    def _last_onset(self) -> int:
        """The grid step of the call's last note's onset (the first step of the call where it has none)."""
        symbols = self._buffer.last_note_symbols()
        last = next((k for k in range(len(symbols) - 1, -1, -1) if is_pitch(symbols[k])), 0)
        return self._grid.step - len(symbols) + last

    def _turn_ends_in(self) -> int | None:
        """With ``turns`` a number of bars and a call begun, ticks from the last one to the tick that ends the
        player's turn (0 or less: that one), the tick before the bar line that ends its Nth bar. Its bars count from
        the first bar line at or after the call's first note on the engine's grid (a note before it is a pickup);
        followed, once the tempo can be told (``_fit_turn``), on the player's own grid from the first bar line its
        onsets put at or after its first note (a pickup before it: improvd.core.follow.downbeat; as the phrase end
        will lay it), its bar line where the player's tempo puts it, and the turn ends at the last tick that the
        answer's first 16th can start after, FOLLOW_LEAD on. Worked out from the settings as they are now, so that
        ``turns`` set while a call is played ends that call's turn too."""
        s = self.settings
        if s.turns == "phrase" or not self._call_steps:
            return None
        steps = int(s.turns) * bar_steps(s.meter)
        fit = self._turn_fit if s.follow_tempo else None
        beat = fit.result() if fit is not None else None
        if fit is None or beat is None:
            return next_bar_line(self._call_first, s.meter) + steps - 1 - self._grid.step
        line = beat.time((fit.pickup + steps) / 4)  # Beat counts quarters from the call's first beat
        return math.floor((line - FOLLOW_LEAD - self._grid.step_start) / self.step_seconds())

    def _fit_turn(self) -> None:
        """A followed turn of ``turns`` bars, at its tick: its beat fitted to the onsets heard by the last tick (those
        its phrase end would follow), the fit handed aside then when it is finished (``_hand_turn_fit``), else done
        now: the turn's end never depends on the aside thread's timing."""
        s = self.settings
        if not s.follow_tempo or s.turns == "phrase":
            self._turn_fit = None
            return
        key = (onsets(list(self._heard)), *self._follow_inputs()[:2])
        for fit in (self._turn_fit, self._turn_next):
            if fit is not None and fit.fits(*key):
                self._turn_fit = fit
                return
        self._turn_fit = TurnFit(*key)

    def _hand_turn_fit(self) -> None:
        """A followed turn, after its tick has heard the messages played before it: the fit of its onsets, handed
        aside for the next tick (``_fit_turn``) when a new one was heard."""
        s = self.settings
        if s.turns == "phrase" or self._aside is None or not self._call_steps:
            return
        key = (onsets(list(self._heard)), *self._follow_inputs()[:2])
        if any(fit is not None and fit.fits(*key) for fit in (self._turn_fit, self._turn_next)):
            return
        if self._turn_next is not None:
            self._turn_next.cancelled = True
        self._turn_next = TurnFit(*key)
        self._aside(self._turn_next)

    # --- the bar line's grace ---------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the driver must call ``wake`` between ticks (its time, or later; feeding a message at or after it and
        the next tick do it too), or None: with ``phrase_end = "music"``, the bar line's grace after a call that
        filled its 4th or 8th bar (``_expect_entry``)."""
        return self._entry_at

    def wake(self, time: float) -> None:
        """The driver's time is ``time``: a deadline at or before it is met, at the deadline's own time (so a late
        wake-up answers as a timely one would, its first note as late as it woke); otherwise nothing happens."""
        due = self._entry_at
        if due is None or time < due:
            return
        self._entry_at = None
        if self._enters_now():
            self._respond(due, early=True)

    def _expect_entry(self, time: float) -> None:
        """At the tick of the bar line (at ``time``) that ends a call's 4th or 8th bar (counted as ``_over_at``
        counts them) with its silence, if any, begun in the half bar (or beat) before it: the call is over if by
        ``_grace`` after the bar line no key is down and no note has begun (``wake``). The answer then starts on
        that bar line, the LSTM drawing the bar line's step as its own (it has heard the call up to the bar line,
        not the bar line's 16th as a rest), its first note late by the grace. A note that comes later barges in."""
        self._entry_at = None
        s, step = self.settings, self._grid.step
        bar, beat = bar_steps(s.meter), beat_steps(s.meter)
        silent = self._buffer.silent_steps
        if not self._graced():
            return
        if step % bar or not self._ends_phrase(step):
            return
        if silent > max(beat, bar // 2) or self._call_steps - silent < s.min_call_steps or self._respond_requested:
            return
        self._entry_at = time + self._grace()

    def _graced(self) -> bool:
        """Whether a call may end at its bar line's grace: listening, with ``phrase_end = "music"``, answering each
        phrase, not following the player's tempo (its phrase end hears the call again on the player's grid)."""
        s = self.settings
        return self.mode == "listening" and s.phrase_end == "music" and s.turns == "phrase" and not s.follow_tempo

    def _ticks_to_grace(self) -> int | None:
        """In the last bar before the bar line that ends a call's 4th or 8th bar (``_expect_entry``), the ticks from
        this one to that bar line's, both counted; None elsewhere."""
        step = self._grid.step
        line = next_bar_line(step, self.settings.meter)
        if not self._graced() or not self._call_steps or line - step >= bar_steps(self.settings.meter):
            return None
        return line - step + 1 if self._ends_phrase(line) else None

    def _grace(self) -> float:
        """How long after a bar line a note played there may still come: GRACE_MARGIN times as late as the call's
        latest onset (improvd.core.touch.Touch.lateness), within GRACE and a third of a 16th."""
        step = self.step_seconds()
        return min(max(GRACE[0], GRACE_MARGIN * self._touch.lateness() * step), GRACE[1], step / 3)

    def _enters_now(self) -> bool:
        """At the bar line's grace: nothing sounds, nothing new was played, and the LSTM hears the call in the key it
        is answered in (the spare LSTM that heard it so takes over, hearing at most PRIME_STEPS left now; further
        behind, the silence ends the call, as before; the candidates likewise, STYLE_STEPS at most), the call still
        the one the grace was set for."""
        if not self._graced():
            return False
        if self._buffer.held or self._buffer.pending_onsets() or self._respond_requested or not self._call_steps:
            return False
        if (styles := self._hearing()) is not None and styles.behind > STYLE_STEPS:
            return False  # more than a tick's steps left for the candidates (``choose`` hears what is left)
        shift, priming = self._call_shift(self._buffer.last_note_symbols()), self._priming
        if shift == self._shift:
            priming.cancel()  # the call ended in the collection the LSTM hears it in
        elif priming.shift == shift and priming.pending <= PRIME_STEPS and not self._resting:
            priming.finish()  # at most a tick's steps left (``_catch_up`` hurried it to the bar line)
            self._swap()
        else:
            return False
        return True

    # --- responding ------------------------------------------------------------

    def respond_now(self) -> None:
        """Answer at the next tick, whatever the call's length; with nothing played since the last answer there
        is nothing to answer: a ``respond_ignored`` event says so."""
        if self.mode != "listening":
            return
        if self._call_steps or self._buffer.held or self._buffer.pending_onsets():
            self._respond_requested = True
        else:
            self._events.append(Event(self._grid.step_start, "respond_ignored", {"reason": "nothing played yet"}))

    def _respond(self, time: float, early: bool = False) -> None:
        """The phrase end: plan the answer, fix its rules, and draw (and queue) its first slice. ``early``: at the
        bar line's grace (``wake``), the answer from the open step, its first note no sooner than ``time``."""
        if self._wait_for_follow(time):
            return
        self._respond_requested = False
        self._respond_at = None
        if self.settings.follow_tempo:
            self._follow(time)
        else:
            self._keep_late_after_the_call()
        self._forget_heard()
        call = self._buffer.last_note_symbols()
        self._events.append(Event(time, "phrase_end", {"call_steps": self._call_steps}))
        shift, tonic = self._key(call)
        offset = self._offset = self._choose_style()  # the chosen transposition, from the white keys
        shift, tonic = moved(shift, offset), (tonic + offset) % 12
        if shift != self._shift or self._priming.shift is not None:
            self._rekey(shift)
        bar = bar_steps(self.settings.meter)  # the earlier calls heard in this call's key and metre
        self._recall.attune(shift, self._index_of, offset, present=call, bar=bar)
        if not early:
            self._feed_lstm(HOLD)  # the step that opened at this tick sounds as the call's silence going on
        self._entry_time = time if early else -math.inf
        plan = self._plan(self._grid.step + (0 if early else 1))
        s = self.settings
        rules = Rules(
            in_key=collection_mask(self.model.vocabulary.symbols, self._playable, call, shift, s.range, offset),
            onsets=self._onset_mask,
            places=onset_places(call, self._grid.step - len(call), beat_steps(s.meter)),
            downbeats=sounds_its_downbeats(call, self._grid.step - len(call), bar_steps(s.meter)),
            tonic=tonic,
            temperature=s.temperature,
            top_p=s.top_p,
            memory=self._memory,
            call_notes=tuple(self._index_of(symbol) for symbol in call if is_pitch(symbol)),
        )
        echo = self._echo(plan, call, offset)
        self._drawing = Drawing(
            plan, rules, self.model.vocabulary.symbols, self._sampler, self._runtime, self._cache, self._logits, echo
        )
        self._response_end = float(plan.end)  # the step that opens after the answer
        self._open_note = None
        self._queued_symbols = 0
        self._answered = call
        self._answered_at = ((self._grid.step - len(call)) % plan.bar, plan.bar)
        self._call_steps = 0
        self.mode = "responding"
        self._draw_answer()
        data = {"steps": plan.end - plan.first, "first_step": plan.first, "entry": plan.entry, "transposition": shift}
        data["offset"] = offset  # the transposition's move from the call's white keys (a model's minor transposition)
        data["model"] = self.model.name
        self._events.append(Event(time, "response_start", data))

    def _follow(self, time: float) -> None:
        """Hear the call again on the player's own grid (improvd.core.follow); the old one stays if its tempo cannot be
        told (too few onsets). The work handed aside is taken when it finished for this phrase end; otherwise it
        is done now, with the same result. Either way a spare LSTM heard the call as it is answered and takes over."""
        job, self._following = self._following, None
        if job is None or not job.ready_for(time, self._follow_inputs()):
            if job is not None:
                job.cancelled = True
            job = self._following_for(time, 0).run()
        beat, regridded = job.beat, job.regridded
        if beat is not None and regridded is not None:
            self.settings.bpm = round(beat.bpm, 2)
            self._buffer = regridded.buffer
            self._touch = Touch()
            for onset in regridded.onsets:
                self._touch.record(*onset)
            self._renumber(regridded.open_step, beat.time((regridded.open_step - regridded.offset) / 4))
            self._call_steps = regridded.call_steps
            self._events.append(Event(time, "tempo", {"bpm": self.settings.bpm, "fit": round(beat.fit, 3)}))
            self._hear_late(regridded.open_step, time)
        else:
            self._keep_late_after_the_call()
        self._priming.cancel()
        if job.call == self._buffer.last_note_symbols():
            self._swap(job.priming)
            if self._hearing() is not None:  # style auto's candidates hear the call on the player's grid too
                self._styles.restart(self._shift, job.call, self._place_of(job.call))
        else:  # the call on the engine's grid ended otherwise than the work aside foresaw
            self._shift = self._call_shift(self._buffer.last_note_symbols())
            self._reprime()

    def _take_late(self) -> None:
        """The messages heard since the last tick join the call's (``_heard``); follow work made without them is
        dropped (``_follow_ahead`` hands it aside again, at this tick if its phrase end is near)."""
        if self._late:
            self._heard.extend(self._late)
            self._late.clear()
            self._drop_following()

    def _hear_late(self, step: int, time: float) -> None:
        """The messages heard since the tick before a followed phrase end came after its follow work was made (no
        tick was left to hand it aside again): the replayed call hears them at ``step``, the step open on the player's
        grid, so a note begins the next call (as one played over the answer with ``barge_in = "overlap"``); with
        ``turns`` in bars it is ignored (a ``notes_ignored`` event: its turn is over), as one played after the tick."""
        kept, ignored = [], 0
        for heard in self._late:
            message = heard[1]
            if self.settings.turns != "phrase" and message.type == "note_on" and message.velocity > 0:
                ignored += 1
                continue
            hear(self._buffer, message, step)
            kept.append(heard)
        self._late = kept  # the next call's (``_take_late``)
        if ignored:
            self._events.append(Event(time, "notes_ignored", {"reason": "turn over", "notes": ignored}))

    def _keep_late_after_the_call(self) -> None:
        """At a phrase end on the engine's own grid, of the messages heard since the last tick those it heard in the
        call's steps are the call's (its buffer has them), those on the open step on the next call's."""
        self._late = [(at, message) for at, message in self._late if self._snap(at) >= self._grid.step]

    def _wait_for_follow(self, time: float) -> bool:
        """With ``aside``, a followed phrase end whose follow work was not handed aside for it (``respond_now``,
        ``max_call_steps``, a phrase end sooner than ``_follow_ahead`` foresees, a setting changed since) hands it
        aside now and answers FOLLOW_WAIT ticks later, as that phrase end would (its silence gone on so long), so
        that no tick does the work. There it takes the work if finished, else does it itself with the same result
        (``_follow``): the wait is bounded, and the answer never depends on the aside thread's timing. Not with
        ``turns`` in bars (the answer starts on the bar line that ends the player's turn; its work is handed aside
        ahead of it: ``_follow_ahead``), nor twice for one call (a message played meanwhile has the work handed aside
        again at the next tick, for the phrase end still due then)."""
        s, job = self.settings, self._following
        if not s.follow_tempo or self._aside is None or s.turns != "phrase" or self._respond_at is not None:
            return False
        if job is not None and job.open_step == self._grid.step and job.inputs == self._follow_inputs():
            return False  # handed aside for this very phrase end: taken there or done again (_follow)
        self._take_late()  # the call goes on to the phrase end it waits for
        self._drop_following()
        self._respond_at = self._grid.step + FOLLOW_WAIT
        self._following = self._following_for(time + FOLLOW_WAIT * self.step_seconds(), FOLLOW_WAIT)
        self._aside(self._following)
        return True

    def _follow_ahead(self, time: float) -> None:
        """With ``aside``, once the call's phrase ends FOLLOW_AHEAD ticks from now or sooner unless the player goes
        on (``_ends_in``), hand its follow work aside, for the phrase end then due. A message played since drops it
        (``_hear``) and the next tick hands it over again: so a phrase end that waits for its work
        (``_wait_for_follow``) or ends a turn of ``turns`` bars does that work itself only when the player played in
        its last tick (or the thread aside was too slow)."""
        s = self.settings
        if not s.follow_tempo or self._aside is None:
            return
        self._hand_turn_fit()
        ahead = self._ends_in()
        job = self._following
        if job is not None and ahead is not None and job.open_step == self._grid.step + ahead:
            return  # handed aside for the phrase end foreseen (a followed turn's may move: ``_turn_ends_in``)
        self._drop_following()
        if ahead is None or not 0 < ahead <= FOLLOW_AHEAD:
            return
        self._following = self._following_for(time + ahead * self.step_seconds(), ahead)
        self._aside(self._following)

    def _ends_in(self) -> int | None:
        """Ticks from now to the call's phrase end, due then unless the player goes on (None: not yet foreseen): the
        one that waits for its work; with ``turns`` in bars, the tick before the bar line that ends the turn; by its
        silence, from its SILENT_STEPS-th silent step on; by the music, from its first."""
        s = self.settings
        if self._respond_at is not None:
            return self._respond_at - self._grid.step
        if s.turns != "phrase":
            return self._turn_ends_in()
        silent = 0 if self._buffer.held else self._buffer.silent_steps
        if not silent or self._call_steps - silent < s.min_call_steps:
            return None
        ahead = s.phrase_end_steps - silent
        over = self._over_at()
        if over is not None and over - self._grid.step < ahead:
            return over - self._grid.step
        return None if silent < SILENT_STEPS else ahead

    def _following_for(self, end: float, ahead: int) -> Following:
        """The follow work of the call heard so far, for a phrase end at ``end``, ``ahead`` silent steps from now."""
        vocabulary, stated, bar = self.model.vocabulary, self._stated_key(), bar_steps(self.settings.meter)

        def prepare(call: list[str], open_step: int) -> tuple[int, list[int], Place]:
            shift = _shift_for(call, stated)  # (on the aside thread: not the engine's tally)
            place = Place((open_step - len(call)) % bar, bar)
            return shift, [vocabulary.played_index(symbol, shift) for symbol in call], place

        as_heard = self._buffer.after_silence(ahead)
        heard, inputs = list(self._heard), self._follow_inputs()
        job = Following(heard, as_heard, end, self._grid.step + ahead, inputs, self._spare(), prepare, self._handed)
        self._handed = job
        return job

    def _follow_inputs(self) -> tuple[Any, ...]:
        """What the follow work is made from besides the call: the tempo prior, the metre, the buffer's length, the
        key and the model."""
        s = self.settings
        return s.bpm, s.meter, self._buffer.symbols.maxlen or 1, self._stated_key(), id(self.model)

    def _forget_heard(self) -> None:
        """The call's messages are forgotten, and any follow work made from them (a phrase end waiting for it too)."""
        self._heard.clear()
        self._respond_at = None
        self._drop_following()
        self._handed = None
        self._turn_fit = self._turn_next = None

    def _drop_following(self) -> None:
        if self._following is not None:
            self._following.cancelled = True
            self._following = None

    def _plan(self, first: int) -> AnswerPlan:
        """Where the answer starting at grid step ``first`` enters and ends: its bars from the next bar line (the
        bar line before, when ``phrase_end = "music"`` and ``first`` falls in that bar's first beat), its first note
        by that bar line, or with ``"music"`` by the first beat line at or after ``first``; with ``turns`` in bars, as many
        bars as the player's turn."""
        s = self.settings
        bar, beat = bar_steps(s.meter), beat_steps(s.meter)
        entry = next_bar_line(first, s.meter)
        music = s.phrase_end == "music" and s.turns == "phrase"
        if music and first % bar < beat:
            entry = first - first % bar
        pulse = 4 if beat % 4 == 0 else beat  # a beat of whole quarters: the next quarter
        latest = first + (-first) % pulse if music else None
        if s.turns != "phrase":
            end = entry + int(s.turns) * bar
        elif s.response_steps is None:
            bars = self._call_bars() if s.response_bars == "match" else int(s.response_bars)
            end = entry + bars * bar
        elif s.response_steps == "match":
            end = first + max(1, min(256, self._call_steps - self._buffer.silent_steps))
        else:
            end = first + int(s.response_steps)
        latest = None if latest is None else min(latest, end - 1)
        return AnswerPlan(first, min(entry, end - 1), end, strong_positions(s.meter), bar, latest)

    def _call_bars(self) -> int:
        """The bars the call played in: the bar lines from its first step to its last sounding one (a pickup
        adds none, nor does the silence after it), 1 to MATCH_BARS."""
        bar = bar_steps(self.settings.meter)
        first = self._grid.step - self._call_steps
        last = self._grid.step - 1 - self._buffer.silent_steps
        return max(1, min(MATCH_BARS, last // bar - next_bar_line(first, self.settings.meter) // bar + 1))

    def _echo(self, plan: AnswerPlan, call: list[str], offset: int) -> Echo | None:
        """The call's played steps (its closing silence left out) laid over the answer, in the LSTM's indices, its
        notes moved in the scale of the answer's transposition (``offset`` from the white keys)."""
        played = len(call)
        if REST in call:
            last_rest = len(call) - 1 - call[::-1].index(REST)
            if all(symbol == HOLD for symbol in call[last_rest + 1 :]):
                played = last_rest
        if played == 0:
            return None
        first_step = self._grid.step - len(call)  # the buffer's last symbol is the step that just closed
        index_of = {symbol: self._index_of(symbol) for symbol in set(call[:played])}  # a few symbols, many steps
        indices = {first_step + k: index_of[symbol] for k, symbol in enumerate(call[:played])}
        until = max(plan.first, plan.end - plan.bar)
        earlier = self._recall.echoes(plan.entry, plan.bar, self._pitches, offset)  # the player's earlier calls
        odds = self.model.echo_odds
        return Echo(
            indices, plan.entry, plan.bar, self._pitches, until=until, earlier=earlier, key_offset=offset, odds=odds
        )

    def _draw_answer(self) -> None:
        """Draw the answer's next slice (the symbol of the step that opens at the next boundary at least) and queue
        the notes drawn (``_queue_symbol``); the last note's note_off once the whole answer is drawn."""
        drawing = self._drawing
        plan = drawing.plan
        origin = self._response_end - (plan.end - plan.first)  # the answer's first step on the grid as it now is
        queued = self._queued_symbols
        drawing.advance(plan.first + math.floor(self._grid.step + 1 - origin + 1e-6))
        for k in range(queued, len(drawing.symbols)):
            self._queue_symbol(drawing.symbols[k], plan.first + k, origin + k)
        self._queued_symbols = len(drawing.symbols)
        if drawing.done:
            self._close_note(self._step_time(self._response_end))

    def _key(self, call: list[str]) -> tuple[int, int]:
        """(semitones that move the call onto the white keys, the tonic's pitch class there): the call's own
        diatonic collection and best-fitting tonic, or those of the ``key`` setting."""
        stated = self._stated_key()
        shift = self._call_shift(call)
        if stated is None:
            first = self._grid.step - len(call)
            bar = bar_steps(self.settings.meter)
            bar_line = -first % bar  # the call's first bar line, as an index into it
            return shift, (tonic_pitch_class(call_key(call, bar_line, bar)[0]) + shift) % 12
        return shift, (stated[0] + shift) % 12

    def _call_shift(self, call: list[str]) -> int:
        """``_shift_for`` the call, as the engine asks at each of its steps (``DiatonicTally``)."""
        stated = self._stated_key()
        return self._tally.shift(call) if stated is None else key_shift(*stated)

    def _stated_key(self) -> tuple[int, str] | None:
        return None if self.settings.key == "auto" else parse_key(self.settings.key)

    def _queue_symbol(self, symbol: str, step: int, position: float) -> None:
        """The answer's ``symbol`` for its plan's ``step``, at grid ``position``: a pitch is a note_on there, moved by
        the call's groove when it is followed; a hold lengthens the note it continues; the note before a pitch or a
        rest gets its note_off, at ``gate`` of its length and never after the next note's onset (so a repeated
        pitch retriggers; after a rest the gate, at most 1, always ends it first)."""
        held = self._open_note
        if symbol == HOLD and held is not None and held[1] + held[2] == step:
            self._open_note = (held[0], held[1], held[2] + 1, held[3])
            return
        on = max(self._entry_time, self._step_time(position) + self._groove_shift(step) * self.step_seconds())
        self._close_note(on if is_pitch(symbol) else math.inf)
        if is_pitch(symbol):
            s = self.settings
            velocity = s.velocity if s.velocity is not None else self._touch.velocity(step, s.meter)
            note = _fold(int(symbol) - self._shift, *s.range)
            self._open_note = (
                on,
                step,
                1,
                mido.Message("note_on", channel=s.output_channel, note=note, velocity=velocity),
            )
            self._push(on, self._open_note[3])

    def _close_note(self, bound: float) -> None:
        """Queue the open answer note's note_off: at ``gate`` of its length, never after ``bound``."""
        if self._open_note is None:
            return
        on, _, length, note_on = self._open_note
        off = min(on + self.settings.gate * length * self.step_seconds(), bound)
        self._push(off, mido.Message("note_off", channel=note_on.channel, note=note_on.note, velocity=0))
        self._open_note = None

    def _groove_shift(self, step: int) -> float:
        return self._touch.shift(step, self.settings.meter) if self.settings.groove == "follow" else 0.0

    def _end_response(self, time: float) -> None:
        self.mode = "listening"
        self._drawing = None
        self._remember_call()
        self._events.append(Event(time, "response_end", {}))
        if self._pending_styles is not None:
            (styles,), self._pending_styles = self._pending_styles, None
            self.set_styles(styles)
        if self._pending_model is not None:
            model, self._pending_model = self._pending_model, None
            self._load(model)
        elif self._call_steps:  # the player played on over the answer: that call is heard again, in slices
            call = self._buffer.last_note_symbols()
            self._priming.begin(self._shift, [self._index_of(s) for s in call], self._place_of(call))
        # otherwise the next call's first step primes the LSTM afresh (``_close_step``)

    # --- player input ----------------------------------------------------------

    def feed(self, message: mido.Message, time: float) -> list[Timed]:
        """Take one player message; returns what to send at once: the message itself with ``thru`` (a channel
        message on the player's channel, its notes kept apart from improvd's so that panic, disabling and Stop
        release them and a barge-in does not), then the barge-in releases; usually []. The release of a note
        passed through goes on after ``thru`` is turned off."""
        self.wake(time)
        passed = []
        key = (getattr(message, "channel", None), getattr(message, "note", None))
        if hasattr(message, "channel") and (self.settings.thru or (_is_release(message) and key in self._passed)):
            _track(self._passed, message)
            self._thru_channels.add(message.channel)
            passed = [Timed(time, message, "player")]
            self._silent = False
        return passed + self._hear(message, time)

    @property
    def sounding(self) -> frozenset[tuple[int, int]]:
        """(channel, note) of every note now on at the output: improvd's own and the player's passed through."""
        return frozenset(self._own | self._passed)

    def _hear(self, message: mido.Message, time: float) -> list[Timed]:
        """The call's part of a player message: notes and the sustain pedal; barge-in releases returned."""
        channel = self.settings.input_channel
        if self.mode == "idle" or (channel is not None and getattr(message, "channel", channel) != channel):
            return []
        if self.mode == "counting_in" and self._snap(time) < self._pickup_step():
            self._count_in_ignored += message.type == "note_on" and message.velocity > 0
            return []
        if message.type in ("note_on", "note_off") or (message.type == "control_change" and message.control == SUSTAIN):
            self._late.append((time, message))  # the call's at the next tick, unless that is the phrase end
            if self._following is not None and self._ends_in() != 1:
                self._drop_following()  # made from the call without this message: handed aside again then
        if message.type == "note_on" and message.velocity > 0:
            if self._after_the_turn(time):
                return []
            released = self._barge_in(time) if self.mode == "responding" else []
            step = self._snap(time)
            self._buffer.note_on(message.note, message.velocity, step)
            grid_time = self._grid.step_start + (step - self._grid.step) * self.step_seconds()
            self._deviations[(step, message.note)] = (time - grid_time) / self.step_seconds()
            return released
        if message.type in ("note_off", "note_on"):
            self._buffer.note_off(message.note, self._snap(time))
        elif message.type == "control_change" and message.control == SUSTAIN:
            self._buffer.pedal(message.value >= 64, self._snap(time))
        return []

    def _after_the_turn(self, time: float) -> bool:
        """With ``turns`` in bars, a note on the last 16th of the player's turn (before the answer's bar line, which
        a followed answer's first 16th may come before), heard after the answer was planned: no barge-in, and no
        call (its turn is over); a ``notes_ignored`` event says so."""
        if self.mode != "responding" or self.settings.turns == "phrase" or self._drawing is None:
            return False
        plan = self._drawing.plan
        if self._snap(time) >= self._response_end - (plan.end - plan.entry):
            return False
        self._events.append(Event(time, "notes_ignored", {"reason": "turn over", "notes": 1}))
        return True

    def input_lost(self, time: float) -> list[Timed]:
        """Player input was lost (the input queue overflowed) and a release may have been among it: every note
        passed through is released now, and every key and the pedal count as up. Returns the releases; an
        ``input_lost`` event {released} says so."""
        released = [mido.Message("note_off", channel=c, note=n, velocity=0) for c, n in sorted(self._passed)]
        self._passed = set()
        self._buffer.release_all(self._snap(time))
        self._events.append(Event(time, "input_lost", {"released": len(released)}))
        return [Timed(time, message) for message in released]

    def _barge_in(self, time: float) -> list[Timed]:
        """The player plays over the answer: improvd's notes released (not a key the player now holds through
        thru: the note_off would cut the player's note), the rest of the answer dropped. A note that lands on the
        step where the answer ends (played a little early) cuts nothing of it: the next call, no barge-in."""
        if self.settings.barge_in != "stop":
            return []
        whole = self._snap(time) >= self._response_end - 1e-6
        self._own -= self._passed  # struck again by the player: the player's release ends it
        released = self._release(time, all_notes_off=False, own_only=True)
        self.mode = "listening"
        self._drawing = None
        self._remember_call()
        if not whole:
            self._events.append(Event(time, "barge_in", {}))
        self._events.append(Event(time, "response_end", {} if whole else {"interrupted": True}))
        self._reprime()
        return released

    # --- output queue ------------------------------------------------------------

    def _push(self, time: float, message: mido.Message, on_grid: bool = True) -> None:
        """Queue ``message`` for ``time``; ``on_grid``, its place on the grid is kept, and it moves with the grid."""
        order = next(self._order)
        heapq.heappush(self._queue, (time, order, message))
        if on_grid:
            self._on_grid[order] = self._grid_position(time)

    def _grid_position(self, time: float) -> float:
        return self._grid.step + (time - self._grid.step_start) / self.step_seconds()

    def _retime_queue(self) -> None:
        """Move what was queued on the grid to its place on the grid as it now stands: a boundary that came
        early or late (MIDI clock) or a new tempo moves every later note with it, not just the next one."""
        self._queue = [(self._placed(time, order), order, message) for time, order, message in self._queue]
        heapq.heapify(self._queue)

    def _placed(self, time: float, order: int) -> float:
        """Where the queued message ``order`` now goes: its grid position's time, or ``time`` if off the grid."""
        position = self._on_grid.get(order)
        return time if position is None else self._step_time(position)

    def _renumber(self, step: int, step_start: float) -> None:
        """Number the grid afresh, ``step`` opening at ``step_start`` (Start, a followed call); what is queued, and
        the answer's end, keep their times."""
        times = {order: time for time, order, _ in self._queue if order in self._on_grid}
        end = self._step_time(self._response_end)
        if self._respond_at is not None:
            self._respond_at += step - self._grid.step
        self._grid.step, self._grid.step_start = step, step_start
        self._on_grid = {order: self._grid_position(time) for order, time in times.items()}
        self._response_end = self._grid_position(end)

    def schedule(self, messages: list[Timed]) -> None:
        """Queue ``messages`` to send at their own times (as a release that must go out later), off the grid."""
        for timed in messages:
            self._push(timed.time, timed.message, on_grid=False)

    def next_due(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def pop_due(self, time: float) -> list[Timed]:
        due = []
        while self._queue and self._queue[0][0] <= time:
            at, order, message = heapq.heappop(self._queue)
            self._on_grid.pop(order, None)
            _track(self._own, message)
            due.append(Timed(at, message))
        self._silent = self._silent and not due
        return due

    def drop_late(self, before: float) -> int:
        """Drop every queued note_on due before ``before``, too late to play (the driver was stopped or starved),
        with the note_off that would end it; every other message stays, so each release of a sounding note still
        goes out. Returns how many messages were dropped."""
        if not self._queue or self._queue[0][0] >= before:
            return 0
        kept, unplayed, dropped = [], Counter(), 0
        for item in sorted(self._queue):  # (time, order, message): order is unique, messages are never compared
            time, order, message = item
            key = (message.channel, message.note) if message.type in ("note_on", "note_off") else None
            if message.type == "note_on" and message.velocity > 0 and time < before:
                unplayed[key] += 1
            elif key is not None and unplayed[key] and _is_release(message):
                unplayed[key] -= 1
            else:
                kept.append(item)
                continue
            dropped += 1
            self._on_grid.pop(order, None)
        self._queue = kept  # a sorted list is a heap
        return dropped

    def _release(self, time: float, all_notes_off: bool = True, own_only: bool = False) -> list[Timed]:
        """Clear the queue; note_off for every sounding note, or improvd's ``own_only`` (then CC 123 and
        CC 64 = 0)."""
        self._queue.clear()
        self._on_grid.clear()
        notes = self._own if own_only else self._own | self._passed
        messages = [mido.Message("note_off", channel=c, note=n, velocity=0) for c, n in sorted(notes)]
        self._own = set()
        if not own_only:
            self._passed = set()
        return [Timed(time, m) for m in messages] + (self.all_notes_off(time) if all_notes_off else [])

    def all_notes_off(self, time: float) -> list[Timed]:
        """CC 123 and CC 64 = 0 on the output channel and on every channel thru has passed messages on, nothing
        else changed: what a start or a returning output port sends, since a killed or crashed earlier run may
        have left notes (or a pedal) on there."""
        channels = sorted({self.settings.output_channel, *self._thru_channels})
        return [
            Timed(time, mido.Message("control_change", channel=channel, control=control, value=0))
            for channel in channels
            for control in (ALL_NOTES_OFF, SUSTAIN)
        ]

    # --- commands ------------------------------------------------------------------

    def panic(self, time: float) -> list[Timed]:
        """Release everything now and stop the metronome; a response or count-in in progress ends, listening
        goes on. A ``panic`` event says so. A panic with nothing sent since the last one's releases sends nothing
        (a flood of panics costs the output nothing)."""
        self._events.append(Event(time, "panic", {}))
        self.settings.metronome = False  # silence means silence: set/metronome turns it on again
        silent = self._silent
        released = self._silence(time)
        self._silent = True
        return [] if silent else released

    def _silence(self, time: float) -> list[Timed]:
        """What panic, Stop and disabling share: every note released, the call forgotten."""
        released = self._release(time)
        if self.mode == "responding":
            self._end_response(time)
        if self.mode == "counting_in":
            self.mode = "listening"
        self._count_in_start = self._count_in_end = 0
        self._buffer.reset_call()
        self._call_steps = 0
        self._forget_heard()
        self._late.clear()
        return released

    def stop(self, time: float) -> list[Timed]:
        """MIDI Stop or shutdown: the same releases as panic."""
        return self._silence(time)

    def set_enabled(self, enabled: bool, time: float) -> list[Timed]:
        self.settings.enabled = enabled
        if not enabled:
            released = self._silence(time)
            self.mode = "idle"
            return released
        if self.mode == "idle":
            self.mode = "listening"
            if self.settings.count_in_bars:
                self._count_in(self._grid.step + 1)
            self._queue_click(self._grid.step + 1, self._step_time(self._grid.step + 1))  # its tick has passed
        return []

    def update(self, time: float | None = None, **changes: Any) -> list[Timed]:
        """Change settings all together or not at all (ValueError names the bad one).

        Returns the releases to send if the change disables the engine.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(Settings)})
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        candidate = dataclasses.replace(self.settings, **explicit(changes)).validate()
        enabled, tempo, instrument = candidate.enabled, self.settings.bpm, self._instrument()
        self.settings = dataclasses.replace(candidate, enabled=self.settings.enabled)
        if self._instrument() != instrument:
            self._queue_program(self._grid.step_start if time is None else time)
        self._buffer.resize(self.settings.buffer_steps or self.model.sequence_length)
        self._recall.keep(self._phrases_kept())
        if self.settings.bpm != tempo:
            self._retime_queue()  # a new tempo takes the answer in progress with it
        if enabled != self.settings.enabled:
            return self.set_enabled(enabled, self._grid.step_start if time is None else time)
        return []

    def _instrument(self) -> tuple[int, int | None]:
        return self.settings.output_channel, self.settings.program

    def _remember_call(self) -> None:
        """The call just answered goes into the session memory, as played, with its transposition and its place in
        the bar: for the answers after it."""
        if self._answered:
            self._recall.remember(self._answered, self._shift, *self._answered_at)
            self._answered = []

    def _phrases_kept(self) -> int:
        return self.settings.memory_phrases if self.settings.session_memory else 0

    def forget(self, time: float) -> list[Timed]:
        """Forget the player's earlier calls (the session memory); a ``forget`` event {phrases} says how many."""
        self._events.append(Event(time, "forget", {"phrases": len(self._recall)}))
        self._recall.clear()
        return []

    @property
    def remembered(self) -> int:
        """How many of the player's calls the session memory holds."""
        return len(self._recall)

    def set_model(self, model: Model) -> None:
        """Use ``model`` from now on, or from the end of the response in progress."""
        if self.mode == "responding":
            self._pending_model = model
        else:
            self._load(model)

    def set_styles(self, styles: Styles | None) -> None:
        """Style auto with these candidates (None: the model alone answers, its own candidates hearing the call
        when it has them) from now on, or from the end of the response in progress; they hear the call in progress
        from its next step."""
        if self.mode == "responding":
            self._pending_styles = (styles,)
            return
        self._auto = styles is not None
        if styles is None and self._alone is not None and self._alone[0] is self.model:
            styles = self._alone[1]
        self._listen_with(styles)

    def _listen_with(self, styles: Styles | None) -> None:
        """``styles`` hear the call from its next step (None: the engine's own LSTM hears it, the call in progress
        at once)."""
        self._styles = styles
        if styles is not None:
            styles.shift = None  # the next step gives them the call so far
            styles.aside = self._aside  # the daemon's thread hears for them, off the timing thread
        elif self._resting:
            self._resting = False
            self._reprime()  # the engine's own LSTM hears the call in progress

    @property
    def offset(self) -> int:
        """The semitones the last answer's transposition lay from the call's white keys (a model's minor
        transposition: +3 for one whose minor tunes sit in C minor; 0 before any answer)."""
        return self._offset

    @property
    def busy_aside(self) -> bool:
        """Steps handed aside (the spare LSTM's, style auto's candidates') are not done yet (a bench paces its ticks by
        it, as a 16th's time would), nor a followed turn's tempo fit."""
        fit = self._turn_next
        busy_fit = fit is not None and not fit.finished and not fit.cancelled
        return busy_fit or self._priming.busy_aside or (self._styles is not None and self._styles.busy_aside)

    def drain_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events


def _is_release(message: mido.Message) -> bool:
    return message.type == "note_off" or (message.type == "note_on" and message.velocity == 0)


def _track(notes: set[tuple[int, int]], message: mido.Message) -> None:
    """Keep ``notes`` (channel, note) as ``message`` leaves them: a note_on adds, a release removes."""
    if message.type == "note_on" and message.velocity > 0:
        notes.add((message.channel, message.note))
    elif message.type in ("note_on", "note_off"):
        notes.discard((message.channel, message.note))


def _fold(pitch: int, low: int, high: int) -> int:
    """``pitch`` moved by octaves into ``low`` to ``high``; where the range is narrower than an octave and no
    octave of it fits, the nearer end."""
    while pitch > high and pitch - 12 >= low:
        pitch -= 12
    while pitch < low and pitch + 12 <= high:
        pitch += 12
    return min(max(pitch, low), high)


def _shift_for(call: list[str], stated: tuple[int, str] | None) -> int:
    """Semitones that move ``call`` onto the white keys: by its own diatonic collection, or by the ``stated`` key."""
    return diatonic_shift(call) if stated is None else key_shift(*stated)
