"""Malformed MIDI input is dropped and counted before it is parsed; a broken input reader is noticed."""

from __future__ import annotations

import mido
import pytest

from improvd.daemon import ports
from improvd.daemon.input_filter import well_formed
from improvd.daemon.ports import MidiPorts
from tests.inprocess import make_daemon


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
