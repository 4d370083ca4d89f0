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
count, so a daemon left running for hours holds bounded memory.

A context tells which note comes next only if it reaches back to the last
note: six steps of holds (or rests) match wherever the song held any note
that long, and the note that followed there is a leap from the note held now.
Such a shorter match says when a note starts, not which: its part goes to the
notes in proportion to the mixture underneath (``ANY_NOTE``,
improvd.core.recall). On 306 Essen calls outside the test split, answered
through the engine (3 seeds each), steps were 0.457 of the answers' intervals
against the real bars' 0.491 and 4ths or 5ths 0.103 against 0.076, 0.469 and
0.093 with this, and the two-sample test 0.623 to 0.603.

Nor does such a shorter match say when where the note it matched began elsewhere in the beat: it counts only a
whole number of beats back (the song's steps are the grid's, one a step), when the answer's drawing says the beat
(``mix``'s ``beat``). Six holds match wherever the song held a note that long, from any 16th of a beat: after a
long note of the answer's, one begun elsewhere in the beat proposed the next note a 16th off the beat, and the
LSTM, which hears no bar lines and had lost count in the long note, went on from there, the answer a 16th after
the beat for bars (tests/test_answer.py; answering 100 16-bar Essen calls with 16ths, 2 seeds each, 3 bars of 1632
had every note a 16th off the beat, none of 1619 with this). A context that reaches back to a note is the player's
own rhythm, displaced or not, and counts wherever it came.

A tune also repeats a line with its rhythm varied (dotted where it was even), and then no context of steps
matches. So the cache also matches notes, whatever their rhythm (as the session memory does for earlier calls):
the longest run of the song's last notes (up to ``NOTE_MAX``) that came before, among the last ``MATCHES``
places that followed the last note, and the notes that followed that run there take a share of the odds of
which note starts (the odds of whether one does stay as they are), over the contexts of steps. A run of ``n``
notes takes ``NOTE_TRUST / (1 + exp((NOTE_HALF - n) / NOTE_SLOPE))``: two notes recur by chance in any tune,
a long run seldom does (Witten-Bell over note contexts, which trusts a context by how often it was seen, not by
how long it is, gave 1.896 at best). Chosen on the validation split (bench/songcache_bits.py: the LSTM run
once, variants scored against its output): bits per onset pitch 1.920 to 1.888 (bits per step 0.943 to
0.933); the same blend under the contexts of steps 1.889; ``ALPHA`` and ``MIN_ORDER`` tuned again with it stay
(8 to 32, 4 to 8: 1.888 at best). These added next to nothing there: contexts of intervals (a line moved to
another degree; with the note runs, blended by weights fitted on validation itself, 1.879), the song's own
pitch counts (worse), the notes sounding 1, 2, 4 or 8 bars before (1.914 at best over the steps' contexts
alone), the LSTM's output layer adapted to the song as it goes (1.887).
The note runs fall silent in the answer's last bar (``quiet``), the cadence's: speaking there, they led the answer
on past it (293 Essen test calls, 5 answers each: the last note 2.95 16ths, 3.06 without the note runs, 3.01
silent there; the real bars' 3.36).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Sequence

import numpy as np

from improvd.core.recall import ANY_NOTE, SessionMemory, interpolate

MIN_ORDER = 6  # steps of context; shorter contexts repeat by chance in any tune
MAX_ORDER = 24
ALPHA = 16.0  # how much the cache doubts a context: larger trusts the LSTM more
WINDOW = 1024  # steps remembered (64 bars of 4/4)
NOTE_MAX = 10  # notes of context, whatever their rhythm, matched at most
NOTE_TRUST = 0.45  # the share of the notes' odds the longest note context takes at most
NOTE_HALF = 4.0  # notes of context at which it takes half of NOTE_TRUST
NOTE_SLOPE = 1.3  # how many notes of context longer it takes for that share to grow by e
MATCHES = 16  # earlier occurrences of the last two notes followed per note at most, the latest first


class SongCache:
    """The last ``WINDOW`` symbols of one song, indexed by the ``MIN_ORDER`` steps before each; ``song_end`` starts
    a new song.

    Rather than a table of every context up to ``MAX_ORDER`` (megabytes for a
    full window), it keeps the symbols and, for each ``MIN_ORDER``-step context,
    where it occurred; ``mix`` extends those matches backwards to find the
    longer contexts. Same figures, a few hundred kilobytes at most.
    """

    def __init__(self, song_end: int, is_onset: np.ndarray, memory: SessionMemory | None = None) -> None:
        """``is_onset`` tells which indices start a note; ``memory``, the player's earlier calls
        (improvd.core.recall), is mixed in under this song."""
        self.song_end = song_end
        self._is_onset = is_onset
        self._onsets = np.asarray(is_onset, np.float64)
        self._memory = memory
        self._quiet = False
        self.reset()

    @property
    def quiet(self) -> bool:
        """Whether the song's note runs and the session memory's contexts of steps are silent (the answer's
        cadence bar: a line played before would lead on past the cadence)."""
        return self._quiet

    @quiet.setter
    def quiet(self, quiet: bool) -> None:
        self._quiet = quiet
        if self._memory is not None:
            self._memory.quiet = quiet

    def reset(self) -> None:
        """A new song: forget everything."""
        self._history: list[int] = []
        self._offset = 0  # the song position of _history[0]
        self._followers: dict[tuple[int, ...], list[int]] = {}  # MIN_ORDER context -> positions that followed it
        self._counted: deque[tuple[int, tuple[int, ...]]] = deque()  # (position, context), oldest first
        self._notes: list[int] = []  # the song's notes (indices), whatever their rhythm
        self._notes_offset = 0  # the note position of _notes[0]
        self._note_followers: dict[int, list[int]] = {}  # a note -> the note positions of those that followed it
        self._notes_counted: deque[tuple[int, int]] = deque()  # (step position of a follower, the note it followed)
        self._note_blend: tuple[np.ndarray, np.ndarray] | None = None  # _blend_notes, until the notes change
        self._blend_known = False

    def add(self, index: int, count: bool = True) -> None:
        """Append ``index`` to the song, counted as following its context unless ``count`` is False.

        ``count=False`` only moves the context on: for symbols improvd generates
        itself, which would otherwise feed back until an answer loops on itself.
        """
        if index == self.song_end:
            self.reset()
            return
        position = self._offset + len(self._history)
        if self._is_onset[index]:
            self._add_note(index, position, count)
        if count and len(self._history) >= MIN_ORDER:
            context = tuple(self._history[-MIN_ORDER:])
            self._followers.setdefault(context, []).append(position)
            self._counted.append((position, context))
        self._history.append(index)
        while self._counted and self._counted[0][0] <= position - WINDOW:
            _, context = self._counted.popleft()
            self._followers[context].pop(0)  # short lists: lighter than a deque each
            if not self._followers[context]:
                del self._followers[context]
        if len(self._history) > 2 * (WINDOW + MAX_ORDER):  # keep what the remaining matches can reach
            drop = len(self._history) - (WINDOW + MAX_ORDER)
            del self._history[:drop]
            self._offset += drop

    def _add_note(self, index: int, position: int, count: bool) -> None:
        """Append the note ``index`` (at step ``position``) to the song's notes, counted as following the last
        one unless ``count`` is False; notes that followed more than WINDOW steps ago are forgotten."""
        notes = self._notes
        if count and notes:
            self._note_followers.setdefault(notes[-1], []).append(self._notes_offset + len(notes))
            self._notes_counted.append((position, notes[-1]))
        notes.append(index)
        while self._notes_counted and self._notes_counted[0][0] <= position - WINDOW:
            _, note = self._notes_counted.popleft()
            self._note_followers[note].pop(0)
            if not self._note_followers[note]:
                del self._note_followers[note]
        if len(notes) > 2 * (WINDOW + NOTE_MAX):
            drop = len(notes) - (WINDOW + NOTE_MAX)
            del notes[:drop]
            self._notes_offset += drop
        self._blend_known = False

    def quoted(self, notes: Sequence[int]) -> set[int]:
        """The notes the session memory rules out after the answer's last ``notes`` (``SessionMemory.quoted``)."""
        return self._memory.quoted(notes) if self._memory is not None else set()

    def snapshot(self) -> tuple:
        """A copy of the whole state, to restore after trying a continuation."""
        followers = {context: list(positions) for context, positions in self._followers.items()}
        note_followers = {note: list(positions) for note, positions in self._note_followers.items()}
        notes = (list(self._notes), self._notes_offset, note_followers, deque(self._notes_counted))
        return list(self._history), self._offset, followers, deque(self._counted), notes

    def restore(self, snapshot: tuple) -> None:
        history, self._offset, followers, counted, notes = snapshot
        self._history = list(history)
        self._followers = {context: list(positions) for context, positions in followers.items()}
        self._counted = deque(counted)
        kept, self._notes_offset, note_followers, notes_counted = notes
        self._notes = list(kept)
        self._note_followers = {note: list(positions) for note, positions in note_followers.items()}
        self._notes_counted = deque(notes_counted)
        self._blend_known = False

    def mix(self, probabilities: np.ndarray, step: int | None = None, beat: int | None = None) -> np.ndarray:
        """The LSTM's ``probabilities`` with what followed the current contexts earlier in the session's
        remembered calls, then (over that) earlier in this song. With ``beat`` (steps in a beat) and ``step`` (the
        grid step the probabilities are for), holds alone count only where what followed them fell at the same
        place in the beat (``_match_lengths``), and the earlier calls' steps likewise (improvd.core.recall)."""
        mixed = np.asarray(probabilities, np.float64)
        if self._memory is not None:
            mixed = self._memory.mix(mixed, self._history, step, beat)
        reach = self._since_note()
        matches = [
            (ANY_NOTE if self._is_onset[symbol] and length < reach else symbol, length, 1.0)
            for symbol, length in self._match_lengths(reach, beat)
        ]
        if matches:
            mixed = interpolate(mixed, matches, MIN_ORDER, MAX_ORDER, ALPHA, self._is_onset)
        return self._mix_notes(mixed)

    def _mix_notes(self, probabilities: np.ndarray) -> np.ndarray:
        """``probabilities`` with the notes that followed the song's longest run of notes (whatever their rhythm)
        that came before, mixed into the odds of which note starts (not of whether one does)."""
        if self._quiet:
            return probabilities
        if not self._blend_known:
            self._note_blend, self._blend_known = self._blend_notes(), True
        if self._note_blend is None:
            return probabilities
        keep, proposed = self._note_blend
        return probabilities * keep + float(probabilities @ self._onsets) * proposed

    def _blend_notes(self) -> tuple[np.ndarray, np.ndarray] | None:
        """What ``_mix_notes`` multiplies the odds by and what it adds in proportion to the odds that a note
        starts, for the song's notes as they are now (None: no earlier run of them)."""
        length, following = self._note_matches()
        if not length:
            return None
        share = NOTE_TRUST / (1.0 + math.exp((NOTE_HALF - length) / NOTE_SLOPE))
        proposed = np.zeros(len(self._onsets))
        total = sum(following.values())
        for note, count in following.items():
            proposed[note] = share * count / total
        return 1.0 - share * self._onsets, proposed

    def _note_matches(self) -> tuple[int, Counter[int]]:
        """The most notes (up to NOTE_MAX) the song's last notes share with an earlier place among the last
        MATCHES that followed the last note, and how often each note followed such places (0 and none: no match)."""
        notes = self._notes
        end = len(notes)
        best, following = 0, Counter[int]()
        for position in self._note_followers.get(notes[-1], [])[-MATCHES:] if notes else ():
            at = position - self._notes_offset
            length = 1
            while length < NOTE_MAX and at - length > 0 and notes[at - length - 1] == notes[end - length - 1]:
                length += 1
            if length > best:
                best, following = length, Counter()
            if length == best:
                following[notes[at]] += 1
        return best, following

    def _since_note(self) -> int:
        """The steps of context that reach back to the song's last note (MAX_ORDER + 1 when none does)."""
        history = self._history
        for back in range(1, min(len(history), MAX_ORDER) + 1):
            if self._is_onset[history[-back]]:
                return back
        return MAX_ORDER + 1

    def _match_lengths(self, reach: int = MAX_ORDER + 1, beat: int | None = None) -> list[tuple[int, int]]:
        """(symbol that followed, steps of context it shares with now, up to MAX_ORDER) for each earlier match; with
        ``beat``, one that does not reach back to the last note (``reach`` steps: ``_since_note``) only a whole
        number of beats back (the song's steps are the grid's, one a step)."""
        history = self._history
        end = len(history)
        if end < MIN_ORDER:
            return []
        matches = []
        now = self._offset + end  # the song position of the step to come
        for position in self._followers.get(tuple(history[-MIN_ORDER:]), ()):
            at = position - self._offset
            length = MIN_ORDER
            while length < MAX_ORDER and at - length > 0 and history[at - length - 1] == history[end - length - 1]:
                length += 1
            if length < reach and beat and (now - position) % beat:
                continue  # holds alone, elsewhere in the beat: the note that followed them there is off the beat here
            matches.append((history[at], length))
        return matches
