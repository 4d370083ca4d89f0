"""The player's touch: how loud and how early or late each melody onset of the call was, by place in the bar.

The engine records every melody onset of the call (its grid step, velocity and the time it was played off
that step, in steps); an answer note then takes its velocity from the call's level and the call's accent
at the same metric place (downbeat, beat, 8th, 16th), and, with ``groove = "follow"``, the call's mean
timing off the grid at the same place in the beat (swing, laid-back 8ths), never more than ``MAX_SHIFT``
of a step. Only the last ``MEMORY`` onsets count, so the answer follows the call's recent dynamics.
"""

from __future__ import annotations

from collections import deque
from statistics import fmean

from improvd.core.grid import bar_steps, parse_meter

MEMORY = 32  # onsets remembered: two bars of 16ths, four of 8ths
LEVEL_ONSETS = 8  # the answer's level: the mean velocity of the call's last onsets
MAX_SHIFT = 0.25  # steps: the groove never moves a note by more than a quarter of a 16th
DEFAULT_VELOCITY = 80


def beat_steps(meter: str) -> int:
    """16ths in one beat: a dotted quarter in compound metres (6/8, 9/8, 12/8), else the denominator's note."""
    beats, unit = parse_meter(meter)
    if unit == 8 and beats % 3 == 0 and beats > 3:
        return 6
    return max(1, 16 // unit)


def metric_place(position: int, meter: str) -> int:
    """0 for the downbeat, 1 for another beat, 2 for an 8th between beats, 3 for a 16th."""
    return _place(position, bar_steps(meter), beat_steps(meter))


def _place(position: int, bar: int, beat: int) -> int:
    if position % bar == 0:
        return 0
    if position % beat == 0:
        return 1
    return 2 if position % 2 == 0 else 3


class Touch:
    """The call's melody onsets: (grid step, velocity, deviation in steps), the newest last."""

    def __init__(self) -> None:
        self._onsets: deque[tuple[int, int, float]] = deque(maxlen=MEMORY)
        self._velocities: dict[tuple[int, str], int] = {}  # velocity's answers by (place, meter), until a record

    def record(self, step: int, velocity: int, deviation: float) -> None:
        """A melody onset on grid step ``step``, played ``deviation`` steps after it (negative: before)."""
        self._onsets.append((step, velocity, deviation))
        self._velocities.clear()

    def lateness(self) -> float:
        """How late the call's onsets land after their grid lines: the latest of those remembered, in steps (0 for
        none played late)."""
        return max([0.0, *(d for _, _, d in self._onsets)])

    def velocity(self, step: int, meter: str) -> int:
        """An answer note's velocity at grid step ``step``: the call's level plus its accent at that place."""
        if not self._onsets:
            return DEFAULT_VELOCITY
        bar, beat = bar_steps(meter), beat_steps(meter)
        place = _place(step, bar, beat)
        known = self._velocities.get((place, meter))
        if known is not None:  # an answer asks for each of its notes, the call's onsets unchanged
            return known
        recent = list(self._onsets)[-LEVEL_ONSETS:]
        level = fmean(v for _, v, _ in recent)
        mean = fmean(v for _, v, _ in self._onsets)
        same = [v for s, v, _ in self._onsets if _place(s, bar, beat) == place]
        accent = fmean(same) - mean if same else 0.0
        velocity = self._velocities[(place, meter)] = max(1, min(127, round(level + accent)))
        return velocity

    def shift(self, step: int, meter: str) -> float:
        """The call's mean deviation at ``step``'s place in the beat, bounded by MAX_SHIFT (0 with no such onset)."""
        beat = beat_steps(meter)
        same = [d for s, _, d in self._onsets if s % beat == step % beat]
        if not same:
            return 0.0
        return max(-MAX_SHIFT, min(MAX_SHIFT, fmean(same)))
