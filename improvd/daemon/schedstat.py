"""How often a thread of this process has run, from /proc: whether a JACK client's process thread still runs.

libjack runs each client's process callback in a thread of its own, woken once every JACK cycle while the client
runs, and not at all once it has stopped (jackd logs ``client = improvd-01 was not finished``; a client whose first
cycle never came waits in ``JackClient::DummyCycle``). The kernel counts each thread's runs: the third field of
``/proc/self/task/TID/schedstat`` (time on a CPU in ns, time waiting to run in ns, times run). Reading it needs no
JACK client of its own, as hearing the output through a port of improvd's did (0.2-1% of a core idle).
"""

from __future__ import annotations

from pathlib import Path

TASKS = Path("/proc/self/task")


class Threads:
    """The threads of a process as ``root`` (``/proc/self/task``; tests give a directory laid out as it is) shows
    them: one directory a thread, named by its id, holding ``comm`` (its OS name) and ``schedstat``."""

    def __init__(self, root: Path = TASKS) -> None:
        self._root = root

    def ids(self) -> set[int]:
        """The ids of the threads there now (none where there is no such directory: not Linux)."""
        try:
            return {int(entry.name) for entry in self._root.iterdir() if entry.name.isdigit()}
        except OSError:
            return set()

    def newest(self, name: str, before: set[int]) -> int | None:
        """The thread with the OS name ``name``, not among ``before``, with the highest id, if its runs can be read
        (``runs``); else None.

        libjack starts a client's threads while it makes it (python-rtmidi makes and activates the client in one
        call; they carry the OS name of the thread that made it, ``improvd.daemon.osthread.os_named``): JACK2 the
        one that takes the server's notifications when it opens the client, then the process thread when it
        activates it; JACK1 only the process thread. The newest is the process thread: Linux gives thread ids in
        increasing order (wrapping only at ``pid_max``).
        """
        named = [tid for tid in self.ids() - before if self._comm(tid) == name]
        if not named or self.runs(max(named)) is None:
            return None
        return max(named)

    def runs(self, tid: int) -> int | None:
        """How many times thread ``tid`` has been run on a CPU; None when it is gone or the kernel does not count
        (``schedstat`` reads ``0 0 0`` without CONFIG_SCHED_INFO: a thread that exists has run at least once)."""
        try:
            count = int((self._root / str(tid) / "schedstat").read_text().split()[2])
        except (OSError, IndexError, ValueError):
            return None
        return count or None

    def _comm(self, tid: int) -> str | None:
        try:
            return (self._root / str(tid) / "comm").read_text().strip()
        except OSError:
            return None
