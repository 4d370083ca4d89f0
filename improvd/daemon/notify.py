"""systemd's notify protocol (sd_notify) over the NOTIFY_SOCKET datagram socket, standard library only.

Without NOTIFY_SOCKET (not started by systemd with Type=notify) nothing is sent,
so the daemon behaves the same by hand. A socket that cannot be reached is
logged once and then ignored: the music never waits for systemd.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("improvd.daemon.notify")


class Notifier:
    """Sends ``KEY=value`` lines to the service manager."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        self._failed = False
        if self.address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)  # a receiver that stops reading must never stall the daemon

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *lines: str) -> bool:
        """Send lines in one datagram; True when it went out."""
        if self._socket is None:
            return False
        try:
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except BlockingIOError:  # the receiver's queue is full: this message is dropped
            return False
        except OSError as error:
            if not self._failed:
                log.warning("cannot notify systemd at %r: %s", self.address, error)
            self._failed = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WatchdogSec, or None when systemd does not watch this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None
