"""The call's echo: folk tunes answer a phrase by coming back to it, bar for bar (AABB, ABAB, AA').

The song cache (improvd.core.songcache) brings back what followed a context already heard, but an answer that
starts after a pause has no such context: its first steps follow a silence the call never held. The echo
supplies the form instead: it lays the call over the answer bar line on bar line (the call's first full bar
on the answer's first, its pickup before that, the call repeated when the answer is longer) and proposes at
each answer step the call's symbol there, up to the answer's last bar, which is the cadence's (a tune comes
back to its opening, and then closes: AA'). A proposal multiplies the odds of the call's symbol, so the answer
takes up the call's note where the model finds it likely from where the answer stands, and seldom where it would
be a leap the model does not expect; its weight grows while the answer takes up the proposals at onsets and
shrinks while it goes its own way:

    odds of the call's symbol x (1 + ODDS * w),   w = WEIGHT * (agreed + 1) / (onsets + 2)

where ``onsets`` counts the answer steps so far at which the call or the answer starts a note and
``agreed`` those where both start the same one; an echo trusted fully (w = 1) gives its proposal alone.
WEIGHT was chosen on the validation split through the engine (``improvd-train evaluate`` reports motif reuse
beside the real continuations'). ODDS too: the echo had added a fixed share w of the probability to the call's
symbol, which pulled the answer into the call's notes by leaps (leaps of a 4th or 5th 0.118 of the intervals
against the real bars' 0.076, the LSTM alone 0.085, on 306 Essen calls outside the test split, 3 answers each);
multiplying the odds by 1 + 10 w, with ONSET_GAIN 2.0 (improvd.core.answer), made them 0.097 and took the
two-sample test there from 0.682 [0.655, 0.712] to 0.639 [0.609, 0.669] (AUC 0.754 to 0.681).

ODDS is the Essen model's; a model whose collection takes up its call more or less says so on its card
(``echo_odds``, read by ``Model.echo_odds``; ``improvd-train compare --calibrate`` chooses it: the odds at which the
model's answers take up as many bars of the call as its own tunes' bars 5-8 do, on its validation calls). British
dance tunes repeat bars of their call more than Essen's songs: a third of the real bars 5-8 of the British validation
split's 90 calls are a bar of the call, the British model's answers with ODDS 0.14, with its card's 27.8 about as
many as the real; style auto's two-sample test on those calls went from 0.672 to 0.633 (3 seeds a call), on Essen's
from 0.643 to 0.637 (models/README.md).

A proposal of a note follows the call's motion. Where the answer's last note is the note the call played before
this one (the answer is on the call's track), it is the call's own note; elsewhere it is the note the call's step
reaches from the answer's last note, by as many degrees of the white keys' scale (a sequence, as tunes repeat a
motif a step higher), and none where a note of the three is off the white keys. Proposing the call's own note
from anywhere pulled the answer back onto the call by a leap the call never made: on those 306 calls (3 seeds
each), steps were 0.457 of the intervals against the real bars' 0.491 and 4ths or 5ths 0.103 against 0.076; following
the call's motion, 0.476 and 0.093, with the song cache's ``when, not which`` (improvd.core.songcache) 0.486 and 0.084.

The session memory (improvd.core.recall) lays the player's earlier calls over the answer the same way, each an
echo of its own whose WEIGHT is scaled by how far back it was played (``scale``, below the present call's 1),
and speaking in the last bar too (a phrase comes back with its ending). The present call's echo carries them
(``earlier``) and mixes them at once with itself: each proposal multiplies its own symbol's odds by
1 + odds * w_i, the present echo's odds (those trusted fully, w_i = 1, give their proposals alone, in equal shares).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from improvd.core.keys import WHITE_KEYS

WEIGHT = 0.8
ODDS = 10.0  # a proposal's odds are multiplied by 1 + ODDS * its weight, unless the model's card says (``echo_odds``)
SCALE = sorted(WHITE_KEYS)  # the degrees a proposal is moved by, in the model's key


class Echo:
    """The call (vocabulary indices by grid step) laid over an answer whose first full bar starts at ``entry``."""

    def __init__(
        self,
        call: dict[int, int],
        entry: int,
        bar: int,
        pitches: np.ndarray,
        until: int | None = None,
        scale: float = 1.0,
        earlier: Sequence[Echo] = (),
        key_offset: int = 0,
        odds: float = ODDS,
    ) -> None:
        """``call`` maps grid steps to the LSTM's indices of the call's played steps (its trailing silence
        left out); ``pitches`` gives each index's MIDI pitch in the model's key (-1 for one that starts no note);
        from step ``until`` on the echo is silent. Its weight is WEIGHT times ``scale``; the echoes of ``earlier``
        calls are mixed with it. A note is moved by degrees of the white keys' scale moved up ``key_offset``
        semitones (the answer's transposition from the white keys: 3 where a model answers in C minor). A proposal
        multiplies its symbol's odds by 1 + ``odds`` * its weight (the answering model's ``Model.echo_odds``)."""
        self._call = call
        self._odds = odds
        self._is_onset = pitches >= 0
        self._pitches = pitches
        self._key_offset = key_offset
        self._index_of = {int(pitch): index for index, pitch in enumerate(pitches) if pitch >= 0}
        notes = sorted(at for at, index in call.items() if self._is_onset[index])
        self._before = {at: call[earlier] for earlier, at in itertools.pairwise(notes)}  # the call's note before
        first, last = min(call), max(call)
        bar_line = -(-first // bar) * bar  # the call's first full bar
        self._offset = entry - bar_line
        self._bar_line = bar_line
        self._span = max(1, -(-(last + 1 - bar_line) // bar)) * bar  # the call's bars, repeated
        self._first = first
        self._until = until
        self._scale = scale
        self._earlier = tuple(earlier)
        self._onsets = 0
        self._agreed = 0
        self._last: int | None = None  # the answer's last note's index

    def proposal(self, step: int) -> int | None:
        """The call's index laid over answer step ``step`` (a note moved to follow the call's motion from the
        answer's last note), or None where the call has none."""
        if self._until is not None and step >= self._until:
            return None
        at = step - self._offset
        if at >= self._bar_line:
            at = self._bar_line + (at - self._bar_line) % self._span
        proposed = self._call.get(at) if at >= self._first else None
        before = self._before.get(at)
        if proposed is None or before is None or self._last is None or self._last == before:
            return proposed
        return self._moved(before, proposed, self._last)

    def _moved(self, before: int, proposed: int, last: int) -> int | None:
        """The index of the note that the call's step from ``before`` to ``proposed`` reaches from ``last``, in
        degrees of the white keys' scale; None where one of the three is off them or the note is not in the
        vocabulary."""
        degrees = [_degree(int(self._pitches[index]) - self._key_offset) for index in (before, proposed, last)]
        if None in degrees:
            return None
        start, end, here = degrees
        octave, degree = divmod(here + end - start, len(SCALE))
        return self._index_of.get(12 * octave + SCALE[degree] + self._key_offset)

    def mix(self, probabilities: np.ndarray, step: int) -> np.ndarray:
        """``probabilities`` with this echo's and the earlier calls' proposals at ``step`` mixed in at once: each
        multiplies its symbol's odds by 1 + this echo's odds * its weight; those trusted fully (weight 1) give their
        proposals alone."""
        proposals = [
            (proposed, echo._weight()) for echo in self._echoes() if (proposed := echo.proposal(step)) is not None
        ]
        if not proposals:
            return probabilities
        full = [proposed for proposed, weight in proposals if weight >= 1.0]
        if full:
            alone = np.zeros(len(probabilities))
            np.add.at(alone, full, 1.0 / len(full))
            return alone
        mixed = np.array(probabilities, dtype=np.float64)
        for proposed, weight in proposals:
            mixed[proposed] *= 1.0 + self._odds * weight
        return mixed / mixed.sum()

    def _weight(self) -> float:
        return min(1.0, WEIGHT * self._scale * (self._agreed + 1) / (self._onsets + 2))

    def _echoes(self) -> tuple[Echo, ...]:
        return (self, *self._earlier)

    def heard(self, step: int, index: int) -> None:
        """The answer chose ``index`` at ``step``: count, for this echo and the earlier ones, whether it took up
        their onset; a note becomes the answer's last."""
        for echo in self._echoes():
            proposed = echo.proposal(step)
            if echo._is_onset[index]:
                echo._last = index
            if proposed is None or not (echo._is_onset[index] or echo._is_onset[proposed]):
                continue
            echo._onsets += 1
            echo._agreed += proposed == index

    def snapshot(self) -> tuple[tuple[int, int, int | None], ...]:
        return tuple((echo._onsets, echo._agreed, echo._last) for echo in self._echoes())

    def restore(self, snapshot: tuple[tuple[int, int, int | None], ...]) -> None:
        for echo, (onsets, agreed, last) in zip(self._echoes(), snapshot, strict=True):
            echo._onsets, echo._agreed, echo._last = onsets, agreed, last


def _degree(pitch: int) -> int | None:
    """``pitch``'s degree counted up the white keys' scale from MIDI 0, or None off the white keys."""
    octave, pitch_class = divmod(pitch, 12)
    return len(SCALE) * octave + SCALE.index(pitch_class) if pitch_class in WHITE_KEYS else None
