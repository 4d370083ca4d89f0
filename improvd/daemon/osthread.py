"""Per-thread OS settings: the calling thread's Python name at the OS level too, so ``top -H`` and ``/proc`` show
it, and its timer slack.

Python before 3.14 leaves every thread with the process's name, which hides
which thread uses the CPU (improvd's own, or the JACK client threads rtmidi starts:
they take the name of the thread that made the client, see ``os_named``).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PR_SET_NAME = 15
PR_GET_NAME = 16
NAME_BYTES = 15  # the kernel keeps 15 bytes and a NUL
PR_SET_TIMERSLACK = 29


def name_this_thread() -> bool:
    """Set the OS name of the calling thread to its ``threading`` name; False where that is not possible."""
    try:
        prctl = ctypes.CDLL(None).prctl  # libc's, already loaded: no library search (which runs ldconfig)
    except AttributeError:
        return False
    return _set_name(prctl, threading.current_thread().name.encode())


def set_timer_slack(nanoseconds: int) -> bool:
    """Let the kernel wake the calling thread at most ``nanoseconds`` after a timed sleep's end (Linux: 50 µs for
    a normal thread unless set; threads it starts inherit it); False where that is not possible."""
    try:
        prctl = ctypes.CDLL(None).prctl
    except AttributeError:
        return False
    return prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(nanoseconds), 0, 0, 0) == 0


def _set_name(prctl: Callable[..., int], name: bytes) -> bool:
    return prctl(PR_SET_NAME, ctypes.c_char_p(name[:NAME_BYTES]), 0, 0, 0) == 0


@contextmanager
def os_named(name: str) -> Iterator[None]:
    """The calling thread carries the OS name ``name`` inside the block, its own again after it.

    Threads started meanwhile (a JACK client's, made by rtmidi) keep ``name``:
    ``improvd-out`` in ``top -H`` is the output's JACK thread.
    """
    try:
        prctl = ctypes.CDLL(None).prctl
    except AttributeError:
        yield
        return
    old = ctypes.create_string_buffer(NAME_BYTES + 1)
    named = prctl(PR_GET_NAME, old, 0, 0, 0) == 0 and _set_name(prctl, name.encode())
    try:
        yield
    finally:
        if named:
            _set_name(prctl, old.value)
