"""The precise timer and the lateness statistics."""

from __future__ import annotations

import threading
import time

import mido

from improvd.engine import Engine, Settings
from improvd.model import load_model
from improvd.scheduler import LatenessStats, TimingThread, sleep_until
from tests.services import wait_for


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


def test_input_handed_on_before_a_tick_is_fed_before_it(tiny_model_dir):
    """The timing thread's look before a tick (MidiPorts.read_before_tick) reaches the engine ahead of the tick."""
    calls: list[tuple[str, float]] = []

    class Recording(Engine):
        def feed(self, message: mido.Message, time: float) -> list:
            calls.append(("feed", time))
            return super().feed(message, time)

        def tick(self, time: float) -> None:
            calls.append(("tick", time))
            super().tick(time)

    def before_tick() -> bool:
        if len(calls) != 3:
            return False
        # the origin and two steps: a note played just before this boundary
        timing.feed(mido.Message("note_on", note=60, velocity=90), time.monotonic() - 0.001)
        return True

    engine = Recording(load_model(tiny_model_dir), Settings(bpm=300))
    timing = TimingThread(engine, lambda message: True, lambda kind, data: None, before_tick=before_tick)
    timing.start()
    try:
        wait_for(lambda: len(calls) >= 6, 5, "a few ticks")
    finally:
        timing.stop()
    assert [name for name, _ in calls[:5]] == ["tick", "tick", "tick", "feed", "tick"]
    assert calls[3][1] < calls[4][1]  # played before the boundary that the next tick closes


def test_summary_sorts_outside_the_lock_that_record_takes():
    """Sorting 20,000 samples under the lock made a send wait for it (up to 65 ms)."""
    stats = LatenessStats()
    held_while_sorting: list[bool] = []

    class Sample(float):
        def __lt__(self, other: float) -> bool:
            held_while_sorting.append(stats._lock.locked())
            return float(self) < float(other)

    for value in (0.003, 0.001, 0.002):
        stats.record(Sample(value))
    assert stats.summary().max_ms == 3.0
    assert held_while_sorting and not any(held_while_sorting)


def test_a_start_sends_all_notes_off_then_again_a_second_later(tiny_model_dir):
    """A JACK graph still removing a killed run's clients may lose the first; the order of sends is what counts."""
    sent: list[list[int]] = []
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=120))
    timing = TimingThread(engine, lambda data: sent.append(list(data)), lambda kind, data: None)
    timing.start()
    try:
        wait_for(lambda: sent.count([0xB0, 123, 0]) >= 2, 10, "two All Notes Off")
    finally:
        timing.stop()
    assert sent[:2] == [[0xB0, 123, 0], [0xB0, 64, 0]]
    second = sent.index([0xB0, 123, 0], 1)
    assert sent[second : second + 2] == [[0xB0, 123, 0], [0xB0, 64, 0]]


def test_clicks_are_timed_through_the_same_path_and_counted_apart(tiny_model_dir):
    sent: list[list[int]] = []
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=300, metronome=True))
    timing = TimingThread(engine, lambda data: sent.append(list(data)), lambda kind, data: None)
    timing.start()
    try:
        wait_for(lambda: timing.click_stats.summary().sends >= 4, 10, "four clicks")
    finally:
        timing.stop()
    clicks = [data for data in sent if data[0] == 0x99 and data[2] > 0]  # note_on on channel 10
    assert len(clicks) >= timing.click_stats.summary().sends >= 4
    assert timing.stats.summary().sends > timing.click_stats.summary().sends  # their note_offs and the releases too
