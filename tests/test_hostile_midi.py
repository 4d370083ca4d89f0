"""Malformed MIDI input is dropped and counted before it is parsed; a broken input reader is noticed."""

from __future__ import annotations

import mido
import pytest

from improvd.daemon import ports
from improvd.daemon.input_filter import well_formed
from improvd.daemon.ports import MidiPorts
from improvd.daemon.service import Daemon
from tests.inprocess import make_daemon, shipped_model
from tests.virtual import VirtualTime


def fed_to(daemon) -> list:
    fed: list = []
    daemon.timing.feed = lambda message, arrival: fed.append(message)
    return fed


@pytest.mark.parametrize(
    "data",
    [[0xE0, 0x40], [0x90, 60], [0x90, 60, 64, 1], [0x90, 60, 200], [0xC0], [0x40, 1, 2], [], [0xF8, 0]],
)
def test_malformed_bytes_are_not_well_formed(data):
    assert not well_formed(data)


def test_short_pitch_bends_are_dropped_and_counted_not_raised():
    """Two short pitch bends used to raise IndexError in the input thread, then in the timing loop."""
    daemon = make_daemon()
    fed = fed_to(daemon)
    for data in ([0xE0, 0x40], [0xE0, 0x40], [0x90, 60], [0xB0, 64, 0x80]):
        daemon.on_midi(data, 0.0)
    assert fed == []
    assert daemon.dropped.take() == {"malformed MIDI messages": 4}
    daemon.on_midi([0x90, 60, 64], 0.0)
    daemon.on_midi([0xF0, 1, 2], 0.0)  # a SysEx piece: not for improvd, not malformed
    assert fed == [mido.Message("note_on", note=60, velocity=64)]
    assert daemon.dropped.take() == {}


class FakeHandle:
    """An rtmidi MidiIn/MidiOut stand-in with a queue of incoming messages."""

    def __init__(self, *args, **kwargs) -> None:
        self.queue: list[tuple[list[int], float]] = []
        self.open = False

    def get_message(self):
        return self.queue.pop(0) if self.queue else None

    def open_virtual_port(self, name: str) -> None:
        self.open = True

    def is_port_open(self) -> bool:
        return self.open

    def ignore_types(self, **kwargs) -> None:
        pass

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def test_an_input_handler_that_raises_is_kept_for_the_daemon_not_lost(monkeypatch):
    monkeypatch.setattr(ports, "_create", lambda kind, api: FakeHandle())

    def broken(data: list[int], arrival: float) -> None:
        raise RuntimeError("a bug")

    midi_ports = MidiPorts("jack", "", "", broken, clock=False)
    midi_ports._in.connected = "virtual"
    midi_ports._in.handle.queue.append(([0x90, 60, 64], 0.0))
    midi_ports.read_before_tick()  # the timing thread's look: it must not raise there
    assert isinstance(midi_ports.failure, RuntimeError)


def test_a_full_input_queue_is_counted_and_every_note_passed_through_is_released(monkeypatch):
    """The tester's find: ``--thru`` under a storm of 8,000 notes a second left notes sounding until exit, and
    rtmidi's "message queue limit reached" lines were not counted. rtmidi's JACK input drops what comes while its
    queue is full; a reader that reads a whole queue's worth without finding it empty knows a release may be lost:
    it is counted, and the notes passed through are released."""
    monkeypatch.setattr(ports, "_create", lambda kind, api: FakeHandle())
    monkeypatch.setattr(ports, "INPUT_QUEUE", 8)  # rtmidi's ring keeps one slot free: 7 messages fill it
    midi_ports = MidiPorts("jack", "", "", lambda data, arrival: daemon.on_midi(data, arrival), clock=False)
    daemon = Daemon(make_daemon({"thru": True}).controller.config, shipped_model(), midi_ports, None)
    sent: list = []
    daemon.timing._send = sent.append
    daemon.timing.time = VirtualTime(0.0)
    daemon.timing.begin()
    midi_ports._in.connected = "virtual"
    queue = midi_ports._in.handle.queue
    queue += [([0x90, 60 + k, 80], 0.001) for k in range(6)] + [([0x80, 60, 0], 0.001)]  # full: 61-65 released later
    midi_ports.read_before_tick()
    daemon.timing.run_until(daemon.timing.time.now() + 0.001)
    released = {data[1] for data in sent if data[0] == 0x80}
    assert released == {60, 61, 62, 63, 64, 65} and not daemon.engine.sounding
    assert midi_ports.dropped.take() == {ports.OVERFLOW: 1}
    assert not daemon.engine._buffer.held  # the keys whose releases were lost do not hold the call open

    sent.clear()
    queue += [([0x90, 70, 80], 0.001), ([0x80, 70, 0], 0.001)] * 3  # 6: the queue was found empty after them
    midi_ports.read_before_tick()
    daemon.timing.run_until(daemon.timing.time.now() + 0.001)
    assert midi_ports.dropped.take() == {} and not daemon.engine.sounding
