"""JACK server round trips with the interpreter lock free: libjack itself, called through ctypes.

python-rtmidi holds the interpreter lock through each call into libjack, and a
call that waits for the JACK server (making a client, registering or connecting
a port) holds it as long as the server takes: every thread of improvd waits, the
timing thread too, whichever thread made the call (measured with a server
stopped for 1 s: a thread ticking every millisecond was held 1.02 s by
``rtmidi.MidiOut(API_UNIX_JACK)``, 8 ms by ``jack_client_open`` through ctypes,
which releases the lock for each foreign call). So the port watcher's server
checks and reconnects are made here, each with a client of its own that lives
for that one call: an idle improvd holds no extra JACK client.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
from pathlib import Path
from typing import Protocol

NO_START_SERVER = 0x01  # JackNoStartServer
PORT_IS_INPUT = 0x01  # JackPortIsInput


class JackGone(RuntimeError):
    """No JACK server answers."""


def _loaded_libjack() -> str:
    """The libjack this process has loaded (python-rtmidi's own copy: one libjack in the process), else the
    system's."""
    maps = Path("/proc/self/maps")
    if maps.exists():
        for line in maps.read_text().splitlines():
            path = line.rsplit(" ", 1)[-1]
            if os.path.basename(path).startswith("libjack") and ".so" in path:
                return path
    return "libjack.so.0"


class Patch(Protocol):
    """What ``MidiPorts`` needs of a JackPatch (tests/test_midi_ports.py passes a fake JACK server)."""

    def has_port(self, name: str | None) -> bool: ...

    def connect(self, source: str, destination: str) -> bool: ...

    def move(self, old: str, new: str) -> list[str]: ...


class JackPatch:
    """Server checks and connections by JACK port name (full names, ``client:port``)."""

    def __init__(self, library: str | None = None) -> None:
        self._jack = jack = ctypes.CDLL(library or _loaded_libjack())
        jack.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        jack.jack_client_open.restype = ctypes.c_void_p
        jack.jack_client_close.argtypes = [ctypes.c_void_p]
        jack.jack_port_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        jack.jack_port_by_name.restype = ctypes.c_void_p
        jack.jack_connect.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        jack.jack_disconnect.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        jack.jack_port_get_all_connections.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        jack.jack_port_get_all_connections.restype = ctypes.POINTER(ctypes.c_char_p)
        jack.jack_free.argtypes = [ctypes.c_void_p]
        jack.jack_port_flags.argtypes = [ctypes.c_void_p]

    def _client(self) -> ctypes.c_void_p:
        status = ctypes.c_int()
        client = self._jack.jack_client_open(b"improvd-check", NO_START_SERVER, ctypes.byref(status))
        if not client:
            raise JackGone(f"jack_client_open failed (status 0x{status.value:x})")
        return client

    def has_port(self, name: str | None) -> bool:
        """Whether the JACK server has the port ``name`` (None: whether it runs at all); JackGone when none runs."""
        client = self._client()
        try:
            return name is None or bool(self._jack.jack_port_by_name(client, name.encode()))
        finally:
            self._jack.jack_client_close(client)

    def connect(self, source: str, destination: str) -> bool:
        """Connect output port ``source`` to input port ``destination`` (already connected is fine); False when
        JACK refuses (a port gone meanwhile); JackGone when no server runs."""
        client = self._client()
        try:
            result = self._jack.jack_connect(client, source.encode(), destination.encode())
        finally:
            self._jack.jack_client_close(client)
        return result in (0, errno.EEXIST)

    def move(self, old: str, new: str) -> list[str]:
        """Connect port ``new`` to every port ``old`` is connected to, and cut ``old`` from them (both output
        ports, or both input ports): the ports connected anew (a port gone meanwhile is left out); JackGone when no
        server runs."""
        client = self._client()
        try:
            port = self._jack.jack_port_by_name(client, old.encode())
            found = self._jack.jack_port_get_all_connections(client, port) if port else None
            others = []
            for index in itertools.count():
                if not found or found[index] is None:
                    break
                others.append(found[index])
            if found:
                self._jack.jack_free(ctypes.cast(found, ctypes.c_void_p))
            inputs = bool(port) and bool(self._jack.jack_port_flags(port) & PORT_IS_INPUT)
            moved = []
            for other in others:
                joined, cut = (
                    ((other, new.encode()), (other, old.encode()))
                    if inputs
                    else ((new.encode(), other), (old.encode(), other))
                )
                if self._jack.jack_connect(client, *joined) in (0, errno.EEXIST):
                    moved.append(other.decode(errors="replace"))
                self._jack.jack_disconnect(client, *cut)
            return moved
        finally:
            self._jack.jack_client_close(client)
