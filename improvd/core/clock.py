"""Where the grid steps fall: the internal clock (from bpm) or a follower of MIDI clock on the input.

A grid step is a 16th note: 6 MIDI clock pulses at 24 pulses per quarter.
Both clocks are pure (times in, boundaries out); the daemon's timing thread
drives them and ticks the engine at each boundary they give.
"""

from __future__ import annotations

from dataclasses import dataclass

PULSES_PER_QUARTER = 24
PULSES_PER_STEP = PULSES_PER_QUARTER // 4
MIN_BPM, MAX_BPM = 20.0, 300.0
SMOOTHING = 0.1  # weight of a new pulse interval in the tempo average
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
    step boundary. The tempo is an exponential average of pulse intervals.
    Pulses while stopped still update the tempo but tick nothing.
    """

    def __init__(self, smoothing: float = SMOOTHING) -> None:
        self.smoothing = smoothing
        self.running = False
        self.interval: float | None = None  # smoothed seconds per pulse
        self._pulses = 0  # pulses since the origin
        self._awaiting_origin = False
        self._last_pulse: float | None = None

    @property
    def bpm(self) -> float | None:
        if self.interval is None:
            return None
        return min(MAX_BPM, max(MIN_BPM, 60.0 / (self.interval * PULSES_PER_QUARTER)))

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
        last, self._last_pulse = self._last_pulse, time
        if last is None:
            return
        interval = time - last
        if interval <= 0 or interval > GAP_SECONDS:
            return
        if self.interval is None:
            self.interval = interval
        else:
            self.interval += self.smoothing * (interval - self.interval)
