"""Give the calling thread its Python name at the OS level too, so ``top -H`` and ``/proc`` show it.

Python before 3.14 leaves every thread with the process's name, which hides
which thread uses the CPU (improvd's own, or the JACK client threads rtmidi starts).
"""

from __future__ import annotations

import ctypes
import threading

PR_SET_NAME = 15
NAME_BYTES = 15  # the kernel keeps 15 bytes and a NUL


def name_this_thread() -> bool:
    """Set the OS name of the calling thread to its ``threading`` name; False where that is not possible."""
    try:
        prctl = ctypes.CDLL(None).prctl  # libc's, already loaded: no library search (which runs ldconfig)
    except AttributeError:
        return False
    name = threading.current_thread().name.encode()[:NAME_BYTES]
    return prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0) == 0
