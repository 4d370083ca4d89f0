"""The precise timer and the lateness statistics."""

from __future__ import annotations

import threading
import time

from improvd.scheduler import LatenessStats, sleep_until


def test_sleep_until_never_returns_early():
    for delay in (0.0, 0.0005, 0.003, 0.02):
        deadline = time.monotonic() + delay
        assert sleep_until(deadline) is True
        assert time.monotonic() >= deadline


def test_sleep_until_is_woken_by_an_event():
    wake = threading.Event()
    threading.Timer(0.05, wake.set).start()
    deadline = time.monotonic() + 30
    assert sleep_until(deadline, wake) is False
    assert time.monotonic() < deadline
    assert not wake.is_set()  # cleared for the next wait


def test_percentiles_and_max():
    stats = LatenessStats()
    for i in range(1, 101):
        stats.record(i / 1e6)  # 1 .. 100 microseconds
    stats.record(-0.0001)  # one early send
    summary = stats.summary()
    assert summary.sends == 101
    assert summary.p50_ms == 0.05
    assert summary.p99_ms == 0.099
    assert summary.max_ms == 0.1
    assert "p99 0.099 ms" in str(summary)


def test_the_window_keeps_recent_sends_but_max_is_forever():
    stats = LatenessStats(window=10)
    stats.record(0.5)
    for _ in range(10):
        stats.record(0.001)
    summary = stats.summary()
    assert (summary.sends, summary.p99_ms, summary.max_ms) == (11, 1.0, 500.0)


def test_empty_stats():
    assert LatenessStats().summary().as_dict() == {"sends": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
