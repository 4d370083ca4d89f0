"""MidiPorts with fake rtmidi handles: connecting by name, a lost and returning port, input checked before use.

The handles are made by the factory MidiPorts takes, so the port logic runs in-process without a MIDI system;
tests/test_daemon.py and tests/test_jack_faults.py keep the end-to-end checks on real JACK ports."""

from __future__ import annotations

import itertools

import rtmidi

from improvd.daemon import ports as port_module
from improvd.daemon.ports import SYSEX_OPEN, MidiPorts


class FakeHandle:
    """What MidiPorts calls on an rtmidi.MidiIn or MidiOut; ``ports`` is the (shared, changeable) list it sees."""

    def __init__(self, ports: list[str]) -> None:
        self.ports = ports
        self.opened: str | None = None
        self.sent: list[list[int]] = []
        self.callback = None
        self.deleted = False

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
        self.deleted = True


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


class Jack:
    """A fake JACK server: improvd's three ports (each a fake handle with a client and a port ``name`` it may
    rename), other clients' ports (``sources`` and ``sinks``), the ``connections`` between them, and the
    JackPatch improvd is given (``connect``, ``has_port``; ``gone``: no server answers). Each client has a process
    thread (``tid``, started when improvd makes the client), which runs unless its client is ``stalled``."""

    def __init__(self) -> None:
        self.handles: list[FakeHandle] = []
        self.tids = itertools.count(1000)
        self.sources: list[str] = []  # other clients' output ports
        self.sinks: list[str] = []  # ... input ports
        self.connections: set[tuple[str, str]] = set()
        self.gone = False

    def add(self, handle: FakeHandle, client: str) -> FakeHandle:
        handle.jack, handle.client = self, client
        self.handles.append(handle)
        return handle

    def ports(self, inputs: bool) -> list[str]:
        own = [h.port for h in self.handles if isinstance(h, LoopbackInput) == inputs and h.opened and not h.deleted]
        return own + (self.sinks if inputs else self.sources)

    def connected(self, source: FakeHandle, destination: FakeHandle) -> bool:
        return (source.port, destination.port) in self.connections

    def has_port(self, name: str | None) -> bool:
        self._answer()
        return name is None or name in self.ports(True) + self.ports(False)

    def connect(self, source: str, destination: str) -> bool:
        self._answer()
        if source not in self.ports(False) or destination not in self.ports(True):
            return False
        self.connections.add((source, destination))
        return True

    def move(self, old: str, new: str) -> list[str]:
        self._answer()
        if old in self.ports(True):  # an input port: its sources move
            moved = sorted(s for s, d in self.connections if d == old)
            self.connections -= {(s, old) for s in moved}
            self.connections |= {(s, new) for s in moved}
            return moved
        moved = sorted(d for s, d in self.connections if s == old)
        self.connections -= {(old, d) for d in moved}
        self.connections |= {(new, d) for d in moved}
        return moved

    def _answer(self) -> None:
        from improvd.daemon.jackpatch import JackGone

        if self.gone:
            raise JackGone("no server")


class JackHandle(FakeHandle):
    """A handle of improvd's on the fake JACK server: it lists the other direction's ports. Its client's process
    thread (``tid``, OS name ``thread_name``) has run ``runs`` times; each look finds it has run again, unless
    ``stalled``."""

    jack: Jack
    client: str
    tid: int | None = None
    thread_name = "improvd-probe"
    stalled = False

    def __init__(self, name: str) -> None:
        super().__init__([])
        self.name = name
        self.runs = 1

    @property
    def port(self) -> str:
        return f"{self.client}:{self.name}"

    def set_port_name(self, name: str) -> None:
        self.name = name

    def get_ports(self) -> list[str]:
        return self.jack.ports(inputs=not isinstance(self, LoopbackInput))


class LoopbackInput(JackHandle):
    """A JACK input whose queue what comes arrives in, SysEx ignored as rtmidi's JACK input ignores it: a SysEx
    start without its end (``open_sysex``) takes everything after it as SysEx, until a message ending in F7.
    Nothing arrives while ``stalled`` (its client stopped)."""

    thread_name = "improvd-in"

    def __init__(self, name: str = "in") -> None:
        super().__init__(name)
        self.queue: list[tuple[list[int], float]] = []
        self.open_sysex = False
        self.stalled = False

    def arrive(self, message: list[int]) -> None:
        if self.stalled:
            return
        if self.open_sysex or message[0] == 0xF0:
            self.open_sysex = message[-1] != 0xF7
            return
        self.queue.append((list(message), 0.0))

    def get_message(self):
        return self.queue.pop(0) if self.queue else None


class LoopbackOutput(JackHandle):
    """improvd's JACK output (``stalled``: its client stopped, its process thread runs no more)."""

    thread_name = "improvd-out"

    def __init__(self) -> None:
        super().__init__("out")


class Threads:
    """The fake JACK server's threads as ``improvd.daemon.schedstat.Threads`` finds them (``hidden``: none is
    found, as on a JACK whose threads name themselves)."""

    def __init__(self, jack: Jack, hidden: bool = False) -> None:
        self.jack, self.hidden = jack, hidden

    def ids(self) -> set[int]:
        return {h.tid for h in self.jack.handles if h.tid is not None}

    def newest(self, name: str, before: set[int]) -> int | None:
        named = [h.tid for h in self.jack.handles if h.thread_name == name and h.tid not in before | {None}]
        return None if self.hidden or not named else max(named)

    def runs(self, tid: int) -> int | None:
        handle = next(h for h in self.jack.handles if h.tid == tid)
        handle.runs += not handle.stalled
        return handle.runs


class Prober(JackHandle):
    """improvd's prober: its probes reach improvd's input when connected to it (unless ``cut``: its input's client
    stopped, or a patchbay cuts every connection); while ``held`` is a list, the server stalls and they wait in
    it; ``lose`` messages from now on the server loses; ``after_send`` runs before send_message returns."""

    def __init__(self, source: LoopbackInput, cut: bool = False, after_send=lambda: None) -> None:
        super().__init__("probe")
        self.source, self.cut, self.after_send = source, cut, after_send
        self.held: list[list[int]] | None = None
        self.lose = 0

    def send_message(self, message: list[int]) -> None:
        super().send_message(message)
        if self.lose:
            self.lose -= 1
        elif self.held is not None:
            self.held.append(list(message))
        elif not self.cut:
            for handle in self.jack.handles:  # improvd's input, or the one replacing it
                if isinstance(handle, LoopbackInput) and self.jack.connected(self, handle):
                    handle.arrive(message)
        self.after_send()

    def resume(self) -> None:
        """The stalled server runs again: what it held arrives."""
        held, self.held = self.held or [], None
        for message in held:
            self.source.arrive(message)


def jack_ports(
    input: str = "", cut: bool = False, after_send=lambda: None, output: str = "", stalled=(), hidden: bool = False
):
    """JACK MidiPorts (not opened) on a fake JACK server, without a reader thread: the test reads where it wants.

    Clients made after the first three (replacing a stopped one) are new LoopbackOutputs or LoopbackInputs, clients
    ``improvd-03``, ... : ``stalled`` holds the numbers (1 for improvd-01, the first output, 0 for improvd, the
    first input) of those that never run. ``hidden``: the output's process thread is not found."""
    import threading

    jack = Jack()
    source, first = jack.add(LoopbackInput(), "improvd"), jack.add(LoopbackOutput(), "improvd-01")
    prober = jack.add(Prober(source, cut, after_send), "improvd-02")
    first.stalled, source.stalled = 1 in stalled, 0 in stalled
    made = iter([source, first, prober])
    numbers = itertools.count(3)

    def create(kind, api):
        handle = next(made, None)
        if handle is None:  # a new client
            number = next(numbers)
            handle = jack.add(LoopbackInput() if kind is rtmidi.MidiIn else LoopbackOutput(), f"improvd-{number:02d}")
            handle.stalled = number in stalled
        handle.tid = next(jack.tids)  # its threads start
        return handle

    heard: list[list[int]] = []
    threads = Threads(jack, hidden)
    ports = MidiPorts("jack", input, output, lambda data, arrival: heard.append(data), False, create, jack, threads)
    ports._reader = threading.Thread(target=lambda: None)
    return ports, jack, heard


def probing_ports(monkeypatch, cut: bool = False, read_at_once: bool = True):
    """JACK MidiPorts on fakes, opened; ``read_at_once``: the timing thread reads the input while the probe's
    send_message has not yet returned (the interpreter switched threads there)."""
    from improvd.daemon import ports as port_module

    monkeypatch.setattr(port_module, "PROBE_INTERVAL", 0.0)
    holder: list[MidiPorts] = []

    def read() -> None:
        if read_at_once:
            holder[0].read_before_tick()

    ports, _, heard = jack_ports(cut=cut, after_send=read)
    holder.append(ports)
    ports.open()
    return ports, heard


def test_a_probe_heard_back_before_it_was_counted_is_no_unterminated_sysex(monkeypatch):
    """Twice the exit log said ``unterminated SysEx ended by improvd`` with no SysEx sent: the probe was counted
    out after send_message, so a read in between took it for player input and the next probe counted it lost."""
    ports, heard = probing_ports(monkeypatch)
    for _ in range(3):
        ports.probe()  # each sends an F7 and its mark, which come straight back (open made the prober)
    assert SYSEX_OPEN not in ports.dropped.take()
    assert heard == []  # a probe is never handed on as the player's


def test_a_probe_still_queued_unread_is_no_unterminated_sysex(monkeypatch):
    ports, _ = probing_ports(monkeypatch, read_at_once=False)
    ports.quiet.near = lambda: True  # a send is always near: the loop's gated look reads nothing
    for _ in range(3):
        ports.probe()
    assert SYSEX_OPEN not in ports.dropped.take()


def test_a_sysex_left_open_is_counted_once_and_the_input_hears_again(monkeypatch):
    ports, heard = probing_ports(monkeypatch, read_at_once=False)
    source = ports._in.handle
    source.arrive([0xF0, 0x7D, 0x01])  # a SysEx start that never ends
    source.arrive([0x90, 60, 90])  # taken as SysEx: lost
    ports.probe()  # its F7 ends the SysEx; its mark is heard without it
    ports.read_before_tick()
    source.arrive([0x90, 62, 90])
    for _ in range(3):
        ports.probe()
        ports.read_before_tick()
    assert ports.dropped.take() == {SYSEX_OPEN: 1}
    assert heard == [[0x90, 62, 90]]


def test_probes_a_stalled_jack_server_delivers_late_are_no_unterminated_sysex(monkeypatch):
    """Still in some play tests on the dummy JACK server, under load: the exit log said ``unterminated SysEx ended
    by improvd`` with no SysEx sent. A server that stalls for longer than a probe's interval delivers it after the
    input was read empty: it was counted lost, and handed on as player input when it came."""
    ports, heard = probing_ports(monkeypatch, read_at_once=False)
    prober = ports._prober
    prober.held = []
    for _ in range(3):
        ports.probe()  # the input is read empty each time: the server delivers nothing
        ports.read_before_tick()
    prober.resume()
    for _ in range(2):
        ports.probe()
        ports.read_before_tick()
    assert SYSEX_OPEN not in ports.dropped.take()
    assert heard == []


def test_a_probe_the_jack_server_lost_is_no_unterminated_sysex(monkeypatch):
    """The dummy JACK server under load loses and doubles messages: a probe lost on its way was no SysEx."""
    ports, _ = probing_ports(monkeypatch, read_at_once=False)
    ports._prober.lose = 2  # a probe: its F7 and its mark
    for _ in range(4):
        ports.probe()
        ports.read_before_tick()
    assert SYSEX_OPEN not in ports.dropped.take()


def test_a_probe_the_jack_server_doubled_is_no_unterminated_sysex_nor_player_input(monkeypatch):
    ports, heard = probing_ports(monkeypatch, read_at_once=False)
    prober = ports._prober
    for _ in range(3):
        prober.held = []
        ports.probe()
        twice = prober.held * 2  # the probe's F7 and mark, then both again
        prober.held = None
        for message in twice:
            prober.source.arrive(message)
        ports.read_before_tick()
    assert SYSEX_OPEN not in ports.dropped.take()
    assert heard == []


def test_the_guard_still_counts_a_sysex_left_open_after_a_stall_longer_than_the_marks_it_keeps(monkeypatch):
    from improvd.daemon.ports import MARKS_KEPT

    ports, _ = probing_ports(monkeypatch, read_at_once=False)
    prober, source = ports._prober, ports._in.handle
    prober.held = []
    for _ in range(MARKS_KEPT + 6):
        ports.probe()
    prober.held = prober.held[:2]  # the server lost all but the first probe
    prober.resume()
    ports.read_before_tick()
    for _ in range(2):
        ports.probe()
        ports.read_before_tick()
    assert SYSEX_OPEN not in ports.dropped.take()
    source.arrive([0xF0, 0x7D])  # then a SysEx left open
    for _ in range(2):
        ports.probe()
        ports.read_before_tick()
    assert ports.dropped.take() == {SYSEX_OPEN: 1}


def test_a_song_position_pointer_from_the_player_is_handed_on(monkeypatch):
    """A probe's mark is a Song Position Pointer numbered among the last probes sent: the player's is not one."""
    ports, heard = probing_ports(monkeypatch, read_at_once=False)
    ports.probe()
    ports.read_before_tick()
    ports._in.handle.arrive([0xF2, 0x00, 0x40])
    ports.read_before_tick()
    assert heard == [[0xF2, 0x00, 0x40]] and SYSEX_OPEN not in ports.dropped.take()


def test_a_probe_lost_while_the_input_queue_overflowed_is_no_unterminated_sysex(monkeypatch):
    """A flood filled rtmidi's input queue, which drops what comes while it is full: a probe's F7 among that was
    lost without any SysEx, and its mark came once there was room. The overflow is counted; a SysEx left open is
    not claimed."""
    from improvd.daemon import ports as port_module

    monkeypatch.setattr(port_module, "INPUT_QUEUE", 4)
    ports, _ = probing_ports(monkeypatch, read_at_once=False)
    source = ports._in.handle
    prober = ports._prober
    source.queue += [([0x90, 60, 90], 0.0)] * 3  # the flood: as many as the queue holds
    prober.lose = 1  # the probe's F7, lost in the full queue
    ports.probe()
    ports.read_before_tick()  # the flood, then the mark
    ports.probe()
    ports.read_before_tick()
    assert ports.dropped.take() == {port_module.OVERFLOW: 1}


def clocked_ports(monkeypatch, cut: bool = False):
    """probing_ports on a clock the test moves (``clock[0]``)."""
    from improvd.daemon import ports as port_module

    clock = [100.0]
    monkeypatch.setattr(port_module.time, "monotonic", lambda: clock[0])
    ports, _ = probing_ports(monkeypatch, cut=cut, read_at_once=False)
    return ports, clock


def opened_jack_ports(monkeypatch, input: str = "", output: str = "", stalled=()):
    """jack_ports opened on a clock the test moves (``clock[0]``), probing at every look, with the player's
    ``keys:out`` (``input="keys"``) or the synth's ``synth:in`` (``output="synth"``) on the server."""
    clock = [100.0]
    monkeypatch.setattr(port_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(port_module, "PROBE_INTERVAL", 0.0)
    monkeypatch.setattr(port_module, "FIRST_CYCLE", 0.01)
    ports, jack, heard = jack_ports(input=input, output=output, stalled=stalled)
    jack.sources += ["keys:out"] if input else []
    jack.sinks += ["synth:in"] if output else []
    ports.open()
    return ports, jack, heard, clock


def test_an_output_whose_jack_client_stopped_is_replaced(monkeypatch):
    """A play test: the output's JACK client stopped running (jackd: ``client = improvd-01 was not finished``) and
    improvd played on into nothing for the rest of the session, its timing statistics perfect; then it exited
    (status 1) about 3 s after the first note. Now a new client takes its place, connected where the old one was,
    once the old one's process thread has not run for OUTPUT_LOST after a send."""
    from improvd.daemon.ports import OUTPUT_LOST

    ports, jack, _, clock = opened_jack_ports(monkeypatch, output="synth")
    old = ports._out.handle
    for _ in range(3):  # running: never replaced, however long
        ports.send([0x90, 60, 90])
        clock[0] += OUTPUT_LOST + 1
        assert ports.probe() == []
    old.stalled = True
    ports.send([0x80, 60, 0])
    clock[0] += OUTPUT_LOST / 2
    assert ports.probe() == []  # not yet
    clock[0] += OUTPUT_LOST / 2
    assert ports.probe() == [("output_reopened", "output", "improvd-03:out")]
    new = ports._out.handle
    assert new is not old and not old.deleted and ports.output_reopened == 1  # left to the exit (``close``)
    assert {c for c in jack.connections if c[0].endswith(":out")} == {("improvd-03:out", "synth:in")}  # moved
    assert ports.send([0x90, 64, 90]) and new.sent[-1] == [0x90, 64, 90]
    for _ in range(3):
        clock[0] += OUTPUT_LOST + 1
        assert ports.probe() == []  # the new one runs
        ports.send([0x80, 64, 0])
    assert ports.names()["output"] == "synth:in"


def test_an_output_whose_server_stopped_for_a_while_is_not_replaced(monkeypatch):
    """A play test: jackd stopped for 3 s (SIGSTOP, then SIGCONT) while improvd played, and improvd replaced its
    output's client (``output_reopened``): the server check waited for the server, which answered once it ran
    again, and the output's thread had not run yet. The thread runs once the server answers: nothing to replace."""
    from improvd.daemon.ports import OUTPUT_LOST

    ports, jack, _, clock = opened_jack_ports(monkeypatch, output="synth")
    out, answer = ports._out.handle, jack.has_port

    def resumed(name):  # the server answers once it runs again, and so does the output's process thread
        out.stalled = False
        return answer(name)

    monkeypatch.setattr(jack, "has_port", resumed)
    out.stalled = True
    ports.send([0x90, 60, 90])
    clock[0] += OUTPUT_LOST + 1
    assert ports.probe() == [] and ports._out.handle is out and ports.output_reopened == 0
    ports.send([0x80, 60, 0])
    clock[0] += OUTPUT_LOST + 1
    assert ports.probe() == [] and {c for c in jack.connections if c[0].endswith(":out")} == {
        ("improvd-01:out", "synth:in")
    }


def test_an_output_that_stopped_after_the_last_send_had_left_waits_for_the_next_send(monkeypatch):
    """What was sent before the thread's last run has left: nothing is at stake until the next send, which is
    then found unplayed at the next look (its thread has not run for longer than OUTPUT_LOST already)."""
    from improvd.daemon.ports import OUTPUT_LOST

    ports, clock = clocked_ports(monkeypatch)
    ports.send([0x90, 60, 90])
    clock[0] += 1
    assert ports.probe() == []  # it ran after the send
    clock[0] += 1
    assert ports.probe() == []  # ... and since that look
    ports._out.handle.stalled = True
    for _ in range(5):
        clock[0] += OUTPUT_LOST
        assert ports.probe() == []
    ports.send([0x80, 60, 0])
    clock[0] += 0.5
    assert ports.probe() == [("output_reopened", "output", "improvd-03:out")]


def test_an_output_client_whose_first_cycle_never_runs_is_replaced_before_open_returns(monkeypatch):
    """Play tests, about 1 run in 10: improvd's output client never ran its first JACK cycle (gdb: its thread
    waiting in ``JackClient::DummyCycle``), and nothing sent went anywhere; improvd said ready all the same. Now
    ``open`` checks that the output's process thread runs, and makes a new client where it does not."""
    monkeypatch.setattr(port_module, "FIRST_CYCLE", 0.01)
    ports, jack, _ = jack_ports(output="synth", stalled={1})
    jack.sinks.append("synth:in")
    ports.open()
    assert ports.output_reopened == 1 and not jack.handles[1].deleted
    assert ports._out_port == "improvd-03:out" and ports.names()["output"] == "synth:in"
    assert ("improvd-03:out", "synth:in") in jack.connections
    assert not [c for c in jack.connections if c[0] == "improvd-01:out"]
    assert ports.send([0x90, 60, 90]) and ports._out.handle.sent[-1] == [0x90, 60, 90]


def test_an_output_that_new_clients_do_not_replace_either_is_an_error(monkeypatch):
    """When no new client runs either, the daemon cannot go on: an error, after REOPEN_TRIES new clients, each
    left to the exit with the old one."""
    import pytest

    from improvd.daemon.ports import REOPEN_TRIES, MidiSystemError

    monkeypatch.setattr(port_module, "FIRST_CYCLE", 0.01)
    ports, jack, _ = jack_ports(stalled=set(range(1, 5 + REOPEN_TRIES)))
    with pytest.raises(MidiSystemError, match=r"JACK output delivers nothing.* did not run either"):
        ports.open()
    made = [h for h in jack.handles if isinstance(h, LoopbackOutput)]
    assert len(made) == 1 + REOPEN_TRIES and not any(h.deleted for h in made)
    assert ports.close().endswith("stopped running: left to the exit") and not any(h.deleted for h in made)


def test_an_output_whose_process_thread_is_not_found_is_not_checked(monkeypatch):
    """A JACK whose threads are named otherwise (or no /proc): nothing tells a stopped output from a running one,
    so none is replaced, as under ALSA; open says so and does not wait for a first cycle."""
    from improvd.daemon.ports import OUTPUT_LOST

    clock = [100.0]
    monkeypatch.setattr(port_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(port_module, "PROBE_INTERVAL", 0.0)
    ports, jack, _ = jack_ports(stalled={1}, hidden=True)
    ports.open()
    for _ in range(4):
        ports.send([0x90, 60, 90])
        clock[0] += OUTPUT_LOST + 1
        assert ports.probe() == []
    assert ports.output_reopened == 0 and ports._out.handle is jack.handles[1]


def test_closing_on_a_jack_server_that_does_not_answer_leaves_the_ports_to_the_exit(monkeypatch):
    """jackd stopped (SIGSTOP): rtmidi's close holds the interpreter lock through the server round trip that never
    ends, and the daemon's exit hung for ever. Now the server is asked first, by a client of libjack's own (no
    interpreter lock), and nothing is closed when it does not answer within the grace."""
    import threading

    ports, jack, _ = jack_ports()
    ports.open()
    answer = threading.Event()
    has_port = jack.has_port
    jack.has_port = lambda name: answer.wait(10) and has_port(name)  # a stopped server: no answer
    try:
        assert ports.close(grace=0.05) == "the JACK server has not answered for 0.05 s"
    finally:
        answer.set()
    assert all(h.opened and not h.deleted for h in jack.handles)


def test_closing_while_a_look_at_the_ports_hangs_leaves_them_to_the_exit(monkeypatch):
    import threading

    ports, jack, _ = jack_ports()
    ports.open()
    release = threading.Event()

    def hung_look() -> None:
        with ports._watching:  # a look of the port watcher, in a libjack call that does not return
            release.wait(10)

    look = threading.Thread(target=hung_look, daemon=True)
    look.start()
    while not ports._watching.locked():
        threading.Event().wait(0.001)
    try:
        assert ports.close(grace=0.05) == "a look at the ports has hung for 0.05 s"
    finally:
        release.set()
        look.join(10)
    assert ports.probe() == [] and ports.poll() == []  # closed: no look does anything from now on
    assert all(not h.deleted for h in jack.handles)


def test_closing_on_a_jack_server_that_answers_closes_every_client(monkeypatch):
    ports, jack, _ = jack_ports()
    ports.open()
    assert ports.close() is None
    assert all(h.deleted for h in jack.handles)


def test_clients_that_stopped_running_are_left_to_the_exit(monkeypatch):
    """A test that resumed the output's stopped process thread after its client was replaced: the daemon crashed
    (SIGSEGV) at its exit. rtmidi frees a client's queue before closing it, and the thread, running again, used
    the freed memory. Now neither the stopped client nor a new one that never ran is deleted: ``close`` closes the
    rest and says which are left to the exit (the daemon then exits without them; the server drops them)."""
    monkeypatch.setattr(port_module, "FIRST_CYCLE", 0.01)
    ports, jack, _ = jack_ports(output="synth", stalled={1, 3})  # improvd-01's output stopped, improvd-03 too
    jack.sinks.append("synth:in")
    ports.open()
    assert ports._out_port == "improvd-04:out"
    stopped = [h for h in jack.handles if h.stalled]
    assert len(stopped) == 2 and not any(h.deleted for h in stopped)
    assert ports.close() == "improvd-01:out, improvd-03:out stopped running: left to the exit"
    assert not any(h.deleted for h in stopped)
    assert all(h.deleted for h in jack.handles if not h.stalled)  # the new output, the input, the prober


def test_an_idle_output_is_no_error(monkeypatch):
    from improvd.daemon.ports import OUTPUT_LOST

    ports, clock = clocked_ports(monkeypatch)
    ports._out.handle.stalled = True
    for _ in range(6):
        clock[0] += OUTPUT_LOST + 0.1
        assert ports.probe() == []  # nothing was sent: nothing can be missing
    assert ports.output_reopened == 0


def test_an_input_whose_jack_client_stopped_is_replaced_once_its_prober_was_connected_anew(monkeypatch):
    """A play test on a loaded machine: improvd's input client stopped running (``improvd's JACK input has heard
    nothing, not even its own probes, for 11 s``) and improvd exited with status 1 mid-session, in 1 of 15 starts.
    Now a new client takes its place, connected where the old one was, and hears the player."""
    from improvd.daemon.ports import PROBE_LOST

    ports, jack, heard, clock = opened_jack_ports(monkeypatch, input="keys")
    old = ports._in.handle
    for _ in range(3 * int(PROBE_LOST)):  # hearing its probes: never replaced, however long
        clock[0] += 1
        assert ports.probe() == []
    old.stalled = True
    found = []
    for _ in range(3 * int(PROBE_LOST)):
        clock[0] += 1
        found.append(ports.probe())
    replaced = [("input_reopened", "input", "improvd-03:in")]
    assert [e for e in found if e] == [replaced] and found.index(replaced) > 2 * PROBE_LOST  # prober aimed first
    new = ports._in.handle
    assert new is not old and not old.deleted and ports.input_reopened == 1
    assert {c for c in jack.connections if c[1].endswith(":in")} == {
        ("improvd-02:probe", "improvd-03:in"),
        ("keys:out", "improvd-03:in"),
    }  # the old port cut from everything, the new one where it was
    new.arrive([0x90, 64, 90])
    ports.read_before_tick()
    assert heard == [[0x90, 64, 90]]
    for _ in range(3 * int(PROBE_LOST)):
        clock[0] += 1
        assert ports.probe() == []  # the new one hears its probes
    assert SYSEX_OPEN not in ports.dropped.take() and ports.names()["input"] == "keys:out"


def test_a_new_input_client_that_does_not_run_either_hands_the_connections_on_to_the_next(monkeypatch):
    """A play test: the first new input client heard nothing either, the next one did, and improvd was left deaf,
    ``now improvd-03:in, connected to nothing``: the connections had moved to the client that failed and were
    deleted with it. They go back to the old port first, so the client that takes over gets them."""
    from improvd.daemon.ports import PROBE_LOST

    ports, jack, heard, clock = opened_jack_ports(monkeypatch, input="keys", stalled=(3,))
    ports._in.handle.stalled = True
    found = []
    for _ in range(3 * int(PROBE_LOST)):
        clock[0] += 1
        found.append(ports.probe())
    assert [e for e in found if e] == [[("input_reopened", "input", "improvd-04:in")]]
    assert {c for c in jack.connections if c[1] == "improvd-04:in"} == {
        ("improvd-02:probe", "improvd-04:in"),
        ("keys:out", "improvd-04:in"),
    }
    ports._in.handle.arrive([0x90, 64, 90])
    ports.read_before_tick()
    assert heard == [[0x90, 64, 90]] and ports.names()["input"] == "keys:out"


def test_an_input_that_new_clients_do_not_replace_either_is_an_error(monkeypatch):
    """Nothing comes in, not even the probes: the server is there, the prober connected anew, REOPEN_TRIES new
    clients hear nothing either (the prober's own client may be the one stopped): an error."""
    import pytest

    from improvd.daemon.ports import PROBE_INTERVAL, PROBE_LOST, REOPEN_TRIES, MidiSystemError

    monkeypatch.setattr(port_module, "FIRST_CYCLE", 0.01)
    ports, clock = clocked_ports(monkeypatch, cut=True)
    old = ports._in.handle
    with pytest.raises(MidiSystemError, match="JACK input has heard nothing"):
        for _ in range(int(3 * PROBE_LOST / PROBE_INTERVAL)):
            clock[0] += PROBE_INTERVAL
            ports.probe()
    assert clock[0] - 100.0 > 2 * PROBE_LOST  # once for the server and the new connection, once for the error
    made = [h for h in ports._patch.handles if isinstance(h, LoopbackInput)]
    assert len(made) == 1 + REOPEN_TRIES and not any(h.deleted for h in made)
    assert ports._in.handle is old  # left to the exit with the new ones


def test_an_input_without_a_prober_is_not_replaced_for_hearing_no_probes(monkeypatch):
    """When the prober's JACK port was not found (a warning at open), no probe can come back: an idle input is
    fine, and only the server is checked."""
    from improvd.daemon.ports import PROBE_LOST

    monkeypatch.setattr(port_module, "FIRST_CYCLE", 0.01)
    ports, clock = clocked_ports(monkeypatch, cut=True)
    ports._prober_port = None
    for _ in range(4 * int(PROBE_LOST)):
        clock[0] += 1
        assert ports.probe() == []
    assert ports.input_reopened == 0


def test_an_input_that_hears_the_player_but_not_its_probes_is_no_error(monkeypatch):
    """A flood that overflows rtmidi's queue loses probes with the rest: the input runs, it hears the player."""
    from improvd.daemon.ports import PROBE_INTERVAL, PROBE_LOST

    ports, clock = clocked_ports(monkeypatch, cut=True)
    for _ in range(int(4 * PROBE_LOST / PROBE_INTERVAL)):
        ports._in.handle.queue.append(([0x90, 60, 90], 0.0))
        clock[0] += PROBE_INTERVAL
        ports.probe()


def test_the_timing_threads_look_at_the_input_never_waits_for_its_lock(monkeypatch):
    """Playing on JACK, the timing thread was 1.4-2 s late once: it waited for the input's lock, held while the
    prober was connected to improvd's input (JACK server round trips, slow while jackd's graph was stalled)."""
    import threading

    ports, _ = probing_ports(monkeypatch, read_at_once=False)
    ports._in.handle.queue.append(([0x90, 60, 90], 0.0))
    looked: list[bool] = []
    with ports._in_lock:  # the loop connecting the prober, or reconnecting the input
        tick = threading.Thread(target=lambda: looked.append(ports.read_before_tick()), daemon=True)
        tick.start()
        tick.join(10)
        assert looked == [False]  # it looks again at the next tick
    assert ports.read_before_tick()


def test_open_makes_every_jack_client_before_anything_is_timed(monkeypatch):
    """python-rtmidi holds the interpreter lock through each JACK server round trip: the prober, made at the port
    watcher's look a second after ready, held the timing thread 1.2-2 s on a busy server in play tests."""
    ports, _ = probing_ports(monkeypatch, read_at_once=False)
    assert ports._probe_target == "improvd:in" and ports._out_port == "improvd-01:out"  # both ports named
    assert ports._out_thread == ports._out.handle.tid  # the output's process thread found


def test_a_named_jack_input_is_connected_to_improvds_own_port_which_is_probed_while_it_is_gone(monkeypatch):
    """Under JACK improvd's own ports stay as they are: a named port is connected to them (a JackPatch call, with
    the interpreter lock free), never opened, so its loss and return are no reason to aim the prober anew."""
    from improvd.daemon import ports as port_module
    from improvd.daemon.ports import PROBE_LOST

    clock = [100.0]
    monkeypatch.setattr(port_module.time, "monotonic", lambda: clock[0])
    ports, jack, _ = jack_ports(input="keys")
    jack.sources.append("keys:out")
    ports.open()
    assert ports.names()["input"] == "keys:out" and ("keys:out", "improvd:in") in jack.connections
    jack.sources.clear()
    jack.connections.discard(("keys:out", "improvd:in"))  # JACK drops a connection with its port
    assert ports.poll() == [("port_lost", "input", "keys:out")]
    for _ in range(3 * int(PROBE_LOST)):
        clock[0] += 1.0
        ports.probe()  # its probes come back: the input is not silent
        assert ports.poll() == []
    assert not ports._input_reaimed
    jack.sources.append("keys:out")
    assert ports.poll() == [("port_back", "input", "keys:out")]
    assert ("keys:out", "improvd:in") in jack.connections and ports._in.handle.opened == "virtual in"


def test_a_jack_server_gone_at_a_reconnect_is_an_error_and_nothing_is_closed(monkeypatch):
    import pytest

    from improvd.daemon.ports import MidiSystemError

    ports, jack, _ = jack_ports(input="keys")
    ports.open()
    jack.sources.append("keys:out")
    jack.gone = True
    with pytest.raises(MidiSystemError, match="the JACK server is gone"):
        ports.poll()
    assert ports.server_gone
    ports.close()
    assert ports._in.handle.opened == "virtual in"  # nothing is called on a client of a server that is gone


def test_a_send_while_the_output_is_being_reconnected_never_waits(monkeypatch):
    """Reconnecting a named output is JACK server round trips under the output's lock (seconds on a busy server):
    the timing thread's sends waited for it. Now such a send is not sent, as into a port that is gone (the daemon
    releases every note once the port is back)."""
    import threading

    sources, sinks = ["keys:out"], ["synth:in"]
    ports, _, sink = ports_with_fakes(sources, sinks, [])
    ports.open()
    sinks.remove("synth:in")
    assert ports.poll() == [("port_lost", "output", "synth:in")]
    sinks.append("synth:in")
    opening, done = threading.Event(), threading.Event()
    open_port = sink.open_port

    def slow_open(index: int, name: str) -> None:
        opening.set()
        done.wait(10)  # the server answers once the test has sent
        open_port(index, name)

    sink.open_port = slow_open
    watcher = threading.Thread(target=lambda: ports.poll(), daemon=True)  # the port watcher's thread
    watcher.start()
    assert opening.wait(10)
    sent: list[bool] = []
    timing = threading.Thread(target=lambda: sent.append(ports.send([0x90, 60, 90])), daemon=True)
    timing.start()
    timing.join(10)
    done.set()
    watcher.join(10)
    assert sent == [False] and sink.sent == []  # it returned at once, with nothing sent into the half-made port
    assert ports.send([0x80, 60, 0]) and sink.sent == [[0x80, 60, 0]]
    ports.close()
