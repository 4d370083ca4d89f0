"""The call's echo: folk tunes answer a phrase by coming back to it, bar for bar (AABB, ABAB, AA').

The song cache (improvd.core.songcache) brings back what followed a context already heard, but an answer that
starts after a pause has no such context: its first steps follow a silence the call never held. The echo
supplies the form instead: it lays the call over the answer bar line on bar line (the call's first full bar
on the answer's first, its pickup before that, the call repeated when the answer is longer) and proposes at
each answer step the call's symbol there, up to the answer's last bar, which is the cadence's (a tune comes
back to its opening, and then closes: AA'). Its weight grows while the answer takes up the proposals at
onsets and shrinks while it goes its own way:

    p = (1 - w) * p_model + w * [symbol = call's symbol],   w = WEIGHT * (agreed + 1) / (onsets + 2)

where ``onsets`` counts the answer steps so far at which the call or the answer starts a note and
``agreed`` those where both start the same one. WEIGHT was chosen on the validation split through the
engine (``improvd-train evaluate`` reports motif reuse beside the real continuations').
"""

from __future__ import annotations

import numpy as np

WEIGHT = 0.8


class Echo:
    """The call (vocabulary indices by grid step) laid over an answer whose first full bar starts at ``entry``."""

    def __init__(
        self, call: dict[int, int], entry: int, bar: int, is_onset: np.ndarray, until: int | None = None
    ) -> None:
        """``call`` maps grid steps to the LSTM's indices of the call's played steps (its trailing silence
        left out); ``is_onset`` tells which indices start a note; from step ``until`` on the echo is silent."""
        self._call = call
        self._is_onset = is_onset
        first, last = min(call), max(call)
        bar_line = -(-first // bar) * bar  # the call's first full bar
        self._offset = entry - bar_line
        self._bar_line = bar_line
        self._span = max(1, -(-(last + 1 - bar_line) // bar)) * bar  # the call's bars, repeated
        self._first = first
        self._until = until
        self._onsets = 0
        self._agreed = 0

    def proposal(self, step: int) -> int | None:
        """The call's index laid over answer step ``step``, or None where the call has none."""
        if self._until is not None and step >= self._until:
            return None
        at = step - self._offset
        if at >= self._bar_line:
            at = self._bar_line + (at - self._bar_line) % self._span
        return self._call.get(at) if at >= self._first else None

    def mix(self, probabilities: np.ndarray, step: int) -> np.ndarray:
        proposed = self.proposal(step)
        if proposed is None:
            return probabilities
        weight = min(1.0, WEIGHT * (self._agreed + 1) / (self._onsets + 2))
        mixed = probabilities * (1.0 - weight)
        mixed[proposed] += weight
        return mixed

    def heard(self, step: int, index: int) -> None:
        """The answer chose ``index`` at ``step``: count whether it took up the call's onset."""
        proposed = self.proposal(step)
        if proposed is None or not (self._is_onset[index] or self._is_onset[proposed]):
            return
        self._onsets += 1
        self._agreed += proposed == index

    def snapshot(self) -> tuple[int, int]:
        return self._onsets, self._agreed

    def restore(self, snapshot: tuple[int, int]) -> None:
        self._onsets, self._agreed = snapshot
