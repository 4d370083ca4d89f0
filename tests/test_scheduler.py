"""The precise timer and the lateness statistics."""

from __future__ import annotations

import threading
import time

import mido
import pytest

from improvd.core.engine import Engine, Settings
from improvd.core.model import load_model
from improvd.daemon import timing
from improvd.daemon.timing import SLEEP_SPIN, LatenessStats, TimingThread, sleep_until
from tests.virtual import VirtualTime


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


class SteppedClock:
    """``time`` for sleep_until: each look at the clock takes a microsecond; ``sleep`` passes exactly its time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[tuple[float, float]] = []  # (from, to)

    def monotonic(self) -> float:
        self.now += 1e-6
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append((self.now, self.now + seconds))
        self.now += seconds


@pytest.mark.parametrize("spin", [None, 0.0005])
def test_sleep_until_sleeps_to_its_spin_before_the_deadline_and_spins_only_the_rest(monkeypatch, spin):
    """The default spin is short: 96 MIDI clock pulses a second at 240 BPM spun 1 ms each (10% of a core)."""
    clock = SteppedClock()
    monkeypatch.setattr(timing, "time", clock)
    assert (sleep_until(0.01) if spin is None else sleep_until(0.01, spin=spin)) is True
    spun = SLEEP_SPIN if spin is None else spin
    assert SLEEP_SPIN <= 0.0003
    assert len(clock.slept) == 1 and 0.01 - spun - 2e-6 <= clock.slept[0][1] <= 0.01 - spun
    assert 0.01 <= clock.now <= 0.01 + 2e-6  # the spin ends at the deadline


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
    """The timing thread's look before a tick (MidiPorts.read_before_tick) reaches the engine ahead of the tick.

    In virtual time: the loop's own code, its time a parameter, so no wake-up can come late."""
    calls: list[tuple[str, float]] = []

    class Recording(Engine):
        def feed(self, message: mido.Message, time: float) -> list:
            calls.append(("feed", time))
            return super().feed(message, time)

        def tick(self, time: float) -> None:
            calls.append(("tick", time))
            super().tick(time)

    clock = VirtualTime(100.0)

    def before_tick() -> bool:
        if len(calls) != 3:
            return False
        # the origin and two steps: a note played just before this boundary
        timing.feed(mido.Message("note_on", note=60, velocity=90), clock.now() - 0.001)
        return True

    engine = Recording(load_model(tiny_model_dir), Settings(bpm=300))
    timing = TimingThread(engine, lambda message: True, lambda report: None, before_tick=before_tick, time_source=clock)
    timing.begin()
    timing.run_until(100.3)
    assert [name for name, _ in calls[:5]] == ["tick", "tick", "tick", "feed", "tick"]
    step = 60 / 300 / 4
    assert [t for name, t in calls if name == "tick"][:4] == pytest.approx([100.05 + k * step for k in range(4)])
    assert calls[3][1] == pytest.approx(100.05 + 3 * step - 0.001)  # played before the boundary the next tick closes


def test_a_start_sends_all_notes_off_then_again_a_second_later(tiny_model_dir):
    """A JACK graph still removing a killed run's clients may lose the first; virtual time shows when each went."""
    clock = VirtualTime(50.0)
    sent: list[tuple[float, list[int]]] = []
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=120))
    timing = TimingThread(
        engine, lambda data: sent.append((clock.now(), list(data))), lambda report: None, time_source=clock
    )
    timing.begin()
    timing.run_until(52.0)
    releases = [(t, data) for t, data in sent if data[0] == 0xB0]
    assert releases == [(50.0, [0xB0, 123, 0]), (50.0, [0xB0, 64, 0]), (51.0, [0xB0, 123, 0]), (51.0, [0xB0, 64, 0])]


def test_clicks_are_timed_through_the_same_path_and_counted_apart(tiny_model_dir):
    clock = VirtualTime(0.0)
    sent: list[tuple[float, list[int]]] = []
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=120, metronome=True))
    timing = TimingThread(
        engine, lambda data: sent.append((clock.now(), list(data))), lambda report: None, time_source=clock
    )
    timing.begin()
    timing.run_until(2.0)
    clicks = [t for t, data in sent if data[0] == 0x99 and data[2] > 0]  # note_on on channel 10
    assert clicks == pytest.approx([0.05 + 0.5 * k for k in range(4)])  # every beat at 120 from the origin
    assert timing.click_stats.summary().sends == 4 and timing.click_stats.summary().max_ms == 0.0
    assert timing.stats.summary().sends > 4  # their note_offs and the releases too
