"""improvd.daemon.schedstat on a directory laid out as /proc/self/task, and once on this process's own."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from improvd.daemon.schedstat import Threads
from tests.services import wait_for

READ = {"0", "63"}  # read(2)'s number on x86-64, on arm64


def task(root: Path, tid: int, name: str, schedstat: str | None = "1520388 20451 34\n") -> None:
    (root / str(tid)).mkdir()
    (root / str(tid) / "comm").write_text(name + "\n")
    if schedstat is not None:
        (root / str(tid) / "schedstat").write_text(schedstat)


def test_runs_are_the_third_field_of_schedstat(tmp_path):
    task(tmp_path, 18975, "improvd-out", "982533 381986 368\n")
    assert Threads(tmp_path).runs(18975) == 368


def test_a_thread_gone_or_a_kernel_that_does_not_count_has_no_runs(tmp_path):
    task(tmp_path, 10, "improvd-out", "0 0 0\n")  # what the kernel writes without CONFIG_SCHED_INFO
    task(tmp_path, 11, "improvd-out", None)
    task(tmp_path, 12, "improvd-out", "garbled\n")
    threads = Threads(tmp_path)
    assert [threads.runs(tid) for tid in (10, 11, 12, 13)] == [None, None, None, None]


def test_the_process_thread_is_the_newest_thread_of_that_name_made_since(tmp_path):
    """libjack starts a client's notification thread, then its process thread: both carry the client's name."""
    task(tmp_path, 100, "improvd-out")  # a stopped output client's, there before
    task(tmp_path, 101, "improvd-ports")
    threads = Threads(tmp_path)
    before = threads.ids()
    assert before == {100, 101}
    task(tmp_path, 205, "improvd-out")  # notifications
    task(tmp_path, 206, "improvd-out")  # process
    task(tmp_path, 207, "improvd-ports")
    (tmp_path / "not-a-task").mkdir()
    assert threads.newest("improvd-out", before) == 206
    assert threads.newest("improvd-probe", before) is None


def test_a_newest_thread_whose_runs_cannot_be_read_is_not_found(tmp_path):
    task(tmp_path, 206, "improvd-out", "0 0 0\n")
    assert Threads(tmp_path).newest("improvd-out", set()) is None


def test_no_such_directory_has_no_threads(tmp_path):
    threads = Threads(tmp_path / "missing")
    assert threads.ids() == set() and threads.newest("improvd-out", set()) is None


def test_this_process_counts_a_thread_that_runs_and_not_one_that_waits():
    """/proc/self/task itself: a thread blocked in a read is not run however often it is looked at; written to,
    it runs (each wake-up one more run); ended, it has no runs."""
    from improvd.daemon.osthread import name_this_thread

    threads = Threads()
    before = threads.ids()
    readable, writable = os.pipe()

    def reader() -> None:
        name_this_thread()
        os.read(readable, 1)

    thread = threading.Thread(target=reader, name="improvd-reader", daemon=True)
    try:
        thread.start()
        wait_for(lambda: blocked_in_read(thread.native_id, readable), 10, "the thread to wait in its read")
        tid = threads.newest("improvd-reader", before)
        assert tid == thread.native_id
        waiting = threads.runs(tid)
        assert waiting is not None and [threads.runs(tid) for _ in range(100)] == [waiting] * 100
        os.write(writable, b"x")
        thread.join(10)
        assert not thread.is_alive()
    finally:
        os.close(readable)
        os.close(writable)
    assert threads.runs(tid) is None  # gone


def blocked_in_read(tid: int, fd: int) -> bool:
    """Whether thread ``tid`` waits in read(2) on ``fd`` (/proc/self/task/TID/syscall: the call's number, then its
    arguments)."""
    fields = (Path("/proc/self/task") / str(tid) / "syscall").read_text().split()
    return len(fields) > 1 and fields[0] in READ and int(fields[1], 16) == fd
