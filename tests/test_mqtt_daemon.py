"""`improvd run` with MQTT, as a subprocess on real JACK ports and a real mosquitto."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import mido
import pytest

from tests.helpers import PREFIX, Probe, Synth, first_phrase, play, retained
from tests.services import Daemon, wait_for

pytestmark = [pytest.mark.jack, pytest.mark.mqtt]

BPM = 240


def mqtt_daemon(tmp_path: Path, broker, *args: str) -> Daemon:
    """`improvd run --midi-api jack` with MQTT on, talking to ``broker``."""
    mqtt = ["--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--instance", PREFIX.split("/")[1]]
    return Daemon(tmp_path, [*mqtt, *args], mqtt=True)


def model_args(tiny_model_dir: Path) -> list[str]:
    return ["--model", str(tiny_model_dir), "--bpm", str(BPM), "--seed", "3", "--phrase-end-steps", "4"]


@pytest.fixture
def probe(mosquitto):
    probe = Probe(mosquitto)
    yield probe
    probe.close()


def test_set_topics_change_the_daemon_and_its_retained_state(jack_server, mosquitto, probe, tiny_model_dir, tmp_path):
    daemon = mqtt_daemon(tmp_path, mosquitto, *model_args(tiny_model_dir))
    try:
        state = probe.wait_state(lambda s: True, "the daemon's first state")
        assert probe.payloads("status") == [b"online"]
        assert {"temperature", "bpm", "enabled", "mode", "model", "clock", "ports", "timing", "version"} <= set(state)
        assert (state["bpm"], state["mode"]) == (BPM, "listening")
        probe.publish("set/temperature", "0.4")
        probe.wait_state(lambda s: s["temperature"] == 0.4, "temperature 0.4")
        probe.publish("set", '{"bpm": 90, "response_steps": "match", "enabled": false}')
        state = probe.wait_state(lambda s: s["bpm"] == 90 and not s["enabled"], "bpm 90 and disabled")
        assert (state["response_steps"], state["mode"]) == ("match", "idle")
        probe.publish("set/bpm", "9000")
        wait_for(lambda: probe.events("error"), 10, "the error event")
        assert "bpm must be a number from 20 to 300" in probe.events("error")[0]["reason"]
        assert json.loads(retained(mosquitto, "state"))["bpm"] == 90
        assert (state["session_memory"], state["memory_phrases"], state["remembered"]) == (True, 8, 0)
        probe.publish("set/memory_phrases", "3")
        probe.wait_state(lambda s: s["memory_phrases"] == 3, "memory_phrases 3")
        probe.publish("cmd/forget", "")
        wait_for(lambda: probe.events("forget"), 10, "the forget event")
        assert probe.events("forget")[0]["phrases"] == 0
    finally:
        assert daemon.stop() == 0, daemon.text()
    assert retained(mosquitto, "status") == b"offline"  # a clean stop says so


def test_sigkill_leaves_the_last_will_offline(jack_server, mosquitto, probe, tiny_model_dir, tmp_path):
    daemon = mqtt_daemon(tmp_path, mosquitto, *model_args(tiny_model_dir))
    try:
        wait_for(lambda: probe.payloads("status") == [b"online"], 20, "the daemon online")
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(5)
        wait_for(lambda: probe.payloads("status")[-1:] == [b"offline"], 10, "the Last Will")
        assert retained(mosquitto, "status") == b"offline"
    finally:
        daemon.stop()


def test_broker_restart_brings_the_daemon_back_with_its_state(jack_server, mosquitto, tiny_model_dir, tmp_path):
    daemon = mqtt_daemon(tmp_path, mosquitto, *model_args(tiny_model_dir), "--temperature", "0.7")
    try:
        wait_for(lambda: retained(mosquitto, "status") == b"online", 20, "the daemon online")
        mosquitto.stop()  # persistence is off: the retained state is gone with the broker
        daemon.wait_log("MQTT: lost the broker")
        mosquitto.start()
        probe = Probe(mosquitto)
        try:
            state = probe.wait_state(lambda s: True, "the republished state")
            assert state["temperature"] == 0.7
            wait_for(lambda: probe.payloads("status") == [b"online"], 10, "online again")
            probe.publish("set/temperature", "1.2")  # subscribed again
            probe.wait_state(lambda s: s["temperature"] == 1.2, "a set after the restart")
        finally:
            probe.close()
    finally:
        assert daemon.stop() == 0, daemon.text()


def test_wrong_password_is_logged_clearly_and_the_daemon_keeps_playing(
    jack_server, jack_midi, mosquitto_with_password, tiny_model_dir, tmp_path
):
    secret = tmp_path / "password"
    secret.write_text("not-the-password\n")
    synth = Synth()
    player = jack_midi.open_output("out", client_name="player")
    daemon = mqtt_daemon(
        tmp_path,
        mosquitto_with_password,
        *model_args(tiny_model_dir),
        "--input", "player", "--output", "synth",
        "--mqtt-username", "improvd", "--mqtt-password-file", str(secret),
    )  # fmt: skip
    try:
        daemon.wait_log("refused the login of user 'improvd'")
        assert "check mqtt.username and mqtt.password_file" in daemon.text()
        daemon.wait_log("ready")
        play(player, first_phrase("erk5#5")[:8], BPM)  # a phrase of a real Essen tune
        wait_for(synth.note_ons, 10, "the daemon's answer while MQTT is refused")
        assert daemon.process.poll() is None
    finally:
        code = daemon.stop()
        player.close()
        synth.close()
    assert code == 0, daemon.text()


def test_a_midi_cc_change_of_temperature_shows_in_the_state(
    jack_server, jack_midi, mosquitto, probe, tiny_model_dir, tmp_path
):
    config = tmp_path / "improvd.toml"
    config.write_text("[cc]\ntemperature = 21\n")
    player = jack_midi.open_output("out", client_name="player")
    daemon = mqtt_daemon(tmp_path, mosquitto, *model_args(tiny_model_dir), "--config", str(config), "--input", "player")
    try:
        probe.wait_state(lambda s: s["temperature"] == 1.0, "the first state")
        daemon.wait_log("input player:out")
        player.send(mido.Message("control_change", control=21, value=127))
        probe.wait_state(lambda s: s["temperature"] == 2.0, "temperature 2.0 from CC 21 = 127")
    finally:
        player.close()
        assert daemon.stop() == 0, daemon.text()


def test_phrase_and_response_events_are_published(jack_server, jack_midi, mosquitto, probe, tiny_model_dir, tmp_path):
    player = jack_midi.open_output("out", client_name="player")
    daemon = mqtt_daemon(tmp_path, mosquitto, *model_args(tiny_model_dir), "--input", "player")
    try:
        daemon.wait_log("input player:out")
        wait_for(lambda: probe.payloads("status") == [b"online"], 10, "online")
        play(player, first_phrase("erk5#5")[:8], BPM)  # a phrase of a real Essen tune
        wait_for(lambda: probe.events("response_end"), 20, f"the response_end event; daemon log:\n{daemon.text()}")
        names = [json.loads(p)["event"] for p in probe.payloads("events")]
        assert names[:3] == ["phrase_end", "response_start", "response_end"]
    finally:
        player.close()
        assert daemon.stop() == 0, daemon.text()
