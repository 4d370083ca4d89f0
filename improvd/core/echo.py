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

The session memory (improvd.core.recall) lays the player's earlier calls over the answer the same way, each an
echo of its own whose WEIGHT is scaled by how far back it was played (``scale``, below the present call's 1),
and speaking in the last bar too (a phrase comes back with its ending). The present call's echo carries them
(``earlier``) and mixes them at once with itself: each proposal takes its own share w_i of the mixture
(``p = (1 - sum w) * p_model + sum w_i * [symbol = proposal i]``, the shares scaled to sum to 1 at most), so one
echo's share is not a share of what the one before it left.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WEIGHT = 0.8


class Echo:
    """The call (vocabulary indices by grid step) laid over an answer whose first full bar starts at ``entry``."""

    def __init__(
        self,
        call: dict[int, int],
        entry: int,
        bar: int,
        is_onset: np.ndarray,
        until: int | None = None,
        scale: float = 1.0,
        earlier: Sequence[Echo] = (),
    ) -> None:
        """``call`` maps grid steps to the LSTM's indices of the call's played steps (its trailing silence
        left out); ``is_onset`` tells which indices start a note; from step ``until`` on the echo is silent. Its
        weight is WEIGHT times ``scale``; the echoes of ``earlier`` calls are mixed with it."""
        self._call = call
        self._is_onset = is_onset
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

    def proposal(self, step: int) -> int | None:
        """The call's index laid over answer step ``step``, or None where the call has none."""
        if self._until is not None and step >= self._until:
            return None
        at = step - self._offset
        if at >= self._bar_line:
            at = self._bar_line + (at - self._bar_line) % self._span
        return self._call.get(at) if at >= self._first else None

    def mix(self, probabilities: np.ndarray, step: int) -> np.ndarray:
        """``probabilities`` with this echo's and the earlier calls' proposals at ``step`` mixed in at once."""
        proposals = [
            (proposed, echo._weight()) for echo in self._echoes() if (proposed := echo.proposal(step)) is not None
        ]
        if not proposals:
            return probabilities
        total = sum(weight for _, weight in proposals)
        scale = 1.0 / total if total > 1 else 1.0
        mixed = probabilities * (1.0 - total * scale)
        for proposed, weight in proposals:
            mixed[proposed] += weight * scale
        return mixed

    def _weight(self) -> float:
        return min(1.0, WEIGHT * self._scale * (self._agreed + 1) / (self._onsets + 2))

    def _echoes(self) -> tuple[Echo, ...]:
        return (self, *self._earlier)

    def heard(self, step: int, index: int) -> None:
        """The answer chose ``index`` at ``step``: count, for this echo and the earlier ones, whether it took up
        their onset."""
        for echo in self._echoes():
            proposed = echo.proposal(step)
            if proposed is None or not (echo._is_onset[index] or echo._is_onset[proposed]):
                continue
            echo._onsets += 1
            echo._agreed += proposed == index

    def snapshot(self) -> tuple[tuple[int, int], ...]:
        return tuple((echo._onsets, echo._agreed) for echo in self._echoes())

    def restore(self, snapshot: tuple[tuple[int, int], ...]) -> None:
        for echo, (onsets, agreed) in zip(self._echoes(), snapshot, strict=True):
            echo._onsets, echo._agreed = onsets, agreed
