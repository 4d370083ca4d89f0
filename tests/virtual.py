"""Virtual time for the daemon's timing thread: sleeping and waiting move the clock instead of waiting for it."""

from __future__ import annotations

import threading


class VirtualTime:
    """A clock that only moves when the code under test sleeps or waits (improvd.daemon.timing.SystemTime's shape)."""

    def __init__(self, start: float = 0.0) -> None:
        self.time = start

    def now(self) -> float:
        return self.time

    def sleep_until(self, deadline: float) -> None:
        self.time = max(self.time, deadline)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """True at once when ``event`` is set; else the whole timeout passes."""
        if event.is_set():
            return True
        self.time += timeout
        return False
