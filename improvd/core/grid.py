"""The 16th-note grid the driver ticks, and the metre that groups its steps into bars.

The grid has no clock: the driver says where each boundary is (``advance``), from its internal tempo or
from MIDI clock pulses, so the same code serves real and simulated time. Bar lines fall every
``bar_steps(meter)`` steps from the grid origin: bar 1 begins at the origin (the daemon's start with the
internal clock, MIDI Start with MIDI clock, the first bar line of a file offline).
"""

from __future__ import annotations

from functools import lru_cache

METER_DENOMINATORS = (1, 2, 4, 8, 16)
MAX_BAR_STEPS = 64  # 4/1 or 16/4: longer bars are not bars a phrase can be answered in


def parse_meter(meter: str) -> tuple[int, int]:
    """(beats, beat unit) of a time signature such as ``"3/4"``; ValueError says what is allowed."""
    parsed = _parsed(str(meter).strip())
    if parsed is not None:
        return parsed
    raise ValueError(
        f"meter = {meter!r} is not allowed: use a time signature such as 4/4, 3/4 or 6/8 "
        f"(a whole number of 16ths a bar, at most {MAX_BAR_STEPS})"
    )


@lru_cache(maxsize=64)  # the engine asks for the same metre several times a tick
def _parsed(meter: str) -> tuple[int, int] | None:
    beats, _, unit = meter.partition("/")
    if beats.isdigit() and unit.isdigit() and int(unit) in METER_DENOMINATORS and int(beats) >= 1:
        steps = int(beats) * 16 // int(unit)
        if int(beats) * 16 % int(unit) == 0 and 1 <= steps <= MAX_BAR_STEPS:
            return int(beats), int(unit)
    return None


def bar_steps(meter: str) -> int:
    """16th-note steps in one bar of ``meter`` (16 in 4/4, 12 in 3/4 and 6/8, 8 in 2/4)."""
    beats, unit = parse_meter(meter)
    return beats * 16 // unit


def strong_positions(meter: str) -> frozenset[int]:
    """Steps from the bar line that carry a strong beat: the downbeat, and the bar's middle when the bar
    divides into two equal halves of whole beats (4/4 and 2/4: beat 3 or 2; 6/8: the second dotted quarter)."""
    beats, _ = parse_meter(meter)
    steps = bar_steps(meter)
    return frozenset({0, steps // 2}) if beats % 2 == 0 else frozenset({0})


def next_bar_line(step: int, meter: str) -> int:
    """The first bar line at or after ``step``."""
    bar = bar_steps(meter)
    return -(-step // bar) * bar


class Grid:
    """The open step's index and start time; player times snap to the nearest boundary."""

    def __init__(self) -> None:
        self.step = 0
        self.step_start = 0.0

    def advance(self, time: float) -> int | None:
        """A boundary at ``time``: the step just closed, or None for the origin itself (or a time not after it)."""
        if time <= self.step_start:
            return None
        closed = self.step
        self.step += 1
        self.step_start = time
        return closed

    def snap(self, time: float, step_seconds: float) -> int:
        """The step a player event at ``time`` counts on: the open one, or the next if past half-way."""
        return self.step + (1 if time - self.step_start >= step_seconds / 2 else 0)
