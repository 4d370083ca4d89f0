"""The daemon's thread for the work the engine hands aside: in order, a slice at a time, off the sends."""

from __future__ import annotations

import logging
import threading

from improvd.daemon.aside import Aside

HANG = 30.0  # seconds: bounds a hang only, never times a result


class Work:
    """Three slices, each noted in ``log`` with its name; ``cancel_after`` cancels it after that many slices."""

    def __init__(self, name: str, log: list[str], cancel_after: int | None = None, fail: bool = False) -> None:
        self.name, self.log, self.cancel_after, self.fail = name, log, cancel_after, fail
        self.cancelled = False
        self.over = threading.Event()

    def slices(self):
        try:
            for k in range(3):
                if self.fail and k == 1:
                    raise RuntimeError("broken")
                self.log.append(f"{self.name}{k}")
                if self.cancel_after == k + 1:
                    self.cancelled = True
                yield
        finally:
            self.over.set()


def test_the_work_is_done_in_order_a_slice_at_a_time_keeping_off_the_sends_and_cancelled_work_stops(caplog):
    log: list[str] = []
    aside = Aside(keep_off=lambda: log.append("quiet"))
    works = [Work("a", log, cancel_after=2), Work("b", log, fail=True), Work("c", log)]
    with caplog.at_level(logging.WARNING, logger="improvd"):
        for work in works:
            aside(work)
        assert all(work.over.wait(HANG) for work in works)
    assert log == [
        *("quiet", "a0", "quiet", "a1"),  # cancelled after its second slice: no third
        *("quiet", "b0", "quiet"),  # failed in its second: logged, and the thread goes on
        *("quiet", "c0", "quiet", "c1", "quiet", "c2", "quiet"),
    ]
    assert "work aside failed: RuntimeError('broken')" in caplog.text
