"""The [mqtt] table and its flags: defaults, validation that names the key, flags over the table."""

from __future__ import annotations

import argparse
import socket

import pytest

from improvd.mqtt import MqttConfig, MqttConfigError, add_arguments, config_from, discovery


def parse_flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--no-mqtt", action="store_true")  # the daemon's flag, merged by config_from
    return parser.parse_args(argv)


def test_defaults():
    config = MqttConfig.from_table({})
    assert (config.enabled, config.host, config.port, config.keepalive) == (True, "localhost", 1883, 60)
    assert config.instance == socket.gethostname().split(".")[0]
    assert config.prefix == f"improvd/{config.instance}"
    assert not config.uses_tls


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"port": 70000}, "mqtt.port = 70000: must be from 1 to 65535"),
        ({"port": "1883"}, "mqtt.port = '1883': must be an integer"),
        ({"enabled": "yes"}, "mqtt.enabled = 'yes': must be true or false"),
        ({"keepalive": True}, "mqtt.keepalive = True: must be an integer"),
        ({"hots": "broker"}, "mqtt.hots: unknown key (allowed: enabled, host"),
        ({"instance": "a/b"}, "mqtt.instance = 'a/b': must not hold"),
        ({"instance": "a+"}, "must not hold"),
        ({"tls_ca": "/nonexistent/ca.pem"}, "mqtt.tls_ca = '/nonexistent/ca.pem': no such file"),
        ({"password_file": "/nonexistent/pw"}, "mqtt.password_file = '/nonexistent/pw': no such file"),
        ({"host": ""}, "mqtt.host is empty"),
    ],
)
def test_bad_tables_name_the_key(table, message):
    with pytest.raises(MqttConfigError) as error:
        MqttConfig.from_table(table)
    assert message in str(error.value)


def test_password_file_and_tls(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until connecting")
    config = MqttConfig.from_table({"username": "u", "password_file": str(secret), "tls_ca": str(ca)})
    assert config.password == "hunter2"
    assert config.uses_tls
    with pytest.raises(MqttConfigError, match=r"password or mqtt\.password_file, not both"):
        MqttConfig.from_table({"password": "x", "password_file": str(secret)})
    with pytest.raises(MqttConfigError, match=r"tls_cert and mqtt\.tls_key go together"):
        MqttConfig.from_table({"tls_cert": str(ca)})


def test_flags_override_the_table(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file")
    args = parse_flags(
        "--mqtt-host", "10.0.0.2", "--mqtt-port", "8883", "--instance", "studio", "--mqtt-password-file", str(secret)
    )
    config = config_from({"host": "broker", "port": 1883, "password": "from-table", "keepalive": 30}, args)
    assert (config.host, config.port, config.instance, config.password) == ("10.0.0.2", 8883, "studio", "from-file")
    assert config.keepalive == 30
    assert config.enabled
    assert not config_from({}, parse_flags("--no-mqtt")).enabled
    with pytest.raises(MqttConfigError, match=r"mqtt\.port = 0"):
        config_from({}, parse_flags("--mqtt-port", "0"))


def test_home_assistant_discovery_points_at_the_topics():
    config = MqttConfig.from_table({"instance": "studio"})
    messages = discovery(config, "0.1.0")
    assert sorted(messages) == [
        "homeassistant/number/improvd_studio_bpm/config",
        "homeassistant/number/improvd_studio_temperature/config",
        "homeassistant/sensor/improvd_studio_mode/config",
        "homeassistant/switch/improvd_studio_enabled/config",
    ]
    temperature = messages["homeassistant/number/improvd_studio_temperature/config"]
    assert temperature["command_topic"] == "improvd/studio/set/temperature"
    assert temperature["state_topic"] == "improvd/studio/state"
    assert (temperature["min"], temperature["max"]) == (0.05, 2.0)
    assert "command_topic" not in messages["homeassistant/sensor/improvd_studio_mode/config"]
