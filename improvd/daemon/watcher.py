"""The port watcher: one long-lived thread that looks at the MIDI ports every half second.

A look (the JACK probe and server checks, lost and returned ports: ``MidiPorts.probe`` and ``poll``) is a round trip
to the MIDI system, seconds on a busy JACK server, so it runs neither on the asyncio loop nor on the timing thread.
It used to run in a thread started for each look: about 0.3-1% of a core while idle, for thread starts. One thread
now makes every look, and wakes the loop only when a look found something.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from improvd.daemon.osthread import name_this_thread


class PortWatcher:
    """Calls ``look()`` every ``interval`` seconds in a thread of its own (``improvd-ports``).

    ``report(outcome)``, in the watcher's thread, gets what a look returned when it is not empty, or the exception
    it raised, after which the watcher ends (the daemon cannot go on). ``keep_off()`` runs before each look (the
    timing thread's quiet window). A look that hangs (a libjack call that waits for a wedged server) holds only this
    thread: ``looking_for`` says for how long, and ``stop`` abandons it (a daemon thread never holds the exit).
    """

    def __init__(
        self,
        look: Callable[[], Any],
        report: Callable[[Any], None],
        interval: float,
        keep_off: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._look, self._report, self._interval = look, report, interval
        self._keep_off, self._clock = keep_off, clock
        self._stopping = threading.Event()
        self._since: float | None = None  # when the look under way began
        self._thread = threading.Thread(target=self._run, name="improvd-ports", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def looking_for(self) -> float:
        """Seconds the look under way has taken so far (0 between looks)."""
        since = self._since
        return 0.0 if since is None else self._clock() - since

    def stop(self, grace: float) -> bool:
        """No look begins from now on; one under way is waited for, ``grace`` seconds at most. True when the
        thread has ended, False when a look still hangs (it is abandoned)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(grace)
        return not self._thread.is_alive()

    def _run(self) -> None:
        name_this_thread()
        while not self._stopping.wait(self._interval):
            self._keep_off()
            self._since = self._clock()
            try:
                outcome = self._look()
            except Exception as error:
                self._since = None
                self._report(error)
                return
            self._since = None
            if outcome and not self._stopping.is_set():
                self._report(outcome)
