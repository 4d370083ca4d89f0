"""Keeping the daemon's other threads off the interpreter while the timing thread sends.

Python runs one thread at a time. A thread that wakes while the timing thread
spins towards a send asks for the interpreter lock and, after the switch
interval, takes it: the send then waits for that thread's work. So the other
threads keep a quiet window around each send (``QuietWindow``): from
QUIET_BEFORE ahead of its due time until QUIET_AFTER past it, the input reader
and the asyncio loop (through ``QuietSelector``) sleep instead of running
Python. The window is only ever that long: a stalled timing thread delays
nobody for more than QUIET_BEFORE + QUIET_AFTER.

Python's cyclic garbage collector runs in whichever thread's allocation
crosses its threshold and holds the interpreter for the whole collection, so
a thread already busy when the window opens could still start one inside it.
The timing thread holds the collector off (``CollectorPause``) from
COLLECTOR_AHEAD before each send until the send has gone.
"""

from __future__ import annotations

import asyncio
import gc
import math
import selectors
import time
from collections.abc import Callable

QUIET_BEFORE = 0.002  # seconds: the timing thread wakes SPIN_SECONDS (1 ms) ahead, and may wake up to 1 ms late
QUIET_AFTER = 0.0005  # seconds past the due time: the sends themselves, a few microseconds each
COLLECTOR_AHEAD = 0.004  # seconds: a collection begun just before this ends before the spin (the young and middle
# ones took 0.2-2.5 ms under an MQTT flood), and one begun later is held off


class QuietWindow:
    """The next send's due time, set by the timing thread, and the window around it that others keep quiet.

    One thread sets ``next_send`` (a float is replaced in one step: no lock); any thread reads it.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.next_send = math.inf  # the due time of the next queued message or clock pulse
        self._now = now
        self._sleep = sleep

    def until(self, now: float) -> float:
        """``now`` outside the window; inside it, the window's end."""
        due = self.next_send
        if due - QUIET_BEFORE <= now < due + QUIET_AFTER:
            return due + QUIET_AFTER
        return now

    def keep_off(self) -> None:
        """Sleep (off the interpreter) until the window around the next send has passed, if now is inside it."""
        now = self._now()
        end = self.until(now)
        if end > now:
            self._sleep(end - now)

    def near(self) -> bool:
        """Now is inside the window: a thread handing on a flood of work stops here and goes on after it."""
        now = self._now()
        return self.until(now) > now


class CollectorPause:
    """Python's automatic garbage collection held off while a send is near; used by the timing thread only.

    ``hold(True)`` disables the collector, ``hold(False)`` enables it again: garbage made meanwhile waits for the
    first allocation after the send. A collector that was already disabled is left as it was.
    """

    def __init__(self) -> None:
        self.near = False
        self._disabled = False  # the collector was enabled, and this pause disabled it

    def hold(self, near: bool) -> None:
        """Hold the collector off while ``near`` is true, and let it run again once it is not."""
        if near == self.near:
            return
        self.near = near
        if near and gc.isenabled():
            gc.disable()
            self._disabled = True
        elif not near and self._disabled:
            gc.enable()
            self._disabled = False


class QuietSelector(selectors.DefaultSelector):
    """The asyncio loop's selector: after each wait for I/O or a timer it keeps off through a send's window, so
    the loop's callbacks (MQTT, port watching, logging) run between sends, never during one."""

    def __init__(self, window: QuietWindow) -> None:
        super().__init__()
        self._window = window

    def select(self, timeout: float | None = None) -> list:
        ready = super().select(timeout)
        self._window.keep_off()
        return ready


def quiet_loop(window: QuietWindow) -> asyncio.AbstractEventLoop:
    """The daemon's asyncio loop: its callbacks run between the timing thread's sends (``QuietSelector``)."""
    return asyncio.SelectorEventLoop(QuietSelector(window))
