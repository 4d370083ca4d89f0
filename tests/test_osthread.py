"""OS-level thread names, as top -H and /proc show them."""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

from improvd.daemon.osthread import name_this_thread, os_named, set_timer_slack

PR_GET_TIMERSLACK = 30


def timer_slack() -> int:
    """The calling thread's timer slack in nanoseconds, as the kernel has it."""
    return ctypes.CDLL(None).prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)


def test_a_thread_gets_its_python_name_at_the_os_level():
    seen: dict = {}

    def body() -> None:
        seen["named"] = name_this_thread()
        seen["comm"] = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    thread = threading.Thread(target=body, name="improvd-a-long-thread-name")
    thread.start()
    thread.join()
    assert seen == {"named": True, "comm": "improvd-a-long-"}  # the kernel keeps 15 bytes


def test_threads_started_inside_os_named_carry_its_name_and_the_caller_gets_its_own_back():
    seen: dict = {}

    def body() -> None:
        name_this_thread()

        def started() -> None:
            seen["started"] = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

        with os_named("improvd-out"):
            child = threading.Thread(target=started)  # as a JACK client's threads, started by rtmidi
            child.start()
            child.join()
        seen["caller"] = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    thread = threading.Thread(target=body, name="improvd-caller")
    thread.start()
    thread.join()
    assert seen == {"started": "improvd-out", "caller": "improvd-caller"}


def test_a_thread_sets_its_own_timer_slack_and_no_other_threads():
    seen: dict = {}
    before = timer_slack()

    def body() -> None:
        seen["set"] = set_timer_slack(1_000)
        seen["slack"] = timer_slack()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == {"set": True, "slack": 1_000}
    assert timer_slack() == before  # the caller's own
