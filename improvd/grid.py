"""The 16th-note grid the driver ticks: which step is open, and which step a player's time counts on.

The grid has no clock: the driver says where each boundary is (``advance``), from its internal tempo or
from MIDI clock pulses, so the same code serves real and simulated time.
"""

from __future__ import annotations


class Grid:
    """The open step's index and start time; player times snap to the nearest boundary."""

    def __init__(self) -> None:
        self.step = 0
        self.step_start = 0.0

    def start(self, time: float) -> None:
        """Step 0 begins at ``time``."""
        self.step = 0
        self.step_start = time

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
