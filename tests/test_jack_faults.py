"""Faults that are JACK's own, on real JACK servers: an unterminated SysEx, a server that goes away, a JACK client
of improvd's that stops running."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from improvd.daemon import ports as port_module
from improvd.daemon.ports import MidiPorts
from improvd.daemon.schedstat import Threads
from tests.helpers import INSTANCE, Probe
from tests.services import Daemon, JackServer, wait_for

pytestmark = pytest.mark.jack


def heard_after_unterminated_sysex(monkeypatch, probe_interval: float) -> bool:
    import rtmidi

    monkeypatch.setattr(port_module, "PROBE_INTERVAL", probe_interval)
    received: list[list[int]] = []
    ports = MidiPorts("jack", "", "", lambda data, arrival: received.append(data), clock=False)
    ports.open()

    def probing() -> bool:
        ports.probe()  # the daemon's port watcher calls it every half second
        return ports._probe_target is not None

    wait_for(probing, 10, "the prober on improvd's input")
    player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="player")
    try:
        player.open_port(player.get_ports().index(ports._probe_target))
        player.send_message([0xF0, 0x01, 0x02])  # a SysEx start that never ends

        def heard() -> bool:
            ports.probe()
            player.send_message([0x90, 60, 64])
            time.sleep(0.1)
            return [0x90, 60, 64] in received

        try:
            wait_for(heard, 10, "a note after an unterminated SysEx")
        except TimeoutError:
            return False
        return ports.dropped.take() == {port_module.SYSEX_OPEN: 1}
    finally:
        player.delete()
        ports.close()


def test_an_unterminated_sysex_does_not_deafen_the_jack_input(jack_server, monkeypatch):
    """rtmidi's JACK input drops everything after F0 without F7 until an F7 comes; the probe sends one, and the
    SysEx it ended is counted once."""
    assert heard_after_unterminated_sysex(monkeypatch, port_module.PROBE_INTERVAL)


def test_the_jack_outputs_process_thread_is_found_and_runs_every_cycle(jack_server):
    """improvd tells that its output client runs by its process thread's runs (``improvd.daemon.schedstat``): on
    a real JACK server it is found (else an output that stops would go unnoticed) and runs cycle after cycle."""
    ports = MidiPorts("jack", "", "", lambda data, arrival: None, clock=False)
    try:
        ports.open()
        tid = ports._out_thread
        assert tid is not None and Path(f"/proc/self/task/{tid}/comm").read_text().strip() == "improvd-out"
        first = Threads().runs(tid)
        wait_for(lambda: Threads().runs(tid) > first + 10, 10, "ten more JACK cycles")
    finally:
        ports.close()


def test_probes_a_stalled_jack_server_delivers_late_are_no_unterminated_sysex(tmp_path, monkeypatch):
    """Play tests on the dummy JACK server, under load: the exit log said ``unterminated SysEx ended by improvd``
    with no SysEx sent. The server stalled for longer than a probe's interval; its probes came late, not lost."""
    monkeypatch.setattr(port_module, "PROBE_INTERVAL", 0.2)  # longer than a probe took back at most, once
    name = f"improvd-stalling-{os.getpid()}"
    server = JackServer(name, tmp_path / "jackd.log")
    server.start()
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    heard: list[list[int]] = []
    ports = MidiPorts("jack", "", "", lambda data, arrival: heard.append(data), clock=False)
    try:
        ports.open()

        def probed(until: float) -> None:
            while time.monotonic() < until:
                ports.probe()
                time.sleep(0.02)

        probed(time.monotonic() + 0.3)
        os.kill(server.process.pid, signal.SIGSTOP)  # no JACK cycle runs: nothing is delivered
        try:
            probed(time.monotonic() + 0.7)  # the input is read empty after each probe
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        sent = ports._probe_number

        def back() -> bool:
            ports.probe()
            return ports._marked >= sent

        wait_for(back, 10, "the probes sent while the server stalled")
        assert port_module.SYSEX_OPEN not in ports.dropped.take()
        assert heard == []  # no probe handed on as the player's
    finally:
        ports.close()
        server.stop()


def test_a_jack_server_that_dies_ends_the_daemon_with_status_1(tmp_path):
    name = f"improvd-dying-{os.getpid()}"
    server = JackServer(name, tmp_path / "jackd.log")
    server.start()
    daemon = Daemon(tmp_path, [], env={"JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"})
    try:
        daemon.wait_log("ready", timeout=30)
        server.stop()
        wait_for(lambda: daemon.process.poll() is not None, 30, "the daemon to exit after its JACK server died")
    finally:
        server.stop()
        daemon.stop()
    assert daemon.process.returncode == 1, daemon.text()
    assert "the JACK server is gone" in daemon.text()


PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
WALL = 0x40000000  # waitpid's __WALL: any thread


def jack_process_thread(pid: int, name: str) -> int:
    """The thread id of the JACK process thread of improvd's client ``name`` (``improvd-out``: the output's), found
    as improvd finds its output's (``Threads.newest``: the newest of the threads its client started)."""
    tid = Threads(Path(f"/proc/{pid}/task")).newest(name, set())
    assert tid is not None, f"no thread named {name}"
    return tid


@contextmanager
def stopped(tid: int) -> Iterator[None]:
    """One thread of another process held stopped (ptrace), the rest running: a JACK client whose process
    thread never finishes its cycle, as jackd logged it in a play test (``client = improvd-01 was not finished``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    if libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0:
        pytest.fail(f"cannot ptrace thread {tid}: {os.strerror(ctypes.get_errno())}")
    libc.ptrace(PTRACE_INTERRUPT, tid, None, None)
    os.waitpid(tid, WALL)  # it is stopped
    try:
        yield
    finally:
        if libc.ptrace(PTRACE_DETACH, tid, None, None) != 0:  # the process ended meanwhile: reap the thread
            os.waitpid(tid, WALL)


def jack_env(name: str) -> dict[str, str]:
    return {"JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}


@pytest.mark.mqtt
def test_an_input_client_that_stops_running_is_replaced_and_the_daemon_hears_on(tmp_path, mosquitto, monkeypatch):
    """A play test on a loaded machine: improvd's input client stopped running (``improvd's JACK input has heard
    nothing, not even its own probes, for 11 s``) and improvd exited with status 1 mid-session. Now a new input
    client takes its place, connected to the named port, with one error event; the key held through thru meanwhile
    is released, and what the player plays next is heard (passed through to the synth)."""
    import rtmidi

    name = f"improvd-deaf-{os.getpid()}"
    server = JackServer(name, tmp_path / "jackd.log")
    server.start()
    for key, value in jack_env(name).items():  # for the keyboard's and the synth's clients, made here
        monkeypatch.setenv(key, value)
    keys = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="keys")
    keys.open_virtual_port("out")
    synth = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="synth")
    synth.open_virtual_port("in")
    heard: list[list[int]] = []

    def synth_heard(message: list[int]) -> bool:
        while (event := synth.get_message()) is not None:
            heard.append(event[0])
        return message in heard

    def played(message: list[int]) -> bool:
        keys.send_message(message)
        time.sleep(0.1)
        return synth_heard(message)

    probe = Probe(mosquitto)
    mqtt = ["--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port), "--instance", INSTANCE]
    args = ["--thru", "--input", "keys", "--output", "synth", *mqtt]
    daemon = Daemon(tmp_path, args, env=jack_env(name), mqtt=True)
    try:
        daemon.wait_log("ready", timeout=30)
        wait_for(lambda: any(p.endswith(":probe") for p in server.ports()), 30, "improvd's prober")
        wait_for(lambda: played([0x90, 60, 70]), 30, "a key held, passed through")
        with stopped(jack_process_thread(daemon.process.pid, "improvd-in")):
            wait_for(lambda: "JACK input is now" in daemon.text() or daemon.process.poll() is not None, 60, "it")
        wait_for(lambda: synth_heard([0x80, 60, 0]), 30, "the held key released by improvd")
        wait_for(lambda: played([0x90, 62, 70]), 30, "a key heard through the new input client")
        assert daemon.stop() == 0, daemon.text()
        assert "stopped running: left to the exit" in daemon.text()  # deleted, it crashed the exit now and then
    finally:
        keys.delete()
        synth.delete()
        server.stop()
        daemon.stop()
        probe.close()
    errors = [e for e in probe.events("error") if "input client stopped running" in e["reason"]]
    assert [e["input_reopened"] for e in errors] == [1], probe.payloads("events")


@pytest.mark.mqtt
def test_an_output_client_that_stops_running_is_replaced_and_the_daemon_plays_on(tmp_path, mosquitto, monkeypatch):
    """A play test: improvd's output client stopped running (jackd: ``client = improvd-01 was not finished``);
    improvd played on into nothing, then exited with status 1. Now a new output client takes its place, connected
    to the named port, with one error event: the metronome's clicks reach the synth again."""
    import rtmidi

    name = f"improvd-replaced-{os.getpid()}"
    server = JackServer(name, tmp_path / "jackd.log")
    server.start()
    for key, value in jack_env(name).items():  # for the synth's client, made here
        monkeypatch.setenv(key, value)
    synth = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="synth")
    synth.open_virtual_port("in")
    probe = Probe(mosquitto)
    mqtt = ["--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port), "--instance", INSTANCE]
    daemon = Daemon(tmp_path, ["--metronome", "--output", "synth", *mqtt], env=jack_env(name), mqtt=True)

    def clicked() -> bool:
        message = synth.get_message()
        while message is not None and message[0][0] & 0xF0 != 0x90:
            message = synth.get_message()
        return message is not None

    try:
        daemon.wait_log("ready", timeout=30)
        wait_for(lambda: any(p.endswith(":probe") for p in server.ports()), 30, "improvd's prober")
        wait_for(clicked, 30, "the first click")
        with stopped(jack_process_thread(daemon.process.pid, "improvd-out")):
            wait_for(lambda: "JACK output is now" in daemon.text() or daemon.process.poll() is not None, 60, "it")
        while synth.get_message() is not None:  # what came before
            pass
        wait_for(clicked, 30, "a click through the new output client")
        assert daemon.stop() == 0, daemon.text()
        assert "stopped running: left to the exit" in daemon.text()  # deleted, it crashed the exit now and then
    finally:
        synth.delete()
        server.stop()
        daemon.stop()
        probe.close()
    errors = [e for e in probe.events("error") if "output client stopped running" in e["reason"]]
    assert [e["output_reopened"] for e in errors] == [1], probe.payloads("events")


def test_a_daemon_stopped_while_its_jack_server_is_stopped_exits(tmp_path):
    """jackd stopped (SIGSTOP), then SIGTERM: the exit hung for ever in rtmidi's close, which holds the interpreter
    lock through a server round trip that never ends. Now the server is asked first without the lock, and the
    process exits without closing the ports it does not answer for (the server drops a gone process's clients)."""
    name = f"improvd-wedged-{os.getpid()}"
    server = JackServer(name, tmp_path / "jackd.log")
    server.start()
    daemon = Daemon(tmp_path, [], env=jack_env(name))
    try:
        daemon.wait_log("ready", timeout=30)
        wait_for(lambda: any(p.endswith(":probe") for p in server.ports()), 30, "improvd's prober")
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            daemon.process.terminate()
            wait_for(lambda: daemon.process.poll() is not None, 60, "the daemon to exit")
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        # the server drops the clients of the process that is gone (seconds: it waits for each in vain first; a
        # jackd stopped meanwhile dies of SIGPIPE, and its entry in JACK's registry of servers is never freed)
        wait_for(lambda: not [p for p in server.ports() if p.startswith("improvd")], 60, "improvd's ports to go")
    finally:
        server.stop()
        daemon.stop()
    assert daemon.process.returncode == 0, daemon.text()
    assert "MIDI ports not closed (" in daemon.text()


def test_a_server_check_and_a_reconnect_leave_the_other_threads_running_while_the_server_stalls(tmp_path, monkeypatch):
    """python-rtmidi holds the interpreter lock through each call into libjack: a JACK server round trip of the port
    watcher's (a server check, a named port connected anew) held every thread of improvd, the timing thread too,
    for as long as the server took. Now they are libjack calls through ctypes, which free it: while the server is
    stopped, another thread runs, and it is the one that lets the server go on (else a fallback does, after 10 s,
    and leaves its mark)."""
    import subprocess
    import threading

    import rtmidi

    name = f"improvd-held-{os.getpid()}"
    server = JackServer(name, tmp_path / "jackd.log")
    server.start()
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    ports = MidiPorts("jack", "keys", "", lambda data, arrival: None, clock=False)
    player = None
    try:
        ports.open()  # waiting for "keys"
        player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="keys")
        player.open_virtual_port("out")
        fallback_mark = tmp_path / "fallback"
        for call in (ports._check_server, ports.poll):
            os.kill(server.process.pid, signal.SIGSTOP)
            fallback = subprocess.Popen(
                ["sh", "-c", f"sleep 10; touch {fallback_mark}; kill -CONT {server.process.pid}"]
            )
            watcher = threading.Thread(target=call, daemon=True)  # the port watcher's thread
            watcher.start()
            time.sleep(0.2)  # it waits for the stopped server by now; this thread wakes only if it is let run
            os.kill(server.process.pid, signal.SIGCONT)
            watcher.join(30)
            fallback.kill()
            fallback.wait()
            assert not fallback_mark.exists(), call.__name__
        assert ports.names()["input"] == "keys:out"  # the poll reconnected it
    finally:
        if player is not None:
            player.delete()
        ports.close()
        server.stop()
