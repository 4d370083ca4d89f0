"""Typed reports from the timing thread, and the daemon carrying out reports and input decisions."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import mido

from improvd.core.engine import Engine, Settings
from improvd.daemon.reports import Changed, Events, Failed, SendFailed, Tempo, Warned
from improvd.daemon.timing import TimingThread
from tests.inprocess import make_daemon, shipped_model
from tests.virtual import VirtualTime


class BrokenEngine:
    """An engine whose first call raises: the timing loop dies at once."""

    def all_notes_off(self, now: float) -> list:
        raise RuntimeError("a bug")

    def stop(self, now: float) -> list:
        return []


def test_a_dying_timing_loop_reports_failed():
    reports: list = []
    timing = TimingThread(BrokenEngine(), lambda data: True, reports.append, time_source=VirtualTime(0.0))
    timing.run()
    assert [type(report) for report in reports] == [Failed]
    assert str(reports[0].error) == "a bug"


def test_an_action_that_raises_is_warned_and_one_that_runs_is_changed():
    reports: list = []
    clock = VirtualTime(0.0)
    engine = Engine(shipped_model(), Settings(bpm=120))
    timing = TimingThread(engine, lambda data: True, reports.append, time_source=clock)
    timing.begin()
    timing.submit(lambda now: 1 / 0)
    timing.submit(lambda now: [])
    timing.run_until(0.01)
    assert [type(report) for report in reports] == [Warned, Changed]
    assert isinstance(reports[0].error, ZeroDivisionError)


def daemon_that_publishes(table: dict | None = None):
    daemon = make_daemon(table)
    published: list = []
    daemon.controller.control_plane = SimpleNamespace(
        publish_event=lambda name, data: published.append((name, data)),
        publish_state=lambda: published.append("state"),
    )
    return daemon, published


def test_reports_are_dispatched_by_type(caplog):
    daemon, published = daemon_that_publishes()
    caplog.set_level(logging.DEBUG, "improvd")
    event = SimpleNamespace(name="phrase_end", data={"steps": 8})
    for report in (Events([event]), Changed(), Tempo(121.5), SendFailed(OSError("gone")), Warned(ValueError("x"))):
        daemon._on_report(report)
    assert published == [("phrase_end", {"steps": 8}), "state", "state", "state"]
    assert "following MIDI clock at 121.5 BPM" in caplog.text
    assert "sending failed: gone" in caplog.text and "ignored: ValueError('x')" in caplog.text
    assert not daemon._failed
    daemon._on_report(Failed(RuntimeError("a bug")))
    assert daemon._failed and "timing loop failed: RuntimeError('a bug'); exiting" in caplog.text


def test_the_daemon_carries_out_the_input_filters_decisions():
    daemon = make_daemon({"cc": {"respond": 21, "temperature": 20}})
    fed, submitted, changed = [], [], []
    daemon.timing.feed = lambda message, arrival: fed.append((message, arrival))
    daemon.timing.submit = submitted.append
    daemon.timing.change = changed.append
    daemon.on_midi([0x90, 60, 64], 1.5)
    daemon.on_midi([0x90, 60], 1.6)
    daemon.on_midi([0xB0, 21, 127], 1.7)
    daemon.on_midi([0xB0, 20, 127], 1.8)
    assert fed == [(mido.Message("note_on", note=60, velocity=64), 1.5)]
    assert daemon.dropped.take() == {"malformed MIDI messages": 1}
    assert len(submitted) == 1  # respond
    assert changed == [{"temperature": 2.0}]  # the top of the control's sweep


def test_a_flood_of_panic_presses_is_one_waiting_command_and_a_few_log_lines(caplog, monkeypatch):
    """The tester's find: 7,500 presses of a ``[cc] panic`` control gave 7,471 INFO lines and 83% of a core. A
    press while one still waits for the timing thread is merged with it (and counted); the events of a flood are
    logged and published a few times a second, the rest as one count."""
    daemon, published = daemon_that_publishes({"cc": {"panic": 22}})
    submitted: list = []
    daemon.timing.submit = submitted.append
    for _ in range(7500):
        daemon.on_midi([0xB0, 22, 127], 1.0)
    assert len(submitted) == 1
    assert daemon.dropped.take() == {"repeated commands merged with one still waiting": 7499}
    submitted[0](2.0)  # the timing thread runs it: the next press is queued again
    daemon.on_midi([0xB0, 22, 127], 2.1)
    assert len(submitted) == 2

    caplog.set_level(logging.INFO, "improvd")
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr("improvd.daemon.service.time.monotonic", lambda: clock.now)
    for k in range(7500):  # 7,500 panic events in 0.75 s
        clock.now = k / 10_000
        daemon._on_report(Events([SimpleNamespace(name="panic", data={})]))
    assert [p for p in published if p != "state"] == [("panic", {})] * 4
    assert len([r for r in caplog.records if r.getMessage().startswith("panic")]) == 4
    daemon._log_held_back(1.0)
    assert "events not logged or published (too many a second): 7496 panic" in caplog.text
