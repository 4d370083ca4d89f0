"""MIDI ports on a real JACK server: listing, opening by name, virtual ports, losing and finding a port."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import mido
import pytest

from improvd.daemon.ports import ArrivalClock, MidiPorts, MidiSystemError, list_ports, match_port
from tests.helpers import Synth
from tests.services import wait_for


def test_match_port_ignores_case_and_improvd_own_ports():
    names = ["improvd:in", "improvd-01:out", "Keystation 49:port 0", "synth:in"]
    assert match_port(names, "KEYSTATION") == 2
    assert match_port(names, "in") == 3  # not improvd's own input
    assert match_port(names, "piano") is None


def test_arrival_clock_removes_callback_delay():
    clock = ArrivalClock()
    assert clock.arrival(0.0, 100.0) == 100.0
    assert clock.arrival(0.010, 100.030) == pytest.approx(100.010)  # the callback ran 20 ms late
    assert clock.arrival(0.010, 100.020) == pytest.approx(100.020)
    assert clock.arrival(1.0, 101.5) == pytest.approx(101.5)  # deltas lost time (ignored messages): resync


def test_arrival_clock_takes_a_slow_poll_for_lateness_not_lost_time():
    clock = ArrivalClock()
    clock.arrival(0.0, 100.0)
    # found 300 ms after it came, by a poller that last saw the queue empty at 100.9
    assert clock.arrival(1.0, 101.3, earliest=100.9) == pytest.approx(101.0, abs=1e-3)
    # an hour of silence, then a hand-on 50 ms late: the offset creeps by at most MAX_CREEP, not 0.36 s
    assert clock.arrival(3600.0, 3701.05, earliest=3700.9) == pytest.approx(3701.0, abs=2 * ArrivalClock.MAX_CREEP)
    # predicted before the poller's last empty look: impossible, so the deltas lost time
    assert clock.arrival(0.5, 3702.0, earliest=3701.8) == pytest.approx(3702.0)


def test_missing_midi_system_says_what_to_do():
    if os.path.exists("/dev/snd/seq"):
        pytest.skip("this machine has an ALSA sequencer")
    with pytest.raises(MidiSystemError, match=r"no ALSA sequencer.*modprobe snd-seq.*--midi-api jack"):
        list_ports("alsa")


@pytest.mark.jack
def test_ports_subcommand_lists_jack_ports(jack_midi):
    with jack_midi.open_output("out", client_name="keyboard"):
        result = subprocess.run(
            [sys.executable, "-m", "improvd.cli", "ports", "--midi-api", "jack"], capture_output=True, text=True
        )
    assert result.returncode == 0, result.stderr
    inputs = result.stdout.split("outputs")[0]
    assert "keyboard:out" in inputs


class Received:
    def __init__(self) -> None:
        self.items: list[tuple[list[int], float]] = []
        self.lock = threading.Lock()

    def __call__(self, data: list[int], arrival: float) -> None:
        with self.lock:
            self.items.append((data, arrival))


@pytest.mark.jack
def test_virtual_ports_of_client_improvd(jack_server, jack_midi):
    ports = MidiPorts("jack", "", "", Received(), clock=False)
    try:
        ports.open()
        listing = jack_server.ports()
        assert "improvd:in" in listing
        assert any(name.startswith("improvd") and name.endswith(":out") for name in listing)
        assert ports.names() == {"input": "virtual", "output": "virtual"}
    finally:
        ports.close()


@pytest.mark.jack
def test_named_ports_connect_filter_and_reconnect(jack_midi):
    received = Received()
    synth = Synth()
    try:
        ports = MidiPorts("jack", "", "SYNTH", received, clock=False)
        try:
            keyboard = jack_midi.open_output("out", client_name="keyboard")
            ports = _reopen(ports, received)
            assert ports.names()["output"] == "synth:in"
            before = time.monotonic()
            keyboard.send(mido.Message("note_on", note=60, velocity=100))
            keyboard.send(mido.Message("sysex", data=[1] * 500))  # dropped before Python
            keyboard.send(mido.Message("clock"))  # dropped under the internal clock
            keyboard.send(mido.Message("note_off", note=60))
            wait_for(lambda: any(d[0] == 0x80 for d, _ in received.items), 2, "the note_off, sent last")
            assert [d[0] for d, _ in received.items] == [0x90, 0x80]  # SysEx and clock dropped on the way
            assert before <= received.items[0][1] <= time.monotonic()
            assert ports.send([0x90, 64, 90])
            wait_for(synth.note_ons, 2, "a note at the synth")
            keyboard.close()
            assert ("port_lost", "input", "keyboard:out") in ports.poll()
            assert ports.poll() == []  # reported once
            keyboard = jack_midi.open_output("out", client_name="keyboard")
            assert ("port_back", "input", "keyboard:out") in ports.poll()
            keyboard.send(mido.Message("note_on", note=62, velocity=100))
            wait_for(lambda: len(received.items) >= 3, 2, "input after the reconnect")
            keyboard.close()
        finally:
            ports.close()
    finally:
        synth.close()


def _reopen(ports: MidiPorts, received: Received) -> MidiPorts:
    """A MidiPorts asking for the keyboard too (created after the keyboard port exists)."""
    ports.close()
    opened = MidiPorts("jack", "keyboard", "synth", received, clock=False)
    opened.open()
    return opened


class Handed(Received):
    """Also records when, and by which thread, each message reached Python."""

    def __init__(self) -> None:
        super().__init__()
        self.by: list[tuple[float, str]] = []

    def __call__(self, data: list[int], arrival: float) -> None:
        self.by.append((time.monotonic(), threading.current_thread().name))
        super().__call__(data, arrival)


def play_notes(keyboard, gaps: list[float]) -> list[float]:
    """A note_on after each gap; returns when each was sent."""
    sent = []
    for note, gap in enumerate(gaps, start=60):
        time.sleep(gap)
        sent.append(time.monotonic())
        keyboard.send(mido.Message("note_on", note=note, velocity=100))
    return sent


@pytest.mark.jack
def test_idle_reader_sleeps_while_ticks_read_and_arrival_times_hold(jack_midi, monkeypatch):
    """After a silence the reader sleeps and the timing thread's look before each tick hands input on; the arrival
    time still comes from rtmidi's deltas: before the look that found the message, not the look's own time."""
    monkeypatch.setattr("improvd.daemon.ports.IDLE_AFTER", 0.1)
    monkeypatch.setattr("improvd.daemon.ports.TICKS_FRESH", 10.0)  # the sleeping reader wakes only when nudged
    handed = Handed()
    keyboard = jack_midi.open_output("out", client_name="keyboard")
    ports = MidiPorts("jack", "keyboard", "", handed, clock=False)
    try:
        ports.open()
        play_notes(keyboard, [0.03] * 5)  # while playing the reader hands them on itself
        wait_for(lambda: len(handed.items) == 5, 2, "the notes played")
        looks = []
        for note in range(65, 75):
            ports.read_before_tick()  # the grid ticks: the reader may sleep once it has heard nothing for a while
            time.sleep(0.2 + 0.0037 * note)  # a silence longer than IDLE_AFTER: it sleeps
            keyboard.send(mido.Message("note_on", note=note, velocity=100))
            time.sleep(0.03)  # queued in rtmidi, and nobody looks

            def looked() -> bool:
                looks.append(time.monotonic())
                return ports.read_before_tick()  # the look the timing thread makes before a tick

            wait_for(looked, 2, f"note {note} through the look before a tick")
            assert len(handed.items) == 6 + note - 65  # this one note
            assert handed.by[-1][1] == threading.current_thread().name  # the look handed it on: the reader slept
            assert handed.items[-1][1] < looks[-1]  # timed from the deltas, before the look that found it
        assert [data[1] for data, _ in handed.items] == list(range(60, 65)) + list(range(65, 75))
        arrivals = [arrival for _, arrival in handed.items]
        assert arrivals == sorted(arrivals)
    finally:
        keyboard.close()
        ports.close()


@pytest.mark.jack
def test_with_no_ticks_the_idle_reader_looks_by_itself(jack_midi, monkeypatch):
    """No grid reads the input (a MIDI clock that stopped): after a silence the reader still looks by itself."""
    monkeypatch.setattr("improvd.daemon.ports.IDLE_AFTER", 0.1)
    handed = Handed()
    keyboard = jack_midi.open_output("out", client_name="keyboard")
    ports = MidiPorts("jack", "keyboard", "", handed, clock=False)
    try:
        ports.open()
        sent = play_notes(keyboard, [0.03] * 5 + [0.3, 0.4])
        deadline = time.monotonic() + 2  # every note, or as many as the dummy server delivered (it drops under load)
        while len(handed.items) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert {name for _, name in handed.by} == {"improvd-midi-in"}
        pitches = [data[1] for data, _ in handed.items]
        assert pitches == sorted(set(pitches)) and set(pitches) <= set(range(60, 67))  # each once, in order
        assert {65, 66} & set(pitches)  # a note after each silence was handed on by the reader itself
        arrivals = [arrival for _, arrival in handed.items]
        assert arrivals == sorted(arrivals)
        assert all(arrival <= at for arrival, (at, _) in zip(arrivals, handed.by, strict=True))
    finally:
        keyboard.close()
        ports.close()
