"""The answer's drawing: where it sounds, the rule for each step, the cadence's redraws and the echo, drawn in slices.

Where it sounds (``AnswerPlan``): the engine plans it at the phrase end (improvd.core.engine).

The rule for each step (``draw_step``): the LSTM's probabilities, mixed with the song cache and the echo, then the
symbols ``allowed`` at that step (never a song end; the call's collection; onsets only at the places in the beat
where the call put some; a note forced on the entry bar line if none came before; never the note that would play
the whole call back, note for note, in a row: ``Drawing``), the odds of a note raised by ONSET_GAIN before the last
bar, then one seeded draw with the temperature and top-p the phrase end found.

Drawn in slices (``Drawing``). An answer is not drawn at once: at each tick the engine asks for the steps that
must be queued by the next boundary (``advance(due)``), and the drawing takes at most ``SLICE_STEPS`` LSTM steps
beyond those (``FIRST_SLICE`` at the phrase end), so no tick holds the timing thread for more than about 1.5 ms
of drawing at the shipped model's size, whatever the answer's length, metre or tempo (the slices are sized to
keep every tick under 2 ms: tests/test_answer.py). The symbols drawn so far are ``symbols`` (step ``plan.first + k``
for symbol ``k``); the engine queues them as they come. Its last bar is drawn again, up to ``CADENCE_TRIES``
times, until the answer closes (``closing``: on the tonic or the dominant, come to by a step), keeping the draw that
closes best. The tries run in the slices before that bar is due and on while it plays: each of its steps is drawn
for good when it falls due, from the best finished try (none finished: the try under way), and the tries after that
continue from there. With time for every try first (from three bars on), this is the cadence drawn at once. The
LSTM then stands after the ending that is played (one timeline). Slices are counted in steps, never in seconds, so
simulated and real time draw the same answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from improvd.core.echo import Echo
from improvd.core.encoding import is_pitch
from improvd.core.keys import WHITE_KEYS
from improvd.core.lookback import Place
from improvd.core.recall import QUOTE_NOTES
from improvd.core.runtime import softmax
from improvd.core.sampler import Sampler
from improvd.core.songcache import SongCache

CLOSED = 2  # an answer that ends on the tonic or the dominant on a strong beat, come to by a step or a repeated note
LEAPT = 1  # one that ends there, come to by a leap
CADENCE_TRIES = 12  # draws of the answer's last bar at most
SLICE_STEPS = 10  # LSTM steps drawn at one tick beyond those due (about 0.1 ms each with the draw, shipped model)
ONSET_GAIN = 2.0  # the odds of starting a note rather than holding or resting are multiplied by this, up to the
# answer's last bar (chosen on 306 Essen calls outside the test split, 3 answers each, with the echo's odds
# (improvd.core.echo.ODDS): notes per bar 0.97 of the real bars' against 0.94 at 1.8 and 0.92 at 1.6, the two-sample
# test 0.639 against 0.642 and 0.648; the LSTM, started after the phrase end's silence, under-plays). Not in the last
# bar (the cadence's): there the LSTM alone plays as the real bars do (291 Essen validation calls, 2 answers each:
# 3.25 notes against 3.14), so the gain over-played it (3.78) and cut the close short; without it there, with 5
# answers each, 3.30 notes, and the last note 3.85 16ths against 3.38 (the real bars: 3.73)
FIRST_SLICE = 0  # at the phrase end, which has the key, the plan, the rules and the echo to find first


class Predictor(Protocol):
    """What the drawing asks of its step model (improvd.core.runtime.LSTMRuntime): logits of the next symbol."""

    def prime(self, indices: list[int]) -> Any: ...
    def seat(self, place: Place | None) -> None: ...
    def step(self, index: int) -> np.ndarray: ...
    def snapshot(self) -> Any: ...
    def restore(self, snapshot: Any) -> None: ...


@dataclass(frozen=True)
class AnswerPlan:
    """Grid steps of an answer: ``first`` (its first symbol), ``entry`` (its first bar line, which may come before
    ``first`` when the answer enters late in that bar's first beat), ``end`` (the step after its last symbol); its
    metre's strong positions and bar; ``latest``, where the first note comes at the latest (None: ``entry``)."""

    first: int
    entry: int
    end: int
    strong: frozenset[int]
    bar: int
    latest: int | None = None

    @property
    def first_note(self) -> int:
        """The step by which the answer's first note has come."""
        return self.entry if self.latest is None else self.latest

    @property
    def final(self) -> int:
        """The first step of the answer's last bar (the cadence's), or ``first`` for an answer within one bar."""
        return max(self.first, self.end - self.bar)


@dataclass(frozen=True)
class Rules:
    """What the phrase end fixes for the whole answer: which symbols may be drawn, and how."""

    in_key: np.ndarray  # bool per symbol: the call's collection (no song end)
    onsets: np.ndarray  # bool per symbol: starts a note
    places: tuple[int, frozenset[int]]  # (steps in a beat, places in the beat where an onset may come)
    downbeats: bool  # a note starts on every bar line (the call started one on each of its own)
    tonic: int  # pitch class of the tonic in the model's key
    temperature: float
    top_p: float | None
    memory: bool  # the song cache and the echo mixed in
    call_notes: tuple[int, ...] = ()  # the call's notes in order: never all of them played back in a row

    @cached_property
    def call_borders(self) -> tuple[int, ...]:
        """For each k, the longest run of ``call_notes`` that both begins them and ends their first k + 1."""
        notes, borders = self.call_notes, [0] * len(self.call_notes)
        for k in range(1, len(notes)):
            border = borders[k - 1]
            while border and notes[k] != notes[border]:
                border = borders[border - 1]
            borders[k] = border + (notes[k] == notes[border])
        return tuple(borders)

    def copied(self, before: int, index: int) -> int:
        """How many of the call's first notes the answer's last notes play, in a row, once it plays ``index``
        after playing ``before`` of them (``index`` a note)."""
        notes, borders = self.call_notes, self.call_borders
        while before and (before == len(notes) or notes[before] != index):
            before = borders[before - 1]
        return before + 1 if before < len(notes) and notes[before] == index else before

    @cached_property
    def notes(self) -> np.ndarray:
        """The symbols allowed where a note must start: the onsets of the call's collection."""
        return self.onsets & self.in_key

    @cached_property
    def no_onset(self) -> np.ndarray:
        """The symbols allowed where no note may start: the call's collection's holds and rests."""
        return self.in_key & ~self.onsets


def collection_mask(
    symbols: list[str], playable: np.ndarray, call: list[str], shift: int, span: tuple[int, int], offset: int = 0
) -> np.ndarray:
    """Symbols the answer may draw: ``playable`` ones, pitches of the white keys moved by ``offset`` (the call's
    diatonic collection in the model's key: ``offset`` is the model's minor transposition, improvd.core.styles) or
    of a pitch class the call itself played (its own accidentals, moved by ``shift``), inside ``span`` (lowest and
    highest MIDI note) once moved back, unless no pitch is: then the engine folds each note into it."""
    classes = {(c + offset) % 12 for c in WHITE_KEYS} | {(int(s) + shift) % 12 for s in call if is_pitch(s)}
    mask = playable & np.array([not is_pitch(s) or int(s) % 12 in classes for s in symbols])
    low, high = span
    inside = mask & np.array([not is_pitch(s) or low <= int(s) - shift <= high for s in symbols])
    return inside if any(is_pitch(s) for s, ok in zip(symbols, inside, strict=True) if ok) else mask


def onset_places(call: list[str], first_step: int, beat: int) -> tuple[int, frozenset[int]]:
    """(steps in a beat, the places in the beat where the call, whose first step is ``first_step``, started notes,
    the beat's own start among them): the answer's onsets keep to the call's rhythmic vocabulary."""
    places = {(first_step + k) % beat for k, symbol in enumerate(call) if is_pitch(symbol)}
    return beat, frozenset(places | {0})


def sounds_its_downbeats(call: list[str], first_step: int, bar: int) -> bool:
    """Whether the call, whose first step is ``first_step``, started a note on every bar line from its first note to
    its last."""
    onsets = [first_step + k for k, symbol in enumerate(call) if is_pitch(symbol)]
    lines = range(-(-onsets[0] // bar) * bar, onsets[-1] + 1, bar) if onsets else range(0)
    return all(is_pitch(call[line - first_step]) for line in lines)


def allowed_at(step: int, plan: AnswerPlan, entered: bool, rules: Rules) -> np.ndarray:
    """The symbols allowed at grid ``step``: a note when the entry is due and none came yet, or on a bar line when
    the call sounded every one of its own; no onset where the call's rhythm never put one; otherwise the call's
    collection."""
    if (not entered and step >= plan.first_note) or (rules.downbeats and entered and step % plan.bar == 0):
        return rules.notes  # a note now
    if step % rules.places[0] not in rules.places[1]:
        return rules.no_onset
    return rules.in_key


def draw_step(
    logits: np.ndarray,
    step: int,
    allowed: np.ndarray,
    rules: Rules,
    sampler: Sampler,
    cache: SongCache | None,
    echo: Echo | None,
    gain: float,
) -> int:
    """One answer symbol's index at grid ``step``: the LSTM's ``logits`` as probabilities, the song ``cache``'s (told
    the step and the beat: holds, and the earlier calls' steps, count at the same place in the beat) and the
    ``echo``'s proposals mixed in (with ``rules.memory``), restricted to ``allowed``, the odds of a note raised by
    ``gain``, drawn by ``sampler``."""
    probabilities = softmax(logits)
    if rules.memory and cache is not None:
        probabilities = cache.mix(probabilities, step, rules.places[0])
    if rules.memory and echo is not None:
        probabilities = echo.mix(probabilities, step)
    probabilities = keep_onset_mass(probabilities, allowed, rules.onsets, gain)
    return sampler.sample(probabilities, rules.temperature, rules.top_p, allowed)


def keep_onset_mass(probabilities: np.ndarray, allowed: np.ndarray, onsets: np.ndarray, gain: float) -> np.ndarray:
    """``probabilities`` with the mass of the notes ``allowed`` rules out handed to the notes it allows, in
    proportion, and those notes' odds raised by ``gain``: a mask changes which note starts, not whether one starts
    (holds and rests keep what they had)."""
    both = allowed & onsets
    taken = probabilities[both]
    kept = taken.sum()
    if kept <= 0:
        return probabilities
    taken *= probabilities[onsets].sum() / kept
    taken *= gain
    scaled = probabilities.copy()
    scaled[both] = taken
    return scaled


def closing(symbols: list[str], plan: AnswerPlan, tonic: int) -> int:
    """How an answer ends: CLOSED when the last note that starts on a strong beat of its last bar is the tonic or
    the dominant (weaker notes may lead on after it, as a tune's phrase leads into the next) and the note before it
    is at most a step away, LEAPT when it is further, 0 otherwise. Taking the first try that reached the tonic or
    the dominant at all, the redraws picked closes that leapt there: the last bar moved by step in 0.437 of its
    intervals and by a 4th or 5th in 0.124 (the real bars 0.473 and 0.089; one try, 0.475 and 0.102), and with
    the step preferred, 0.488 and 0.085 (291 Essen validation calls, 5 answers each)."""
    last_bar = max(0, plan.end - plan.bar - plan.first)
    strong = [
        k for k in range(last_bar, len(symbols)) if is_pitch(symbols[k]) and (plan.first + k) % plan.bar in plan.strong
    ]
    if not strong or (int(symbols[strong[-1]]) - tonic) % 12 not in (0, 7):
        return 0
    before = next((int(s) for s in reversed(symbols[: strong[-1]]) if is_pitch(s)), None)
    return CLOSED if before is None or abs(int(symbols[strong[-1]]) - before) <= 2 else LEAPT


class Drawing:
    """One answer drawn step by step on ``runtime`` (standing where the answer starts, ``logits`` its last
    output) and ``cache``; the engine owns both and gets them back, after the played ending, once ``done``."""

    def __init__(
        self,
        plan: AnswerPlan,
        rules: Rules,
        symbols: list[str],
        sampler: Sampler,
        runtime: Predictor,
        cache: SongCache,
        logits: np.ndarray,
        echo: Echo | None,
    ) -> None:
        self.plan = plan
        self.symbols: list[str] = []  # drawn for good: step plan.first + k sounds symbols[k]
        self.done = False
        self._rules = rules
        self._vocabulary = symbols
        self._sampler = sampler
        self._runtime = runtime
        self._cache = cache
        self._logits = logits
        self._echo = echo
        self._due: int | None = None  # the step last asked for; None before the first slice
        self._entered = False
        self._copied = 0  # the call's first notes the answer's last ones play, in a row
        self._notes: tuple[int, ...] = ()  # the answer's last QUOTE_NOTES notes
        self._steps = self._draw()

    def advance(self, due: int) -> None:
        """Draw until the symbol of grid step ``due`` is drawn for good (or the answer is), then at most
        ``SLICE_STEPS`` LSTM steps more (``FIRST_SLICE`` the first time)."""
        limit = FIRST_SLICE if self._due is None else SLICE_STEPS
        self._due = due
        extra = 0
        while not self.done:
            if self.plan.first + len(self.symbols) > due:
                if extra == limit:
                    return
                extra += 1
            next(self._steps, None)

    def _draw(self) -> Iterator[None]:
        """The drawing as a generator: one LSTM step per ``next``."""
        plan = self.plan
        self._cache.quiet = False  # (an answer barged into during its cadence left it silent)
        for step in range(plan.first, plan.final):
            self.symbols.append(self._draw_one(step))
            yield
        self._cache.quiet = True  # the last bar is the cadence's: the call's lines fall silent, as the echo does
        yield from self._cadence()
        self._cache.quiet = False
        self.done = True

    def _cadence(self) -> Iterator[None]:
        """The last bar, drawn again up to CADENCE_TRIES times until the answer closes, keeping the try that closes
        best. Each try continues what is drawn for good of the bar: when a step falls due, its symbol is drawn for
        good from the best finished try (none finished: the try under way), and a try that went another way is
        left unfinished. With time for every try before the bar is due, this is the cadence drawn at once."""
        plan = self.plan
        start = len(self.symbols)  # the last bar's first symbol
        base = self._save()  # the state after what is drawn for good
        best: tuple[list[str], int, tuple] | None = None  # (the bar's symbols, how it closes, the state after it)
        for _ in range(CADENCE_TRIES):
            if best is not None and best[1] == CLOSED:
                break
            self._load(base)
            ending: list[str] | None = self.symbols[start:]
            while ending is not None and plan.final + len(ending) < plan.end:
                ending.append(self._draw_one(plan.final + len(ending)))
                yield
                base, ending = self._commit_due(start, base, best, ending)
            if ending is not None:
                score = closing(self.symbols[:start] + ending, plan, self._rules.tonic)
                if best is None or score > best[1]:
                    best = (ending, score, self._save())
        assert best is not None  # the first try is never left: commits come from it until one is finished
        self._load(best[2])
        self.symbols[start:] = best[0]

    def _commit_due(
        self, start: int, base: tuple, best: tuple[list[str], int, tuple] | None, ending: list[str]
    ) -> tuple[tuple, list[str] | None]:
        """Draw for good the last bar's symbols now due, from ``best`` or else the try under way (``ending``);
        returns the state after what is drawn for good, and ``ending``, or None when it went another way."""
        source = best[0] if best is not None else ending
        committed = len(self.symbols) - start
        if self._due is None or self.plan.first + len(self.symbols) > self._due or committed >= len(source):
            return base, ending
        running = self._save()
        self._load(base)
        while self.plan.first + len(self.symbols) <= self._due and committed < len(source):
            self.symbols.append(source[committed])
            self._hear(self.plan.final + committed, self._vocabulary.index(source[committed]))
            committed += 1
        base = self._save()
        self._load(running)
        return base, ending if ending[:committed] == self.symbols[start:] else None

    def _draw_one(self, step: int) -> str:
        index = draw_step(
            self._logits,
            step,
            self._not_quoting(self._not_whole_call(allowed_at(step, self.plan, self._entered, self._rules))),
            self._rules,
            self._sampler,
            self._cache,
            self._echo,
            ONSET_GAIN if step < self.plan.final else 1.0,
        )
        self._hear(step, index)
        return self._vocabulary[index]

    def _not_whole_call(self, allowed: np.ndarray) -> np.ndarray:
        """``allowed`` without the call's last note where the answer's last notes are all the call's others, in
        a row: an answer never hands the whole call back, note for note (the echo, the song cache and the earlier
        calls of a motif played again can all propose it), unless no other note is allowed there."""
        notes = self._rules.call_notes
        if len(notes) < 2 or self._copied != len(notes) - 1 or not allowed[notes[-1]]:
            return allowed
        others = allowed.copy()
        others[notes[-1]] = False
        return others if (others & self._rules.onsets).any() else allowed

    def _not_quoting(self, allowed: np.ndarray) -> np.ndarray:
        """``allowed`` without the notes that would play more than QUOTE_NOTES of an earlier call's notes in a row
        (improvd.core.recall.SessionMemory.quoted), unless no other note is allowed there."""
        if not self._rules.memory or len(self._notes) < QUOTE_NOTES:
            return allowed
        quoted = self._cache.quoted(self._notes)
        if not quoted:
            return allowed
        others = allowed.copy()
        others[sorted(quoted)] = False
        return others if (others & self._rules.onsets).any() else allowed

    def _hear(self, step: int, index: int) -> None:
        """The LSTM, the song cache and the echo take the answer's own ``index`` at ``step``."""
        if self._echo is not None:
            self._echo.heard(step, index)
        if self._rules.onsets[index]:
            self._copied = self._rules.copied(self._copied, index)
            self._notes = (*self._notes, index)[-QUOTE_NOTES:]
        self._entered = self._entered or bool(self._rules.onsets[index])
        self._logits = self._runtime.step(index)
        self._cache.add(index, count=False)  # the cache follows the answer but does not learn from it

    def _save(self) -> tuple:
        echo = self._echo and self._echo.snapshot()
        saved = self._runtime.snapshot(), self._cache.snapshot(), echo, self._logits, self._entered
        return (*saved, self._copied, self._notes)

    def _load(self, saved: tuple) -> None:
        runtime, cache, echo, self._logits, self._entered, self._copied, self._notes = saved
        self._runtime.restore(runtime)
        self._cache.restore(cache)
        if self._echo is not None:
            self._echo.restore(echo)
