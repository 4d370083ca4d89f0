"""Counts of dropped or refused input, so the log says "dropped 3,000 X" once instead of 3,000 lines.

Hostile or broken input (malformed MIDI bytes, rejected MQTT messages) is
dropped and counted where it arrives; the daemon logs the counts in one line
at each statistics interval and at exit.
"""

from __future__ import annotations

import threading
from collections import Counter


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


def describe(counts: dict[str, int]) -> str:
    """One line for the log: ``3 malformed MIDI messages, 1 unterminated SysEx``."""
    return ", ".join(f"{count} {reason}" for reason, count in counts.items())
