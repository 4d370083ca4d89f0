"""OS-level thread names, as top -H and /proc show them."""

from __future__ import annotations

import threading
from pathlib import Path

from improvd.daemon.osthread import name_this_thread, os_named


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
