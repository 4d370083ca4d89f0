"""Counts of dropped or refused input, so the log says "dropped 3,000 X" once instead of 3,000 lines.

Hostile or broken input (malformed MIDI bytes, rejected MQTT messages) is
dropped and counted where it arrives; the daemon logs the counts in one line
at each statistics interval and at exit. A flood of one kind of event (a
thousand panics a second) is logged and published THROTTLE_BURST times a
second at most, the rest counted (``Throttle``).
"""

from __future__ import annotations

import math
import threading
from collections import Counter

THROTTLE_BURST = 4  # events of one kind logged and published in a THROTTLE_WINDOW at most; the rest are counted
THROTTLE_WINDOW = 1.0  # seconds


class Tally:
    """Thread-safe counts by reason; ``take`` returns and resets the counts since the last take."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self._counts[reason] += count

    def take(self) -> dict[str, int]:
        """The counts since the last take, largest first; empty when nothing was counted."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return dict(counts.most_common())


class Throttle:
    """At most ``burst`` of each kind pass in each ``window`` seconds; the rest are counted (one thread only)."""

    def __init__(self, burst: int = THROTTLE_BURST, window: float = THROTTLE_WINDOW) -> None:
        self._burst, self._window = burst, window
        self._opened: dict[str, float] = {}  # kind -> when its window opened
        self._passed: Counter[str] = Counter()  # ... how many passed in it
        self._held: Counter[str] = Counter()  # ... how many were held back in it
        self._ended: Counter[str] = Counter()  # held back in windows that have ended, not yet taken

    def allow(self, kind: str, now: float) -> bool:
        """Whether one ``kind`` at ``now`` passes; False: it is counted in ``held_back``."""
        if now - self._opened.get(kind, -math.inf) >= self._window:
            self._ended[kind] += self._held.pop(kind, 0)
            self._opened[kind], self._passed[kind] = now, 0
        if self._passed[kind] < self._burst:
            self._passed[kind] += 1
            return True
        self._held[kind] += 1
        return False

    def held_back(self, now: float) -> dict[str, int]:
        """The counts held back in windows that ended by ``now`` (``math.inf``: all), once each."""
        for kind in [kind for kind in self._held if now - self._opened[kind] >= self._window]:
            self._ended[kind] += self._held.pop(kind)
        ended, self._ended = self._ended, Counter()
        return {kind: count for kind, count in ended.items() if count}


def describe(counts: dict[str, int]) -> str:
    """One line for the log: ``3 malformed MIDI messages, 1 unterminated SysEx``."""
    return ", ".join(f"{count} {reason}" for reason, count in counts.items())
