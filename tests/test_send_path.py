"""Nothing but the send on the send path: a send waits for no listing, reading or summary, the other threads
keep off the interpreter around each send, and a flood of settings changes costs the timing thread one engine
update per look.

Blocking is shown without clocks: a fake handle stops inside the slow call until a send has gone through, so a
send that waited for it would never come (the join's timeout only ends such a hang; it measures nothing).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading

import pytest
import rtmidi

from improvd.core.engine import Engine, Settings
from improvd.core.model import load_model
from improvd.daemon.ports import MidiPorts
from improvd.daemon.quiet import (
    COLLECTOR_AHEAD,
    QUIET_AFTER,
    QUIET_BEFORE,
    CollectorPause,
    QuietWindow,
    quiet_loop,
)
from improvd.daemon.timing import SWITCH_INTERVAL, TIMER_SLACK_NS, LatenessStats, TimingThread
from tests.inprocess import make_daemon
from tests.test_osthread import timer_slack
from tests.virtual import VirtualTime

HANG = 30  # seconds before a blocked call is declared a hang


class StallingHandle:
    """An rtmidi-like handle whose ``stall``-named call waits until ``released`` is set."""

    def __init__(self, ports: list[str], stall: str, released: threading.Event) -> None:
        self.ports, self.opened, self.sent, self.queue = ports, None, [], []
        self.stall, self.released, self.stalled = stall, released, threading.Event()
        self.hung = False  # the stall ran out before a send released it: the send waited for this call

    def _maybe_stall(self, name: str) -> None:
        if name == self.stall and not self.released.is_set():
            self.stalled.set()
            self.hung = not self.released.wait(HANG)

    def get_ports(self) -> list[str]:
        self._maybe_stall("get_ports")
        return list(self.ports)

    def get_message(self):
        self._maybe_stall("get_message")
        return self.queue.pop(0) if self.queue else None

    def send_message(self, message: list[int]) -> None:
        self.sent.append(list(message))

    def open_port(self, index: int, name: str) -> None:
        self.opened = self.ports[index]

    def is_port_open(self) -> bool:
        return self.opened is not None

    def close_port(self) -> None:
        self.opened = None

    def __getattr__(self, name: str):  # callbacks, port names, delete: nothing to do
        return lambda *args, **kwargs: None


def ports_stalling(stall_in: str, stall_out: str, released: threading.Event, api: str = "alsa"):
    handles = {}

    def create(kind: type, _api: str) -> StallingHandle:
        is_input = kind is rtmidi.MidiIn
        handles[kind] = StallingHandle(
            ["keys:out"] if is_input else ["synth:in"], stall_in if is_input else stall_out, released
        )
        return handles[kind]

    ports = MidiPorts(api, "keys", "synth", lambda data, arrival: None, False, create=create)
    return ports, handles[rtmidi.MidiIn], handles[rtmidi.MidiOut]


def send_while(stalled: threading.Event, ports: MidiPorts, released: threading.Event) -> list[int]:
    """Wait until the other thread is inside the slow call, then send; the send releases it."""
    assert stalled.wait(HANG)
    assert ports.send([0x90, 60, 100])
    released.set()
    return [0x90, 60, 100]


@pytest.mark.parametrize("side", ["input", "output"])
def test_a_send_does_not_wait_while_the_port_watcher_lists_ports(side):
    released = threading.Event()
    ports, source, sink = ports_stalling("", "", threading.Event())
    ports.open()  # connected to keys:out and synth:in, listing without stalls
    (source if side == "input" else sink).stall = "get_ports"
    (source if side == "input" else sink).released = released
    watcher = threading.Thread(target=ports.poll)
    watcher.start()
    sent = send_while((source if side == "input" else sink).stalled, ports, released)
    watcher.join(HANG)
    assert not watcher.is_alive() and sink.sent == [sent]
    assert not (source.hung or sink.hung)
    ports.close()


def test_a_send_does_not_wait_while_the_input_is_read():
    released = threading.Event()
    ports, source, sink = ports_stalling("", "", threading.Event(), api="jack")
    ports._in.connected = ports._out.connected = "virtual"  # as open() leaves them, without the reader thread
    source.stall, source.released = "get_message", released
    reader = threading.Thread(target=ports.read_before_tick)
    reader.start()
    sent = send_while(source.stalled, ports, released)
    reader.join(HANG)
    assert not reader.is_alive() and sink.sent == [sent]
    assert not source.hung


def test_a_record_made_while_a_summary_sorts_is_neither_blocked_nor_lost():
    stats = LatenessStats()

    class Sample(float):
        def __lt__(self, other: float) -> bool:
            if stats._count < 4:
                stats.record(0.004)  # the timing thread's next send, landing mid-sort
            return float(self) < float(other)

    for value in (0.003, 0.001, 0.002):
        stats.record(Sample(value))
    assert stats.summary().max_ms == 3.0
    assert stats.summary().as_dict() | {"p50_ms": 0} == {"sends": 4, "p50_ms": 0, "p99_ms": 4.0, "max_ms": 4.0}


class CountingEngine(Engine):
    updates: list[dict]

    def update(self, time=None, **changes):
        self.updates.append(changes)
        return super().update(time, **changes)


def timing_with(tiny_model_dir) -> tuple[TimingThread, CountingEngine, VirtualTime]:
    clock = VirtualTime(10.0)
    engine = CountingEngine(load_model(tiny_model_dir), Settings(bpm=120))
    engine.updates = []
    timing = TimingThread(engine, lambda data: True, lambda report: None, time_source=clock)
    timing.begin()
    return timing, engine, clock


def test_a_flood_of_changes_is_one_engine_update_per_look(tiny_model_dir):
    timing, engine, clock = timing_with(tiny_model_dir)
    for k in range(1000):
        timing.change({"temperature": 0.1 + (k % 150) / 100})
    timing.run_until(clock.now() + 0.001)
    assert engine.updates == [{"temperature": 0.1 + 999 % 150 / 100}]
    assert engine.settings.temperature == pytest.approx(1.09)


def test_merged_changes_mean_what_the_same_changes_in_turn_mean(tiny_model_dir):
    timing, engine, clock = timing_with(tiny_model_dir)
    timing.change({"response_steps": 8, "gate": 0.5})
    timing.change({"response_bars": 3})  # bars set last: whole bars, as if applied in turn
    timing.run_until(clock.now() + 0.001)
    assert (engine.settings.response_steps, engine.settings.response_bars, engine.settings.gate) == (None, 3, 0.5)


def test_the_running_timing_thread_takes_the_interpreter_back_quickly(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(sys, "setswitchinterval", lambda seconds: switched.append(seconds))
    switched: list[float] = []
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=120))
    timing = TimingThread(engine, lambda data: True, lambda report: None)
    timing.start()
    timing.stop(HANG)
    assert switched == [SWITCH_INTERVAL] and SWITCH_INTERVAL < 0.005  # Python's default lets a busy thread keep it 5 ms


def test_the_running_timing_thread_sends_with_a_short_timer_slack(tiny_model_dir):
    """Its sleeps end within TIMER_SLACK_NS of their time (Linux's default, 50 µs, needed a longer spin)."""
    slack: list[int] = []
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=120))
    timing = TimingThread(engine, lambda data: slack.append(timer_slack()) or True, lambda report: None)
    timing.start()
    timing.stop(HANG)
    assert slack and set(slack) == {TIMER_SLACK_NS} and TIMER_SLACK_NS <= 1_000


def test_what_is_due_is_made_ready_before_the_spin_and_only_sent_after_it(tiny_model_dir):
    """The start's second All Notes Off (due at 11.0): popped and made into bytes before the spin to 11.0, sent
    after it, nothing else in between."""
    order: list[tuple[str, float]] = []

    class Watched(VirtualTime):
        def sleep_until(self, deadline: float) -> None:
            order.append(("spin", deadline))
            super().sleep_until(deadline)

    clock = Watched(10.0)
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=120))
    popped = engine.pop_due
    engine.pop_due = lambda time: order.append(("pop", time)) or popped(time)
    timing = TimingThread(
        engine, lambda data: order.append(("send", clock.now())) or True, lambda report: None, time_source=clock
    )
    timing.begin()
    timing.run_until(11.0 + 0.01)
    at = order.index(("spin", 11.0))
    sends = [entry for entry in order[at + 1 :] if entry[0] == "send"]
    assert order[at - 1] == ("pop", 11.0) and len(sends) >= 2  # CC 123 and CC 64, at least on one channel
    assert order[at + 1 : at + 1 + len(sends)] == [("send", 11.0)] * len(sends)


def test_a_reader_near_a_send_hands_nothing_on_and_loses_nothing():
    """Inside a send's quiet window the reader leaves the queue alone; after it every message comes, in order.
    The timing thread's own look before a tick is not held: it is the thread that sends."""
    heard: list[tuple[list[int], float]] = []
    clock = [10.0]
    ports, source, _ = ports_stalling("", "", threading.Event(), api="jack")
    ports.quiet = QuietWindow(now=lambda: clock[0])
    ports.quiet.next_send = 10.001
    ports._on_message = lambda data, arrival: heard.append((data, arrival))
    ports._in.connected = "virtual"
    source.queue += [([0x90, 60, 90], 0.0), ([0x80, 60, 0], 0.25), ([0x90, 62, 90], 0.25)]
    assert not ports._hand_on(gated=True) and heard == [] and len(source.queue) == 3
    clock[0] = 10.001 + QUIET_AFTER
    assert ports._hand_on(gated=True)
    assert [data for data, _ in heard] == [[0x90, 60, 90], [0x80, 60, 0], [0x90, 62, 90]]
    assert [arrival for _, arrival in heard] == sorted(arrival for _, arrival in heard)
    clock[0], source.queue = 10.001, [([0x90, 64, 90], 0.1)]
    assert ports.read_before_tick() and heard[-1][0] == [0x90, 64, 90]


def test_the_timing_thread_marks_each_send_as_next_before_it_goes(tiny_model_dir):
    """While a send waits for its due time, the quiet window the other threads keep is the one around it."""
    timing, _, clock = timing_with(tiny_model_dir)
    marked: list[tuple[float, float]] = []
    timing._send = lambda data: marked.append((timing.quiet.next_send, clock.now())) or True
    timing.run_until(clock.now() + 1.5)  # the start's second All Notes Off, due at 11.0
    assert marked and all(next_send == now == 11.0 for next_send, now in marked)


class Looking(VirtualTime):
    """Virtual time that notes whether the garbage collector is on each time the loop waits."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.seen: list[tuple[str, float, bool]] = []

    def wait(self, event: threading.Event, timeout: float) -> bool:
        self.seen.append(("wait", self.time, gc.isenabled()))
        return super().wait(event, timeout)


def test_no_garbage_collection_starts_from_before_a_send_until_it_has_gone(tiny_model_dir):
    """The collector is off from COLLECTOR_AHEAD before the start's second All Notes Off (due at 11.0) until it has
    gone; between sends, and once the loop has finished, it is on."""
    clock = Looking(10.0)
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=120))
    send = lambda data: clock.seen.append(("send", clock.now(), gc.isenabled())) or True  # noqa: E731
    timing = TimingThread(engine, send, lambda report: None, time_source=clock)
    assert gc.isenabled()
    timing.begin()
    timing.run_until(11.5)
    off = [entry for entry in clock.seen if not entry[2]]
    assert [kind for kind, _, _ in off[:1]] == ["wait"] and off[0][1] == pytest.approx(11.0 - COLLECTOR_AHEAD)
    assert all(time == pytest.approx(11.0) for kind, time, _ in off if kind == "send") and len(off) > 2
    assert all(11.0 - COLLECTOR_AHEAD - 1e-9 <= time <= 11.0 for _, time, _ in off)
    assert clock.seen[-1] == ("wait", clock.seen[-1][1], True)  # after the sends, on again
    timing.collector.hold(True)
    timing.finish()
    assert gc.isenabled()


def test_a_collector_disabled_by_someone_else_stays_disabled():
    pause = CollectorPause()
    gc.disable()
    pause.hold(True)
    pause.hold(False)
    assert not gc.isenabled()
    gc.enable()
    pause.hold(True)
    assert not gc.isenabled() and pause.near
    pause.hold(False)
    assert gc.isenabled() and not pause.near


def test_the_quiet_window_runs_from_before_a_send_until_just_after_it():
    slept: list[float] = []
    clock = [5.0]
    window = QuietWindow(now=lambda: clock[0], sleep=slept.append)
    window.keep_off()
    assert slept == [] and not window.near()  # nothing queued: never quiet
    window.next_send = 5.0 + QUIET_BEFORE + 0.0001
    window.keep_off()
    assert slept == [] and not window.near()
    window.next_send = 5.0 + QUIET_BEFORE / 2
    window.keep_off()
    assert window.near() and slept == [pytest.approx(QUIET_BEFORE / 2 + QUIET_AFTER)]
    clock[0] = window.next_send + QUIET_AFTER
    assert not window.near()


def test_the_daemons_loop_keeps_off_through_a_send_after_each_wait():
    slept: list[float] = []
    window = QuietWindow(now=lambda: 1.0, sleep=slept.append)
    window.next_send = 1.001
    loop = quiet_loop(window)
    try:
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert slept and all(delay == pytest.approx(0.001 + QUIET_AFTER) for delay in slept)


def test_the_daemon_gives_its_input_reader_the_timing_threads_window():
    daemon = make_daemon()
    assert daemon.ports.quiet is daemon.timing.quiet
