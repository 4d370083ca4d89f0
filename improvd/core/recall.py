"""Session memory: the player's earlier calls of this session, mixed into the answer under the present call.

Each call is answered as a song of its own (improvd.core.songcache), so without this a motif played three
phrases ago is gone. As the Continuator learns a player, the memory keeps the player's last ``phrases`` calls
(never improvd's answers) as played, with the transposition it was answered in. Each answer hears them in its
own (``attune``): a call whose notes all lie in the present call's diatonic collection at the pitches played (a
tune's phrases are often heard in different collections, F major's F A G Bb in B-flat major's too, and moved by
their own transpositions half the phrases of the Essen test tunes brought an earlier motif back a fourth or a
fifth away), one that does not moved by its own onto the white keys, so a motif played in D comes back in an
answer in G; either way by the whole octaves that bring its mean pitch nearest the present call's, and one moved
by its own still more than ``DEGREES_BEYOND`` semitones away by the degrees of the scale that do (as a tune
repeats a motif a third higher; nearer, it keeps its degrees, its tonic on the present call's). Moved by its own
transposition alone, a call sat up to an octave away from the present call in the model's key (C minor around C4
moved to A minor around A3, E minor around F#4 moved to A minor around B4) and drew the answer there (play
tests: an E minor call in D4-D5 answered in E3-C4 after three such calls; D minor in A4-G5 answered in C5-D6
after G major in D4-E5, half an octave off). As played after another tune's call (bench/session_memory.py,
validation), answers whose range missed the call's went from 0.091 to 0 (0 with the memory off), the p95 of
|answer's mean pitch - call's| from 12.7 to 4.7 semitones with the octaves (and the metre, below) and to 3.1
with the degrees too (5.1 off, the real bars' 5.0). The memory reaches the answer three ways:

* what followed the answer's present context (``MIN_ORDER`` to ``MAX_ORDER`` steps) in those calls, a call ``k``
  phrases back counting ``FADE ** k`` as much as the last one, blended over the LSTM as the song cache blends
  (Witten-Bell over the context lengths); the song cache (the present call) and the echoes are mixed over that.
  Like the present call's echo it falls silent in the answer's last bar, which is the cadence's (an earlier
  call's line would lead on past the cadence). Only calls played in the answer's bars take part: another metre's
  steps put its rhythm on other places of the bar (as played after another tune's call, 291 validation tunes, the
  answers' onsets overlapped the real bars' in 4/4 0.904, in 6/8 0.892, with the memory off 0.938 and 0.945; with
  those calls' notes only, 0.938 and 0.933). Nor does a match elsewhere in the beat than the step to come
  (``_Call.following``): three steps of holds, or a note and two, match anywhere, and what followed them on
  another 16th of the beat moved the answer a 16th off it, where the LSTM, which hears no bar lines, went on for
  bars (sessions of three 16-bar Essen calls with 16ths: after an earlier call 10 answer bars of 527 had every
  note a 16th off the beat, none with the memory off or with this; tests/test_answer.py);
* each call laid over the answer bar line on bar line, as the echo lays the present call (``echoes``,
  improvd.core.echo), the last call at ``FADE`` of the present call's weight, each older one at ``FADE`` of the
  one after it, mixed at once with the present call's echo. An answer that starts after a pause has no context
  an earlier call shares, so without these an earlier motif rarely came back (a 4-note run of an earlier call
  in 19.8% of the answers of bench/session_memory.py, 15.3% with the memory off); they speak in the last bar
  too, where the present call's echo is silent: a phrase comes back with its ending;
* as the Continuator matches notes, not grid steps: the notes that followed the answer's last ``NOTE_MIN`` to
  ``NOTE_MAX`` notes (whatever their rhythm; at the answer's start, the present call's last notes) in those calls
  (the last at ``FADE``, each older one at ``FADE`` of the one after it), blended by Witten-Bell into the odds of
  which note starts (not of whether one does), in the last bar too: a motif comes back in the answer's own rhythm,
  and an earlier call's continuation of a motif the present call ends with follows it. Matching the earlier calls
  alone (60 validation tunes of bench/session_memory.py) took answers sharing a 4-note run with an earlier phrase
  from 0.467 to 0.606 (0.161 with the memory off) but as played, after another tune's call, the answers took up
  that tune's motifs instead of the call's (motif reuse 0.30 on the test tunes, the real bars' 0.47): the present
  call's own notes must weigh more. The song cache's note runs (improvd.core.songcache), mixed over the memory,
  do that for the whole song; the memory matched the present call's notes too (at weight 1) until they came, and
  both together took up the call's runs more with the memory on than off (bench/session_memory.py, 3 seeds:
  motif reuse 0.87 against 0.70 off, cadence 0.72 against 0.83); the cache alone: 0.66 and 0.83, earlier phrases
  brought back 3.90x as often as with the memory off (3.55x).

An answer quotes an earlier call but does not play it back: after ``QUOTE_NOTES`` of its notes in a row, the
note that followed them there is ruled out (``quoted``), unless the present call plays that run on.

The constants were chosen with bench/session_memory.py (``--split validation``).

Bounded: at most ``phrases`` calls (64 at most by the settings table) of ``CALL_STEPS`` steps each, so a session
that runs for days holds a few hundred kilobytes; a step looks up one context of steps and one of notes per
remembered call and follows ``MATCHES`` occurrences of each at most (a riff played over and over would otherwise
make thousands).
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import TypeAlias

import numpy as np

from improvd.core.echo import SCALE, Echo
from improvd.core.encoding import HOLD, REST, is_pitch
from improvd.core.keys import WHITE_KEYS

IndexOf: TypeAlias = Callable[[str, int], int]  # a player's symbol, moved by a transposition: the model's index

MIN_ORDER = 3  # steps of context an earlier call must share with the answer's last steps
MAX_ORDER = 16
ALPHA = 1.0  # how much the memory doubts a context (the song cache's ALPHA, for the same role)
FADE = 0.7  # a call one phrase older counts this much as the one after it
CALL_STEPS = 256  # the steps of a call kept (its last ones): 16 bars of 4/4
MATCHES = 16  # earlier occurrences of a context looked at per step at most, the latest calls' first
NOTE_MIN = 2  # notes of context an earlier call must share with the answer's last notes, whatever their rhythm
NOTE_MAX = 8
DEGREES_BEYOND = 3  # semitones: a call moved by its own transposition and an octave further away moves by degrees
QUOTE_NOTES = 8  # an answer plays at most this many of an earlier call's notes in a row (``quoted``)


class _Call:
    """One remembered call: its symbols as played, the transposition it was answered in, and (once attuned) its
    indices and, for each ``MIN_ORDER``-step context, the positions that followed it."""

    def __init__(self, symbols: Sequence[str], shift: int, phase: int, bar: int) -> None:
        kept = symbols[-CALL_STEPS:]
        self.symbols = tuple(kept)
        self.shift = shift
        self.phase = (phase + len(symbols) - len(kept)) % bar  # the first kept step's place in its bar
        self.bar = bar
        self._is_note = tuple(is_pitch(symbol) for symbol in self.symbols)
        pitches = [int(symbol) for symbol in itertools.compress(self.symbols, self._is_note)]
        self._classes = {pitch % 12 for pitch in pitches}
        self.centre = sum(pitches) / len(pitches) if pitches else None  # its mean pitch as played
        self._heard_in: tuple[int, int] | None = None  # the transposition and degrees the indices are in
        self.indices: tuple[int, ...] = ()
        self.followers: dict[tuple[int, ...], list[int]] = {}
        self.notes: tuple[int, ...] = ()  # the indices of its notes, in order
        self.note_followers: dict[tuple[int, ...], list[int]] = {}  # NOTE_MIN notes -> the notes that followed

    def following(self, context: tuple[int, ...], step: int | None = None, beat: int | None = None) -> list[int]:
        """The positions of the symbols that followed ``context`` (``MIN_ORDER`` indices); with grid ``step`` and
        ``beat`` (steps), only those that fell at ``step``'s place in the beat (the bar lines are the grid's for
        both: ``phase``). Elsewhere in the beat the same steps say where a note came in another rhythm: proposed
        here, they moved the answer a 16th off the beat, and the LSTM, which hears no bar lines, went on there."""
        positions = self.followers.get(context, [])
        if step is None or not beat:
            return positions
        return [position for position in positions if (self.phase + position - step) % beat == 0]

    def unindex(self) -> None:
        """Forget the indices (another model's vocabulary): the next ``attune`` indexes the call afresh."""
        self._heard_in, self.indices, self.followers = None, (), {}
        self.notes, self.note_followers = (), {}

    def attune(self, shift: int, index_of: IndexOf, offset: int = 0, centre: float | None = None) -> None:
        """Index the call for an answer in transposition ``shift``, whose collection is the white keys moved by
        ``offset``: by ``shift`` (at the pitches played) when all its notes lie in that collection, else by its
        own; then by the whole octaves that bring its mean pitch nearest ``centre`` (the present call's, moved by
        ``shift``) and, moved by its own and still more than DEGREES_BEYOND semitones from it, by the degrees of
        the white keys' scale that do: it speaks in the present call's register."""
        own = not all((c + shift - offset) % 12 in WHITE_KEYS for c in self._classes)
        used, degrees = self.shift if own else shift, 0
        if centre is not None and self.centre is not None:
            used += 12 * round((centre - self.centre - used) / 12)
            gap = centre - self.centre - used
            degrees = round(gap * len(SCALE) / 12) if own and abs(gap) > DEGREES_BEYOND else 0
        if (used, degrees) == self._heard_in:
            return
        self._heard_in = (used, degrees)
        index = {symbol: index_of(_by_degrees(symbol, used - offset, degrees), used) for symbol in set(self.symbols)}
        self.indices = tuple(index[symbol] for symbol in self.symbols)
        self.followers = _followers(self.indices, MIN_ORDER)
        self.notes = tuple(itertools.compress(self.indices, self._is_note))
        self.note_followers = _followers(self.notes, NOTE_MIN)


class SessionMemory:
    """The player's last ``phrases`` calls (0: off, nothing kept), in the LSTM's indices of one vocabulary."""

    def __init__(self, phrases: int = 0) -> None:
        self._calls: deque[_Call] = deque(maxlen=max(phrases, 1))
        self._phrases = phrases
        self._vocabulary: tuple[str, ...] = ()
        self._is_note = np.zeros(0, bool)  # per index of the vocabulary: starts a note
        self._present: _Call | None = None  # the call being answered (``attune``), for its notes
        self.quiet = False  # while True, ``mix`` proposes no steps, only notes (the answer's last bar, the cadence's)
        self._bar: int | None = None  # the answer's bar (``attune``): calls in bars of another length give no steps

    def __len__(self) -> int:
        """The calls held now."""
        return len(self._calls)

    def keep(self, phrases: int) -> None:
        """Hold the last ``phrases`` calls from now on (the oldest beyond them forgotten); 0 forgets all."""
        self._phrases = phrases
        kept = list(self._calls)[-phrases:] if phrases else []
        self._calls = deque(kept, maxlen=max(phrases, 1))

    def clear(self) -> None:
        """Forget every call (``cmd/forget``)."""
        self._calls.clear()
        self._present = None

    def bind(self, vocabulary: Sequence[str]) -> None:
        """The model's vocabulary from now on. The calls are kept as played: in another vocabulary than the one
        they were indexed in, they propose nothing until the next ``attune`` indexes them in it."""
        if tuple(vocabulary) != self._vocabulary:
            self._vocabulary = tuple(vocabulary)
            self._is_note = np.array([is_pitch(symbol) for symbol in vocabulary])
            self._present = None
            for call in self._calls:
                call.unindex()

    def remember(self, call: Sequence[str], shift: int, phase: int, bar: int) -> None:
        """Keep the player's ``call`` (symbols, from its first note, which fell ``phase`` steps into a bar of
        ``bar`` steps), answered in transposition ``shift``; its closing silence is left out. Nothing is kept
        while the memory is off."""
        played = _played(call)
        if self._phrases and len(played) > MIN_ORDER:
            self._calls.append(_Call(played, shift, phase, bar))

    def attune(
        self, shift: int, index_of: IndexOf, offset: int = 0, present: Sequence[str] = (), bar: int | None = None
    ) -> None:
        """Hear the calls for an answer in transposition ``shift`` (its collection the white keys moved by
        ``offset``), ``index_of(symbol, shift)`` giving the model's index of a player's symbol moved by ``shift``
        (before an answer's first ``mix``), and the ``present`` call (its symbols) that answer is to: its notes are
        matched too, above the earlier calls'. With the answer's ``bar`` (steps), a call played in bars of
        another length proposes notes but no steps (its rhythm falls on other places of the bar)."""
        self._bar = bar
        known: dict[tuple[str, int], int] = {}  # a call holds few symbols, over and over

        def lookup(symbol: str, used: int) -> int:
            if (symbol, used) not in known:
                known[symbol, used] = index_of(symbol, used)
            return known[symbol, used]

        played = _played(present)
        self._present = _Call(played, shift, 0, 1) if self._phrases and len(played) > MIN_ORDER else None
        centre = None if self._present is None or self._present.centre is None else self._present.centre + shift
        for call in self._calls:
            call.attune(shift, lookup, offset, centre)
        if self._present is not None:
            self._present.attune(shift, lookup, offset)

    def quoted(self, notes: Sequence[int]) -> set[int]:
        """The notes that would make the answer's last notes (``notes``, indices) a run of more than QUOTE_NOTES of
        an earlier call's notes, less those the present call plays after the same notes: an answer quotes an
        earlier phrase, it does not play it back (a play test: an answer replayed a call of two phrases before for
        its first 20 notes, rhythm and all)."""
        tail = tuple(notes[-QUOTE_NOTES:])
        if len(tail) < QUOTE_NOTES:
            return set()
        found = {note for call in self._calls for note in _after(call, tail)}
        return found - set(_after(self._present, tail)) if found and self._present is not None else found

    def echoes(self, entry: int, bar: int, pitches: np.ndarray, key_offset: int = 0) -> list[Echo]:
        """The attuned calls of bars of ``bar`` steps laid over an answer whose first full bar starts at ``entry``
        (improvd.core.echo, its scale moved by ``key_offset``), the last call's echo at FADE of the present call's
        weight, each older one at FADE of the one after it; they speak to the answer's end."""
        echoes = []
        for age, call in enumerate(reversed(self._calls), start=1):
            if call.bar == bar and call.indices:
                steps = {call.phase + k: index for k, index in enumerate(call.indices)}
                echoes.append(Echo(steps, entry, bar, pitches, scale=FADE**age, key_offset=key_offset))
        return echoes

    def mix(
        self, probabilities: np.ndarray, history: Sequence[int], step: int | None = None, beat: int | None = None
    ) -> np.ndarray:
        """``probabilities`` with what followed the end of ``history`` (the song so far) in the remembered calls:
        its last steps (not while ``quiet``; with grid ``step``, the step to come, and ``beat``, its steps, only
        where what followed fell at the same place in the beat), then its last notes."""
        if not self._calls or len(history) < MIN_ORDER:
            return probabilities
        if not self.quiet:
            matches = self._match_lengths(history, step, beat)
            probabilities = interpolate(probabilities, matches, MIN_ORDER, MAX_ORDER, ALPHA)
        return self._mix_notes(probabilities, history)

    def _mix_notes(self, probabilities: np.ndarray, history: Sequence[int]) -> np.ndarray:
        """``probabilities`` with the notes that followed the last notes of ``history`` in the remembered calls,
        whatever their rhythm, mixed into the odds of which note starts (not of whether one does)."""
        is_note = self._is_note
        if len(is_note) != len(probabilities):
            return probabilities
        notes: list[int] = []
        for index in reversed(history[-CALL_STEPS:]):  # notes further back than a call's length are not looked for
            if is_note[index]:
                notes.append(index)
                if len(notes) == NOTE_MAX:
                    break
        notes.reverse()
        matches = self._note_matches(notes) if len(notes) >= NOTE_MIN else []
        mass = probabilities[is_note].sum()
        if not matches or mass <= 0:
            return probabilities
        base = np.where(is_note, probabilities, 0.0) / mass
        mixed = np.array(probabilities, dtype=np.float64)
        mixed[is_note] = mass * interpolate(base, matches, NOTE_MIN, NOTE_MAX, ALPHA)[is_note]
        return mixed

    def _note_matches(self, notes: list[int]) -> list[tuple[int, int, float]]:
        """(note that followed, notes of context shared with ``notes``' end, the call's weight) per match: the
        present call's weigh 1, the last earlier call's FADE, each older one's FADE of the one after it."""
        weighed = [(FADE**age, call) for age, call in enumerate(reversed(self._calls), start=1)]
        return _matches([(w, call.notes, call.note_followers) for w, call in weighed], tuple(notes), NOTE_MIN)

    def _match_lengths(
        self, history: Sequence[int], step: int | None = None, beat: int | None = None
    ) -> list[tuple[int, int, float]]:
        """(symbol that followed, steps of context shared with ``history``'s end, the call's weight) per match, from
        the calls in the answer's bars; with grid ``step`` (the step to come) and ``beat``, only the matches whose
        symbol fell at the same place in the beat (``_Call.following``)."""
        context = tuple(history[-MIN_ORDER:])
        calls = [
            (FADE**age, call.indices, {context: call.following(context, step, beat)})
            for age, call in enumerate(reversed(self._calls))
            if self._bar is None or call.bar == self._bar
        ]
        return _matches(calls, tuple(history[-MAX_ORDER:]), MIN_ORDER)


def _followers(sequence: tuple[int, ...], order: int) -> dict[tuple[int, ...], list[int]]:
    """Each context of ``order`` symbols in ``sequence`` -> the positions of the symbols that followed it."""
    followers: dict[tuple[int, ...], list[int]] = {}
    if len(sequence) <= order:
        return followers
    contexts = zip(*(sequence[k : len(sequence) - order + k] for k in range(order)), strict=True)
    for position, context in enumerate(contexts, start=order):
        followers.setdefault(context, []).append(position)
    return followers


def _after(call: _Call, tail: tuple[int, ...]) -> list[int]:
    """The notes that follow ``tail`` (at least NOTE_MIN notes) where the attuned ``call``'s notes play it."""
    positions = call.note_followers.get(tail[-NOTE_MIN:], ())
    return [call.notes[p] for p in positions if p >= len(tail) and call.notes[p - len(tail) : p] == tail]


def _matches(
    sequences: Sequence[tuple[float, Sequence[int], dict[tuple[int, ...], list[int]]]],
    tail: tuple[int, ...],
    shortest: int,
) -> list[tuple[int, int, float]]:
    """(what followed, how much of ``tail``'s end it followed, the sequence's weight) for each place where the last
    ``shortest`` of ``tail`` came before in ``sequences`` ((weight, sequence, the positions that followed each
    context of ``shortest``)), the latest places of the first sequences first, MATCHES at most."""
    context = tail[-shortest:]
    matches: list[tuple[int, int, float]] = []
    for weight, sequence, followers in sequences:
        for position in reversed(followers.get(context, ())[-(MATCHES - len(matches)) :]):
            length = shortest
            while length < len(tail) and position - length > 0 and sequence[position - length - 1] == tail[-length - 1]:
                length += 1
            matches.append((sequence[position], length, weight))
        if len(matches) >= MATCHES:
            break
    return matches


def _by_degrees(symbol: str, shift: int, degrees: int) -> str:
    """``symbol`` (a player's) moved so that, moved by ``shift`` onto the white keys, it lies ``degrees`` degrees of
    their scale from where it lay (a note off the scale moves as the scale's note below it); other symbols as
    they are."""
    if not degrees or not is_pitch(symbol):
        return symbol
    below = int(symbol) + shift
    while below % 12 not in WHITE_KEYS:
        below -= 1
    octaves, degree = divmod(SCALE.index(below % 12) + degrees, len(SCALE))
    pitch = int(symbol) + 12 * (below // 12 + octaves) + SCALE[degree] - below
    return str(pitch if pitch >= 0 else pitch % 12)


def _played(call: Sequence[str]) -> list[str]:
    """``call`` without its closing silence (the rest that ends it and the holds after)."""
    played = list(call)
    while played and played[-1] == HOLD:
        played.pop()
    if played and played[-1] == REST:
        played.pop()
    return played


ANY_NOTE = -1  # a match's symbol: a note starts, which one as the mixture has it (``interpolate``'s ``notes``)


def interpolate(
    probabilities: np.ndarray,
    matches: list[tuple[int, int, float]],
    low: int,
    high: int,
    alpha: float,
    notes: np.ndarray | None = None,
) -> np.ndarray:
    """Witten-Bell over contexts of ``low`` to ``high`` steps, shortest first: at order k, what followed the
    ``matches`` (symbol, steps of context shared with now, weight) sharing at least k steps takes the share
    n / (n + alpha t) of the mixture (n their weight in all, t the symbols among them); the rest keeps what came
    before. A match's symbol ANY_NOTE spreads its part over the ``notes`` (a bool mask of the symbols that start
    one) in proportion to the mixture before that order. The song cache (improvd.core.songcache) and the session
    memory both mix by it."""
    mixed = probabilities
    for k in range(low, high + 1):
        following: Counter[int] = Counter()
        for symbol, length, weight in matches:
            if length >= k:
                following[symbol] += weight
        if not following:
            break  # no longer context ending here was seen either
        total = sum(following.values())
        share = total / (total + alpha * len(following))
        before = mixed
        mixed = mixed * (1.0 - share)
        for index, count in following.items():
            if index == ANY_NOTE:
                spread = np.where(notes, before, 0.0)
                mixed += share * count / total * (spread / spread.sum() if spread.sum() > 0 else before)
            else:
                mixed[index] += share * count / total
    return mixed
