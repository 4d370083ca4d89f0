"""The daemon steered over a real mosquitto: settings change its state, a bad value is refused, state is retained."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.services import require_binary, wait_for
from tests.test_daemon import Daemon

pytestmark = [pytest.mark.jack, pytest.mark.mqtt]


def retained_state(broker, instance: str) -> dict:
    sub = require_binary("mosquitto_sub", "mosquitto-clients")
    out = subprocess.run(
        [sub, "-h", broker.host, "-p", str(broker.port), "-t", f"improvd/{instance}/state", "-C", "1", "-W", "5"],
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out) if out.strip() else {}


def publish(broker, topic: str, payload: str) -> None:
    pub = require_binary("mosquitto_pub", "mosquitto-clients")
    subprocess.run([pub, "-h", broker.host, "-p", str(broker.port), "-t", topic, "-m", payload], check=True)


def test_mqtt_sets_the_temperature_and_refuses_a_bad_one(tmp_path, tiny_model_dir, jack_server, mosquitto):
    args = ["--model", str(tiny_model_dir), "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)]
    daemon = Daemon(tmp_path, [*args, "--instance", "bench"], mqtt=True)
    try:
        daemon.wait_log("MQTT: connected")
        state = retained_state(mosquitto, "bench")
        assert state["temperature"] == 1.0 and state["mode"] == "listening"
        assert set(state["ports"]) == {"input", "output"} and "p99_ms" in state["timing"]
        publish(mosquitto, "improvd/bench/set/temperature", "0.3")
        wait_for(lambda: retained_state(mosquitto, "bench").get("temperature") == 0.3, 10, "temperature 0.3")
        publish(mosquitto, "improvd/bench/set", '{"bpm": 90, "model": "no-such-model"}')
        time.sleep(0.5)
        assert retained_state(mosquitto, "bench")["bpm"] == 120  # all or nothing: the bad model refused both
    finally:
        assert daemon.stop() == 0
