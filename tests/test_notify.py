"""sd_notify on a real datagram socket, and silence without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket

import pytest

from improvd.daemon.notify import Notifier, watchdog_interval


@pytest.fixture
def receiver(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def test_ready_status_watchdog(receiver, monkeypatch):
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier()
    assert notifier.ready("listening, 120 BPM")
    assert sock.recv(1024).decode() == f"READY=1\nSTATUS=listening, 120 BPM\nMAINPID={os.getpid()}"
    assert notifier.status("responding") and sock.recv(1024) == b"STATUS=responding"
    assert notifier.watchdog() and sock.recv(1024) == b"WATCHDOG=1"
    notifier.close()


def test_abstract_socket_address():
    name = f"improvd-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier("@" + name).stopping()
        assert sock.recv(64) == b"STOPPING=1"
    finally:
        sock.close()


def test_nothing_sent_without_notify_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready("x") is False


def test_unreachable_socket_is_survived(tmp_path):
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.watchdog() is False
    assert notifier.watchdog() is False


def test_watchdog_interval_is_half_of_watchdog_sec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 5.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None


def test_a_receiver_that_stops_reading_never_blocks(receiver):
    _sock, path = receiver
    notifier = Notifier(path)
    results = [notifier.status(f"status {i} " + "x" * 200) for i in range(5000)]  # far more than a socket queues
    assert results[0] is True and results[-1] is False
