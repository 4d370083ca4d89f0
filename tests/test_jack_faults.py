"""Faults that are JACK's own, on real JACK servers: an unterminated SysEx, a server that goes away."""

from __future__ import annotations

import os
import time

import pytest

from improvd.daemon import ports as port_module
from improvd.daemon.ports import MidiPorts
from tests.services import Daemon, JackServer, wait_for

pytestmark = pytest.mark.jack


def heard_after_unterminated_sysex(monkeypatch, probe_interval: float) -> bool:
    import rtmidi

    monkeypatch.setattr(port_module, "PROBE_INTERVAL", probe_interval)
    received: list[list[int]] = []
    ports = MidiPorts("jack", "", "", lambda data, arrival: received.append(data), clock=False)
    ports.open()

    def probing() -> bool:
        ports.probe()  # the daemon's port watcher calls it every half second; the first makes the prober
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
        return True
    finally:
        player.delete()
        ports.close()


def test_an_unterminated_sysex_does_not_deafen_the_jack_input(jack_server, monkeypatch):
    """rtmidi's JACK input drops everything after F0 without F7 until an F7 comes; the probe sends one."""
    assert heard_after_unterminated_sysex(monkeypatch, port_module.PROBE_INTERVAL)


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
