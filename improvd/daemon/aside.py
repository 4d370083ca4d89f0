"""The daemon's thread for the work the engine hands aside, so that it never holds the timing thread.

A followed call's phrase end (``clock = "follow"``) needs the call's tempo fitted, the call replayed on the
player's grid and an LSTM to hear it again: tens of milliseconds for a long call. The engine hands that work
(improvd.core.follow.Following) over a few 16ths before the phrase end is due, and ``Aside`` does it here, a slice
at a time, keeping off the interpreter around each send (``keep_off``: improvd.daemon.quiet) and stopping at the
next slice once the work is cancelled (the player played on). A phrase end it was not handed over for (``respond_now``
and the like) hands it over then and answers two 16ths later. The engine takes the result at the phrase end when it
is finished and does the same work itself when it is not: the answer never depends on this thread's timing.
With ``style = "auto"`` the candidate models' steps of a call being played come here too (improvd.core.styles), each
a job on a copy of a candidate's state that the timing thread takes back once it is done.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from improvd.daemon.osthread import name_this_thread

log = logging.getLogger("improvd")
DONE = object()  # what the slices give once they are over


class Work(Protocol):
    """What ``Aside`` runs: ``slices()`` does it, yielding between slices; ``cancelled`` stops it at the next."""

    cancelled: bool

    def slices(self) -> Iterator[None]: ...


class Aside:
    """One thread that runs the work handed to it, in order, one slice at a time."""

    def __init__(self, keep_off: Callable[[], None] = lambda: None) -> None:
        self.keep_off = keep_off  # called before each slice: sleeps while a send is near
        self._work: queue.SimpleQueue[Work] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once); ``__call__`` starts it too, if needed."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="improvd-aside", daemon=True)
            self._thread.start()

    def __call__(self, work: Work) -> None:
        """Take ``work`` to do; the caller never waits."""
        self.start()
        self._work.put(work)

    def _run(self) -> None:
        name_this_thread()
        while True:
            work = self._work.get()
            try:
                self._do(work)
            except Exception as error:  # the engine does it again itself, where the error is its to report
                log.warning("work aside failed: %r", error)

    def _do(self, work: Work) -> None:
        slices = work.slices()
        while not work.cancelled:
            self.keep_off()
            if next(slices, DONE) is DONE:
                return
