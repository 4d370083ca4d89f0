"""MidiPorts with fake rtmidi handles: connecting by name, a lost and returning port, input checked before use.

The handles are made by the factory MidiPorts takes, so the port logic runs in-process without a MIDI system;
tests/test_daemon.py and tests/test_jack_faults.py keep the end-to-end checks on real JACK ports."""

from __future__ import annotations

import rtmidi

from improvd.daemon.ports import MidiPorts


class FakeHandle:
    """What MidiPorts calls on an rtmidi.MidiIn or MidiOut; ``ports`` is the (shared, changeable) list it sees."""

    def __init__(self, ports: list[str]) -> None:
        self.ports = ports
        self.opened: str | None = None
        self.sent: list[list[int]] = []
        self.callback = None

    def get_ports(self) -> list[str]:
        return list(self.ports)

    def is_port_open(self) -> bool:
        return self.opened is not None

    def open_port(self, index: int, name: str) -> None:
        self.opened = self.ports[index]

    def open_virtual_port(self, name: str) -> None:
        self.opened = f"virtual {name}"

    def close_port(self) -> None:
        self.opened = None

    def send_message(self, message: list[int]) -> None:
        self.sent.append(list(message))

    def ignore_types(self, **kinds: bool) -> None:
        self.ignored = kinds

    def cancel_callback(self) -> None:
        self.callback = None

    def set_callback(self, callback, data=None) -> None:
        self.callback = callback

    def delete(self) -> None:
        pass


def ports_with_fakes(sources: list[str], sinks: list[str], heard: list):
    handles: dict[type, FakeHandle] = {}

    def create(kind: type, api: str) -> FakeHandle:
        handles[kind] = FakeHandle(sources if kind is rtmidi.MidiIn else sinks)
        return handles[kind]

    ports = MidiPorts("alsa", "keys", "synth", lambda data, arrival: heard.append(data), False, create=create)
    return ports, handles[rtmidi.MidiIn], handles[rtmidi.MidiOut]


def test_named_ports_connect_by_substring_and_a_lost_output_comes_back():
    sources, sinks, heard = ["Midi Through"], ["Midi Through", "TiMidity"], []
    ports, _, sink = ports_with_fakes(sources, sinks, heard)
    ports.open()
    assert ports.names() == {"input": None, "output": None}  # "keys" and "synth": not there yet
    sources.append("keys:out")
    sinks.append("synth:in")
    assert sorted(ports.poll()) == [("port_back", "input", "keys:out"), ("port_back", "output", "synth:in")]
    assert ports.send([0x90, 60, 90]) and sink.sent == [[0x90, 60, 90]]
    sinks.remove("synth:in")
    assert ports.poll() == [("port_lost", "output", "synth:in")]
    assert not ports.send([0x80, 60, 0]) and sink.opened is None  # nothing sent into a port that is gone
    sinks.append("synth:in")
    assert ports.poll() == [("port_back", "output", "synth:in")] and sink.opened == "synth:in"
    ports.close()


def test_input_reaches_the_daemon_and_clock_and_sysex_are_left_to_rtmidi():
    heard: list = []
    ports, source, _ = ports_with_fakes(["keys:out"], ["synth:in"], heard)
    ports.open()
    assert source.ignored == {"sysex": True, "timing": True, "active_sense": True}
    source.callback(([0x90, 60, 90], 0.0))
    source.callback(([0x80, 60, 0], 0.25))
    assert heard == [[0x90, 60, 90], [0x80, 60, 0]]
    ports.close()
