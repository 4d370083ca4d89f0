"""The [mqtt] table and its flags: defaults, validation that names the key, flags over the table."""

from __future__ import annotations

import argparse
import os
import re
import socket

import pytest

from improvd.daemon.control import parse
from improvd.daemon.mqtt import (
    MqttConfig,
    MqttConfigError,
    add_arguments,
    config_from,
    discovery,
    discovery_node,
    discovery_topics,
)


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
        ({"instance": "x" * 70_000}, "(70000 characters): at most 64 characters"),
        ({"instance": "studio\udcff"}, "mqtt.instance = 'studio\\udcff': not UTF-8 text"),
        ({"instance": "a\tb"}, "mqtt.instance = 'a\\tb': must not hold control characters"),
        ({"client_id": "c" * 2000}, "mqtt.client_id = 'ccc"),
        ({"username": "\udcff"}, "mqtt.username = '\\udcff': not UTF-8 text"),
    ],
)
def test_bad_tables_name_the_key(table, message):
    """A 70,000-character instance, or one of bytes that are not UTF-8, killed the control plane after READY."""
    with pytest.raises(MqttConfigError) as error:
        MqttConfig.from_table(table)
    assert message in str(error.value)
    assert len(str(error.value)) < 200


def test_an_instance_flag_of_bytes_that_are_not_utf8_is_refused():
    """argv bytes that are not UTF-8 reach Python as lone surrogates; publishing them raised UnicodeEncodeError."""
    flags = parse_flags("--instance", os.fsdecode(b"studio\xff"))
    with pytest.raises(MqttConfigError, match=r"mqtt.instance = .*: not UTF-8 text"):
        config_from({}, flags)


def test_a_password_file_over_the_limit_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 5000)
    with pytest.raises(MqttConfigError, match=r"password_file = .*: cannot be read \(over the limit of 1024 bytes\)"):
        MqttConfig.from_table({"password_file": str(secret)})


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


# Home Assistant's MQTT discovery rules (home-assistant.io/integrations/mqtt, number.mqtt, select.mqtt, button.mqtt,
# sensor.mqtt, switch.mqtt, text.mqtt): the config topic is <prefix>/<component>/[<node_id>/]<object_id>/config with ids of
# [a-zA-Z0-9_-]; default_entity_id (not the deprecated object_id) is <component>.<slug of [a-z0-9_]>; origin needs a
# name; an enum sensor has options and no unit or state class; a button has no state.
CONFIG_TOPIC = re.compile(
    r"homeassistant/(number|select|switch|sensor|button|text)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config"
)
COMMON_KEYS = {
    "name", "unique_id", "default_entity_id", "device", "origin", "availability_topic", "payload_available",
    "payload_not_available", "json_attributes_topic", "json_attributes_template", "icon", "entity_category",
}  # fmt: skip
KEYS = {  # documented options each component may carry (beyond COMMON_KEYS), and those it must
    "number": ({"command_topic", "state_topic", "value_template", "min", "max", "step", "mode",
                "unit_of_measurement", "payload_reset"}, {"command_topic", "min", "max", "step"}),
    "select": ({"command_topic", "state_topic", "value_template", "options"}, {"command_topic", "options"}),
    "switch": ({"command_topic", "state_topic", "value_template", "payload_on", "payload_off", "state_on",
                "state_off"}, {"command_topic"}),
    "sensor": ({"state_topic", "value_template", "device_class", "options", "unit_of_measurement"}, {"state_topic"}),
    "button": ({"command_topic", "payload_press"}, {"command_topic"}),
    "text": ({"command_topic", "state_topic", "value_template", "pattern", "min", "max", "mode"}, {"command_topic"}),
}  # fmt: skip
ENTITIES = {
    "number": {"temperature", "bpm", "response_bars", "response_steps", "phrase_end_steps", "count_in_bars",
               "output_channel", "program", "memory_phrases"},
    "switch": {"enabled", "metronome", "thru", "session_memory"},
    "select": {"model", "groove", "key", "phrase_end", "turns"},
    "sensor": {"mode", "clock", "beat_bpm", "remembered"},
    "button": {"respond", "panic", "forget"},
    "text": {"meter", "range"},
}  # fmt: skip
DAEMON_STATE = {  # what Daemon.state() holds
    **dict.fromkeys(("temperature", "bpm", "enabled", "response_steps", "response_bars", "meter", "groove")),
    **dict.fromkeys(("metronome", "count_in_bars", "thru", "recording", "phrase_end_steps", "clock", "ports")),
    **dict.fromkeys(("beat_bpm", "output_channel", "program", "key", "range", "phrase_end", "turns")),
    **dict.fromkeys(("session_memory", "memory_phrases", "remembered")),
    "mode": "listening", "model": "essen", "timing": {}, "version": "0.1.0",
}  # fmt: skip


@pytest.mark.parametrize("instance", ["studio", "My Studio", "living.room", "Küche 2", "日本", "a-b_c"])
def test_home_assistant_configs_follow_the_discovery_rules(instance):
    config = MqttConfig.from_table({"instance": instance})
    node = discovery_node(instance)
    assert re.fullmatch(r"improvd_[a-z0-9_]+", node)
    messages = discovery(config, "0.1.0", DAEMON_STATE, ["essen", "folk-2"])
    found: dict[str, set[str]] = {}
    for topic, payload in messages.items():
        component = CONFIG_TOPIC.fullmatch(topic).group(1)
        allowed, required = KEYS[component]
        assert required <= set(payload) <= allowed | COMMON_KEYS, topic
        assert "object_id" not in payload
        key = topic.split("/")[3]
        found.setdefault(component, set()).add(key)
        assert payload["unique_id"] == f"{node}_{key}"
        assert re.fullmatch(rf"{component}\.[a-z0-9_]+", payload["default_entity_id"])
        assert payload["origin"]["name"] == "improvd" and payload["device"]["identifiers"] == [node]
        assert payload["availability_topic"] == f"improvd/{instance}/status"
        assert ("state_topic" in payload) == (component != "button")
        assert_command_is_accepted(instance, component, payload)
    assert found == ENTITIES
    assert len({p["unique_id"] for p in messages.values()}) == len(messages)
    mode = messages[f"homeassistant/sensor/{node}/mode/config"]
    assert mode["device_class"] == "enum" and set(mode["options"]) == {"idle", "counting_in", "listening", "responding"}
    assert "unit_of_measurement" not in mode and "state_class" not in mode
    assert mode["json_attributes_topic"] == f"improvd/{instance}/state"
    assert messages[f"homeassistant/select/{node}/model/config"]["options"] == ["essen", "folk-2"]


def assert_command_is_accepted(instance: str, component: str, payload: dict) -> None:
    """What Home Assistant sends on the command topic is a message improvd accepts."""
    prefix = f"improvd/{instance}/"
    if "command_topic" not in payload:
        return
    subtopic = payload["command_topic"].removeprefix(prefix)
    samples = {
        "number": [payload.get("min"), payload.get("max")],
        "switch": [payload.get("payload_on"), payload.get("payload_off")],
        "select": payload.get("options"),
        "button": [payload.get("payload_press", "PRESS")],
        "text": [{"set/meter": "3/4", "set/range": "48 84"}.get(subtopic)],
    }[component]
    if component == "text":
        assert all(re.fullmatch(payload["pattern"], sample) for sample in samples)
    for sample in samples:
        text = str(int(sample)) if isinstance(sample, float) and sample.is_integer() else str(sample)
        parse(subtopic, text.encode())


def test_home_assistant_ids_differ_for_names_that_differ_in_other_characters_only():
    assert discovery_node("日本") != discovery_node("中国")
    assert discovery_node("My Studio") == "improvd_my_studio"


def test_home_assistant_entities_follow_the_controllers_state():
    """A controller without a metronome gets no metronome switch; the model select lists the current model."""
    config = MqttConfig.from_table({"instance": "studio"})
    state = {"temperature": 1.0, "bpm": 120, "enabled": True, "mode": "idle", "model": "tiny"}
    messages = discovery(config, "0.1.0", state, [])
    keys = {topic.split("/")[1] + "/" + topic.split("/")[3] for topic in messages}
    assert keys == {
        "number/temperature", "number/bpm", "switch/enabled", "sensor/mode", "select/model", "button/respond",
        "button/panic", "button/forget",
    }  # fmt: skip
    assert messages["homeassistant/select/improvd_studio/model/config"]["options"] == ["tiny"]
    assert "json_attributes_topic" not in messages["homeassistant/sensor/improvd_studio/mode/config"]


def test_discovery_topics_cover_every_config_and_the_old_layout():
    config = MqttConfig.from_table({"instance": "studio"})
    topics = discovery_topics(config)
    assert set(discovery(config, "0.1.0")) <= topics
    assert "homeassistant/number/improvd_studio_temperature/config" in topics  # before 0.2
