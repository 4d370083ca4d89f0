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
  returns, in time order; ``drop_late(t)`` drops what a stalled driver can no
  longer play on time (note_ons due before ``t`` and their note_offs). ``panic``, ``set_enabled(False, t)``, ``stop`` and a
  barge-in clear the queue and return (to send at once) a note_off for every
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
  {steps, first_step, entry, transposition}, ``response_end`` ({} or
  {interrupted: True}), ``barge_in``, ``panic``, ``forget`` {phrases}, ``input_lost`` {released},
  ``respond_ignored`` {reason},
  ``count_in`` {listen_at_step}, ``tempo`` {bpm, fit}.

Listening becomes responding at the tick that completes ``phrase_end_steps``
silent steps (no key down and no note held by the pedal) after a call of at
least ``min_call_steps`` played steps, at the first tick after ``respond_now``,
or when the call reaches ``max_call_steps``. A call too short to answer is
forgotten once the silence is long enough.

One timeline. At the phrase-end tick the LSTM has consumed every closed step of
the call and its silence; it then consumes a hold for the step that opened at
the tick (already under way, silent) and draws the answer one symbol per
following grid step, so each answer symbol sounds on the step it was drawn
for. Before drawing, the engine moves the call onto the white keys by its
diatonic collection (improvd.core.keys.diatonic_shift) and re-primes the LSTM if
that move changed. The whole answer is drawn at the tick (a few milliseconds)
and queued, moved back and folded by octaves into MIDI range; its first
possible note is due a whole step after the tick, so the phrase-end work is off
the timing-critical path as long as a tick returns within a step.

Where it sounds (``AnswerPlan``). Bar lines fall every ``bar_steps(meter)``
steps from the grid origin. The model places the first note itself (holds and
rests of the silence may come first), but a note is forced on the first bar
line at or after the first answer step if none came before: at most a bar of
silence. With ``response_steps`` None the answer fills ``response_bars`` bars
after that bar line and ends on a bar line; otherwise it lasts
``response_steps`` steps (or as many as the call played, with ``"match"``). Its
last bar is drawn again, up to ``CADENCE_TRIES`` times, until its last note on
a strong beat is the tonic or the dominant. A song end is never drawn, the
answer keeps to the call's collection (the white keys in the model's key, plus
the call's own accidentals), and it starts notes only at the places in the beat
where the call started some (a call in 8ths gets no 16th off the 8ths). The engine listens again at the boundary after
the answer's last step.

Memory. The song cache (improvd.core.songcache) mixes what followed the same
contexts earlier in the player's line into the LSTM's probabilities (it follows
the answer as it goes but does not learn from it, which would let an answer
loop); under it the session memory (improvd.core.recall) mixes what followed the same
contexts in the player's earlier calls, each remembered in its own transposition once it is answered; the echo
(improvd.core.echo) lays the call over the answer bar line on bar line. Temperature divides the log
probabilities; top-p keeps the smallest set of
likely symbols; the generator is seeded.

Touch (improvd.core.touch). Each note_off is due ``gate`` of its note's length after
its note_on and never after the next answer note's onset, so a repeated pitch
retriggers. Velocity is ``velocity``, or the call's recent level with the call's
accent at the same metric place; with ``groove = "follow"`` each note moves by
the call's mean timing off the grid at its place in the beat (at most a quarter
step). With ``barge_in = "stop"`` a player note during an answer releases every
sounding answer note at once, drops the rest of the answer and starts the next
call; with ``"overlap"`` the answer plays on and the player's notes go into the
buffer for the next call.

While answering, the LSTM consumes its own symbols (it is continuing). After
the answer (or a barge-in) the LSTM and the cache are re-primed from the
player's buffer, so the next answer follows what the player played, not what
improvd played.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import mido
import numpy as np

from improvd.core.echo import Echo
from improvd.core.encoding import HOLD, REST, SONG_END, is_pitch, tonic_pitch_class
from improvd.core.follow import regrid
from improvd.core.grid import Grid, bar_steps, next_bar_line, strong_positions
from improvd.core.keys import WHITE_KEYS, diatonic_shift, estimate_key
from improvd.core.metronome import CLICK_STEPS, click
from improvd.core.model import Model
from improvd.core.recall import SessionMemory
from improvd.core.runtime import LSTMRuntime, softmax
from improvd.core.sampler import Sampler
from improvd.core.seedbuffer import SeedBuffer
from improvd.core.settings import Settings
from improvd.core.songcache import SongCache
from improvd.core.tempo import estimate as estimate_beat
from improvd.core.touch import Touch, beat_steps

SUSTAIN = 64
ALL_NOTES_OFF = 123
HEARD_MESSAGES = 4096  # the call's messages kept for following its tempo (a call of 4096 steps: 256 bars)
CLOSED = 2  # an answer that ends on the tonic or the dominant on a strong beat
CADENCE_TRIES = 12  # draws of the answer's last bar at most (each a bar of LSTM steps: well under a millisecond)


class Predictor(Protocol):
    """What the engine asks of its step model (improvd.core.runtime.LSTMRuntime): logits of the next symbol."""

    def prime(self, indices: list[int]) -> Any: ...
    def step(self, index: int) -> np.ndarray: ...
    def snapshot(self) -> Any: ...
    def restore(self, snapshot: Any) -> None: ...


@dataclass(frozen=True)
class AnswerPlan:
    """Grid steps of an answer: ``first`` (its first symbol), ``entry`` (its first bar line: the first note
    comes there at the latest), ``end`` (the step after its last symbol); its metre's strong positions and bar."""

    first: int
    entry: int
    end: int
    strong: frozenset[int]
    bar: int


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
    ) -> None:
        """``predictor`` makes the step model from ``model`` (the LSTM; evaluate passes an n-gram); without
        ``memory`` the answer is the predictor's alone (no song cache, no echo), for evaluate's comparisons."""
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
        self._grid = Grid()
        self._respond_requested = False
        self.mode = "listening" if self.settings.enabled else "idle"
        self._buffer = SeedBuffer(self.settings.buffer_steps or model.sequence_length)
        self._call_steps = 0
        self._shift = 0
        self._touch = Touch()
        self._thru_channels: set[int] = set()  # channels the player's messages went out on (their pedal too)
        self._count_in_start = self._count_in_end = 0  # the count-in's grid steps: listening starts at the end
        self._deviations: dict[tuple[int, int], float] = {}  # (step, pitch) -> how far off the grid it was played
        self._heard: deque[tuple[float, mido.Message]] = deque(maxlen=HEARD_MESSAGES)  # the call's, for follow
        self._recall = SessionMemory(self._phrases_kept())  # the player's earlier calls (improvd.core.recall)
        self._load(model)

    # --- model and state -----------------------------------------------------

    def _load(self, model: Model) -> None:
        self.model = model
        self._buffer.resize(self.settings.buffer_steps or model.sequence_length)
        self._runtime = self._predictor(model)
        vocabulary = model.vocabulary
        self._song_end = vocabulary.index[SONG_END]
        self._recall.bind(vocabulary.symbols)  # a model of another vocabulary starts an empty memory
        self._cache = SongCache(self._song_end, self._recall)
        self._runtime.prime([self._song_end] * model.song_gap)  # a call starts as a song does in training
        self._song_start = self._runtime.snapshot()
        self._onset_mask = np.array([is_pitch(s) for s in vocabulary.symbols])
        self._playable = np.array([s != SONG_END for s in vocabulary.symbols])
        self._in_key = self._playable
        self._places = (1, frozenset({0}))  # every step, until a call says otherwise
        self._reprime()

    def _index_of(self, symbol: str) -> int:
        """The LSTM's index of a player's symbol (a pitch transposed and folded into the vocabulary)."""
        vocabulary = self.model.vocabulary
        if is_pitch(symbol):
            symbol = vocabulary.fold(str(_midi_range(int(symbol) + self._shift)))  # MIDI 0-5 may move below 0
        return vocabulary.index[symbol]

    def _feed_lstm(self, symbol: str) -> None:
        """One LSTM step on a player's ``symbol``."""
        self._step(self._index_of(symbol))

    def _step(self, index: int, own: bool = False) -> None:
        """The LSTM and the song cache take one symbol (the cache does not count improvd's ``own``)."""
        self._logits = self._runtime.step(index)
        self._cache.add(index, count=not own)

    def _reprime(self) -> None:
        self._runtime.restore(self._song_start)
        self._step(self._song_end)  # the cache starts a new song too
        for symbol in self._buffer.last_note_symbols():
            self._feed_lstm(symbol)

    # --- the grid --------------------------------------------------------------

    def step_seconds(self) -> float:
        return 60.0 / self.settings.bpm / 4

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
        if self.mode != "idle" and self.settings.count_in_bars:
            self._count_in(0)
        self._queue_click(0, time)

    def _count_in(self, step: int) -> None:
        """Click ``count_in_bars`` bars from the first bar line at or after ``step``; listen after them."""
        s = self.settings
        self._count_in_start = next_bar_line(step, s.meter)
        self._count_in_end = self._count_in_start + s.count_in_bars * bar_steps(s.meter)
        self.mode = "counting_in"
        self._buffer.reset_call()
        self._call_steps = 0
        self._events.append(Event(self._grid.step_start, "count_in", {"listen_at_step": self._count_in_end}))

    def _queue_click(self, step: int, time: float) -> None:
        s = self.settings
        counting = self.mode == "counting_in" and self._count_in_start <= step < self._count_in_end
        if self.mode == "idle" or not (s.metronome or counting):
            return
        found = click(step, s.meter, s.metronome_notes)
        if found is not None:
            note, velocity = found
            self._push(time, mido.Message("note_on", channel=s.metronome_channel, note=note, velocity=velocity))
            off = time + CLICK_STEPS * self.step_seconds()
            self._push(off, mido.Message("note_off", channel=s.metronome_channel, note=note, velocity=0))

    def _snap(self, time: float) -> int:
        return self._grid.snap(time, self.step_seconds())

    def tick(self, time: float) -> None:
        predicted = self.next_boundary()
        closed = self._grid.advance(time)
        if closed is None:
            return  # the origin itself: no step has ended yet
        if abs(time - predicted) > 1e-9:  # a MIDI clock boundary; the internal clock's come where predicted
            self._retime_queue()
        if self.mode == "responding" and self._grid.step >= self._response_end - 1e-6:
            self._end_response(time)
        if self.mode == "counting_in" and self._grid.step >= self._count_in_end:
            self.mode = "listening"
        self._queue_click(self._grid.step + 1, time + self.step_seconds())
        if self.mode in ("idle", "counting_in"):
            return
        self._close_step(closed, time)

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
        if is_pitch(symbol):
            deviation = self._deviations.get((step, int(symbol)), 0.0)
            self._touch.record(step, self._buffer.velocities[-1], deviation)
        self._deviations = {key: d for key, d in self._deviations.items() if key[0] > step}
        if self.mode == "responding":
            return  # overlap: the player's notes go into the next call; the LSTM is busy answering
        if starts:
            self._reprime()  # the song's start, then this first step
        else:
            self._feed_lstm(symbol)
        if self._phrase_ended():
            self._respond(time)

    def _phrase_ended(self) -> bool:
        s = self.settings
        if self._respond_requested:
            return True
        played = self._call_steps - self._buffer.silent_steps
        if self._buffer.silent_steps >= s.phrase_end_steps and not self._buffer.held:
            if played >= s.min_call_steps:
                return True
            self._call_steps = 0  # too short to answer: forget it, listen for a new call
            self._heard.clear()
            return False
        return bool(s.max_call_steps) and self._call_steps >= s.max_call_steps

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

    def _respond(self, time: float) -> None:
        self._respond_requested = False
        if self.settings.follow_tempo:
            self._follow(time)
        self._heard.clear()
        call = self._buffer.last_note_symbols()
        self._events.append(Event(time, "phrase_end", {"call_steps": self._call_steps}))
        shift = diatonic_shift(call)
        if shift != self._shift:
            self._shift = shift
            self._reprime()
        self._feed_lstm(HOLD)  # the step that opened at this tick sounds as the call's silence going on
        plan = self._plan(self._grid.step + 1)
        tonic = (tonic_pitch_class(estimate_key(call)[0]) + shift) % 12
        self._in_key = self._collection_mask(call)
        self._places = self._onset_places(call)
        symbols = self._sample_answer(plan, self._echo(plan, call), tonic)
        self._recall.remember(call, self._index_of)  # in this call's transposition, for the answers after it
        self._queue_response(symbols, plan.first)
        self._call_steps = 0
        self.mode = "responding"
        data = {"steps": len(symbols), "first_step": plan.first, "entry": plan.entry, "transposition": shift}
        self._events.append(Event(time, "response_start", data))

    def _follow(self, time: float) -> None:
        """Hear the call again on the player's own grid (improvd.core.follow); the old one stays if its tempo cannot be
        told (too few onsets)."""
        onsets = [t for t, m in self._heard if m.type == "note_on" and m.velocity > 0]
        beat = estimate_beat(onsets, self.settings.bpm)
        regridded = beat and regrid(list(self._heard), beat, time, self._buffer.symbols.maxlen or 1)
        if not regridded:
            return
        self.settings.bpm = round(beat.bpm, 2)
        self._buffer = regridded.buffer
        self._touch = Touch()
        for onset in regridded.onsets:
            self._touch.record(*onset)
        self._renumber(regridded.open_step, beat.origin + regridded.open_step * self.step_seconds())
        self._call_steps = regridded.call_steps
        self._reprime()
        self._events.append(Event(time, "tempo", {"bpm": self.settings.bpm, "fit": round(beat.fit, 3)}))

    def _plan(self, first: int) -> AnswerPlan:
        """Where the answer starting at grid step ``first`` enters and ends."""
        s = self.settings
        entry = next_bar_line(first, s.meter)
        if s.response_steps is None:
            end = entry + s.response_bars * bar_steps(s.meter)
        elif s.response_steps == "match":
            end = first + max(1, min(256, self._call_steps - self._buffer.silent_steps))
        else:
            end = first + int(s.response_steps)
        return AnswerPlan(first, min(entry, end - 1), end, strong_positions(s.meter), bar_steps(s.meter))

    def _echo(self, plan: AnswerPlan, call: list[str]) -> Echo | None:
        """The call's played steps (its closing silence left out) laid over the answer, in the LSTM's indices."""
        played = len(call)
        if REST in call:
            last_rest = len(call) - 1 - call[::-1].index(REST)
            if all(symbol == HOLD for symbol in call[last_rest + 1 :]):
                played = last_rest
        if played == 0:
            return None
        first_step = self._grid.step - len(call)  # the buffer's last symbol is the step that just closed
        indices = {first_step + k: self._index_of(symbol) for k, symbol in enumerate(call[:played])}
        return Echo(indices, plan.entry, plan.bar, self._onset_mask, until=max(plan.first, plan.end - plan.bar))

    def _onset_places(self, call: list[str]) -> tuple[int, frozenset[int]]:
        """(steps in a beat, the places in the beat where the call started notes, the beat's own start among them):
        the answer's onsets keep to the call's rhythmic vocabulary (a call in 8ths gets no 16th off the 8ths)."""
        beat = beat_steps(self.settings.meter)
        first = self._grid.step - len(call)
        places = {(first + k) % beat for k, symbol in enumerate(call) if is_pitch(symbol)}
        return beat, frozenset(places | {0})

    def _collection_mask(self, call: list[str]) -> np.ndarray:
        """Symbols the answer may draw: no song end, and pitches of the white keys (the call's diatonic collection
        in the model's key) or of a pitch class the call itself played (its own accidentals)."""
        classes = set(WHITE_KEYS) | {(int(s) + self._shift) % 12 for s in call if is_pitch(s)}
        vocabulary = self.model.vocabulary
        return self._playable & np.array([not is_pitch(s) or int(s) % 12 in classes for s in vocabulary.symbols])

    def _sample_answer(self, plan: AnswerPlan, echo: Echo | None, tonic: int) -> list[str]:
        """The answer's symbols in the model's key, one per step from ``plan.first`` to ``plan.end``; its last bar
        is drawn again (up to CADENCE_TRIES times) until the answer closes (``_closing``), keeping the draw that
        closes best, which is then the one the LSTM has heard."""
        final = max(plan.first, plan.end - plan.bar)
        symbols = self._sample_steps(plan, plan.first, final, echo, [])
        self._recall.quiet = True  # the last bar is the cadence's: the session memory falls silent, as the echo does
        saved = self._save(echo)
        best, best_score = [], -1
        for attempt in range(CADENCE_TRIES):
            if attempt:
                self._load_saved(saved, echo)
            ending = self._sample_steps(plan, final, plan.end, echo, symbols)
            score = _closing(symbols + ending, plan, tonic)
            if score > best_score:
                best, best_score = ending, score
            if score == CLOSED:
                break
        if best is not ending:  # one timeline: the LSTM hears the ending that is played
            self._load_saved(saved, echo)
            for step, symbol in enumerate(best, start=final):
                index = self.model.vocabulary.index[symbol]
                if echo is not None:
                    echo.heard(step, index)
                self._step(index, own=True)
        self._recall.quiet = False
        return symbols + best

    def _save(self, echo: Echo | None) -> tuple:
        return self._runtime.snapshot(), self._cache.snapshot(), echo and echo.snapshot(), self._logits

    def _load_saved(self, saved: tuple, echo: Echo | None) -> None:
        runtime, cache, echoed, self._logits = saved
        self._runtime.restore(runtime)
        self._cache.restore(cache)
        if echo is not None:
            echo.restore(echoed)

    def _sample_steps(self, plan: AnswerPlan, start: int, stop: int, echo: Echo | None, before: list[str]) -> list[str]:
        """Symbols for grid steps ``start`` to ``stop``: never a song end; a note at ``plan.entry`` at the latest."""
        vocabulary = self.model.vocabulary
        entered = any(is_pitch(symbol) for symbol in before)
        symbols: list[str] = []
        for step in range(start, stop):
            probabilities = softmax(self._logits)
            if self._memory:
                probabilities = self._cache.mix(probabilities)
            if echo is not None and self._memory:
                probabilities = echo.mix(probabilities, step)
            if not entered and step >= plan.entry:
                allowed = self._onset_mask & self._in_key  # the entry is due: a note now, wherever it falls
            elif step % self._places[0] not in self._places[1]:
                allowed = self._in_key & ~self._onset_mask  # no onset where the call's rhythm never put one
            else:
                allowed = self._in_key
            with np.errstate(divide="ignore"):  # a symbol the echo or cache rules out has logit -inf
                logits = np.log(probabilities)
            index = self._sampler.sample(logits, self.settings.temperature, self.settings.top_p, allowed)
            if echo is not None:
                echo.heard(step, index)
            symbol = vocabulary.symbols[index]
            entered = entered or is_pitch(symbol)
            symbols.append(symbol)
            self._step(index, own=True)
        return symbols

    def _queue_response(self, symbols: list[str], first: int) -> None:
        """Note_on/note_off pairs: symbol k sounds on grid step ``first + k``, moved by the call's groove when it
        is followed; each note_off comes at ``gate`` of the note's length and never after the next note's onset
        (so a repeated pitch retriggers)."""
        step = self.step_seconds()
        s = self.settings
        notes = _notes_of(symbols)
        ons = [self._step_time(first + start) + self._groove_shift(first + start) * step for start, _, _ in notes]
        end = self._step_time(first + len(symbols))
        self._response_end = float(first + len(symbols))  # the step that opens after the answer
        for k, (start, length, pitch) in enumerate(notes):
            played = _midi_range(pitch - self._shift)
            velocity = s.velocity if s.velocity is not None else self._touch.velocity(first + start, s.meter)
            self._push(ons[k], mido.Message("note_on", channel=s.output_channel, note=played, velocity=velocity))
            off = min(ons[k] + s.gate * length * step, ons[k + 1] if k + 1 < len(ons) else end)
            self._push(off, mido.Message("note_off", channel=s.output_channel, note=played, velocity=0))

    def _groove_shift(self, step: int) -> float:
        return self._touch.shift(step, self.settings.meter) if self.settings.groove == "follow" else 0.0

    def _end_response(self, time: float) -> None:
        self.mode = "listening"
        self._events.append(Event(time, "response_end", {}))
        if self._pending_model is not None:
            model, self._pending_model = self._pending_model, None
            self._load(model)
        else:
            self._reprime()

    # --- player input ----------------------------------------------------------

    def feed(self, message: mido.Message, time: float) -> list[Timed]:
        """Take one player message; returns what to send at once: the message itself with ``thru`` (a channel
        message on the player's channel, its notes kept apart from improvd's so that panic, disabling and Stop
        release them and a barge-in does not), then the barge-in releases; usually []. The release of a note
        passed through goes on after ``thru`` is turned off."""
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
        if self.mode in ("idle", "counting_in") or (
            channel is not None and getattr(message, "channel", channel) != channel
        ):
            return []
        if message.type in ("note_on", "note_off") or (message.type == "control_change" and message.control == SUSTAIN):
            self._heard.append((time, message))
        if message.type == "note_on" and message.velocity > 0:
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
        thru: the note_off would cut the player's note), the rest of the answer dropped."""
        if self.settings.barge_in != "stop":
            return []
        self._own -= self._passed  # struck again by the player: the player's release ends it
        released = self._release(time, all_notes_off=False, own_only=True)
        self.mode = "listening"
        self._events.append(Event(time, "barge_in", {}))
        self._events.append(Event(time, "response_end", {"interrupted": True}))
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
        self._buffer.reset_call()
        self._call_steps = 0
        self._heard.clear()
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
        return []

    def update(self, time: float | None = None, **changes: Any) -> list[Timed]:
        """Change settings all together or not at all (ValueError names the bad one).

        Returns the releases to send if the change disables the engine.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(Settings)})
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        candidate = dataclasses.replace(self.settings, **explicit(changes)).validate()
        enabled, tempo = candidate.enabled, self.settings.bpm
        self.settings = dataclasses.replace(candidate, enabled=self.settings.enabled)
        self._buffer.resize(self.settings.buffer_steps or self.model.sequence_length)
        self._recall.keep(self._phrases_kept())
        if self.settings.bpm != tempo:
            self._retime_queue()  # a new tempo takes the answer in progress with it
        if enabled != self.settings.enabled:
            return self.set_enabled(enabled, self._grid.step_start if time is None else time)
        return []

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


def _closing(symbols: list[str], plan: AnswerPlan, tonic: int) -> int:
    """How an answer ends: CLOSED when its last note starts on a strong beat of its last bar and is the tonic or
    the dominant; 1 when such a note comes but weaker ones lead on after it; 0 otherwise."""
    last_bar = max(0, plan.end - plan.bar - plan.first)
    notes = [k for k in range(last_bar, len(symbols)) if is_pitch(symbols[k])]
    strong = [k for k in notes if (plan.first + k) % plan.bar in plan.strong]
    if not strong or (int(symbols[strong[-1]]) - tonic) % 12 not in (0, 7):
        return 0
    return CLOSED if strong[-1] == notes[-1] else 1


def _notes_of(symbols: list[str]) -> list[tuple[int, int, int]]:
    """(start step, length in steps, pitch) for each note in ``symbols``; rests end notes."""
    notes: list[tuple[int, int, int]] = []
    for k, symbol in enumerate(symbols):
        if is_pitch(symbol):
            notes.append((k, 1, int(symbol)))
        elif symbol == HOLD and notes and notes[-1][0] + notes[-1][1] == k:
            start, length, pitch = notes[-1]
            notes[-1] = (start, length + 1, pitch)
    return notes


def _midi_range(pitch: int) -> int:
    while pitch > 127:
        pitch -= 12
    while pitch < 0:
        pitch += 12
    return pitch
