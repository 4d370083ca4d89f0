"""Where the grid steps fall: the internal clock (from bpm) or a follower of MIDI clock on the input.

A grid step is a 16th note: 6 MIDI clock pulses at 24 pulses per quarter.
Both clocks are pure (times in, boundaries out); the daemon's timing thread
drives them and ticks the engine at each boundary they give.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

PULSES_PER_QUARTER = 24
PULSES_PER_STEP = PULSES_PER_QUARTER // 4
MIN_BPM, MAX_BPM = 20.0, 300.0
TEMPO_WINDOW = PULSES_PER_QUARTER  # the tempo is read over the last beat of pulses
GAP_SECONDS = 0.5  # a longer pause between pulses starts the tempo estimate afresh


class InternalClock:
    """Step boundaries from the tempo; a tempo change applies from the next step on."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.next_boundary = origin

    def advance(self, next_boundary: float) -> float:
        """Move past the boundary just ticked to ``next_boundary``, where the engine's grid puts it (a step on at
        its tempo, or on the player's grid once it follows the player); returns it."""
        if next_boundary <= self.next_boundary:
            raise ValueError(f"the next boundary {next_boundary} is not after {self.next_boundary}")
        self.next_boundary = next_boundary
        return self.next_boundary

    @staticmethod
    def pulses(boundary: float, step_seconds: float) -> list[float]:
        """Times of the 6 MIDI clock pulses of the step that starts at ``boundary`` (for clock_out)."""
        return [boundary + i * step_seconds / PULSES_PER_STEP for i in range(PULSES_PER_STEP)]


@dataclass(frozen=True)
class ClockAction:
    """What the follower asks of the engine: ``start`` (grid origin), ``tick`` (a boundary) or ``stop``."""

    name: str
    time: float


class MidiClockFollower:
    """Follows MIDI Start, Stop, Continue and clock pulses.

    The first pulse after Start is the grid origin, every 6th pulse after it a
    step boundary. The tempo is the least-squares slope of the last beat of
    pulse times (TEMPO_WINDOW intervals): a transport's period moves it by
    about 0.1%, a late pulse by a hundredth of its lateness per pulse interval.
    Pulses while stopped still update the tempo but tick nothing.
    """

    def __init__(self) -> None:
        self.running = False
        self._pulses = 0  # pulses since the origin
        self._awaiting_origin = False
        self._window: deque[float] = deque(maxlen=TEMPO_WINDOW + 1)
        self._interval: float | None = None  # seconds per pulse, kept through a pause

    @property
    def bpm(self) -> float | None:
        interval = self._slope() if len(self._window) > 1 else self._interval
        if interval is None or interval <= 0:
            return None
        return min(MAX_BPM, max(MIN_BPM, 60.0 / (interval * PULSES_PER_QUARTER)))

    def start(self, time: float) -> list[ClockAction]:
        self.running, self._awaiting_origin, self._pulses = True, True, 0
        return []

    def continue_(self, time: float) -> list[ClockAction]:
        """Continue: carry on counting from where Stop left the song."""
        if self.running:
            return []
        self.running = True
        return []

    def stop(self, time: float) -> list[ClockAction]:
        if not self.running:
            return []
        self.running = False
        return [ClockAction("stop", time)]

    def pulse(self, time: float) -> list[ClockAction]:
        self._update_tempo(time)
        if not self.running:
            return []
        if self._awaiting_origin:
            self._awaiting_origin = False
            return [ClockAction("start", time)]
        self._pulses += 1
        if self._pulses % PULSES_PER_STEP == 0:
            return [ClockAction("tick", time)]
        return []

    def _update_tempo(self, time: float) -> None:
        if self._window and not 0 <= time - self._window[-1] <= GAP_SECONDS:
            if len(self._window) > 1:
                self._interval = self._slope()  # a pause (or a clock gone back) starts the window afresh
            self._window.clear()
        self._window.append(time)

    def _slope(self) -> float:
        """Seconds per pulse: the least-squares line through the window's pulse times."""
        count = len(self._window)
        middle = (count - 1) / 2
        spread = sum((k - middle) ** 2 for k in range(count))
        return sum((k - middle) * time for k, time in enumerate(self._window)) / spread
