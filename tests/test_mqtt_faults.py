"""A message that fails inside improvd gives one log line without a traceback, then counts; no broker needed."""

from __future__ import annotations

import logging

from improvd.mqtt import ControlPlane, MqttConfig


class Failing:
    """A controller whose apply fails as a bug would."""

    def state(self) -> dict:
        return {}

    def apply(self, changes: dict) -> None:
        raise RuntimeError("a bug")

    def command(self, name: str) -> None:
        raise RuntimeError("a bug")


def plane() -> ControlPlane:
    control = ControlPlane(MqttConfig(instance="test"), Failing(), "0")
    control.connected = True  # events are queued only while connected
    return control


def test_repeated_internal_failures_give_one_line_and_counts(caplog):
    control = plane()
    with caplog.at_level(logging.DEBUG, logger="improvd.mqtt"):
        for _ in range(50):
            control._handle("improvd/test/set/temperature", b"0.5", False)
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is None
    assert control.dropped.take() == {"MQTT messages that failed (RuntimeError)": 50}
    assert len(control._events) == 50


def test_a_nesting_bomb_is_an_error_event_and_no_log(caplog):
    control = plane()
    with caplog.at_level(logging.DEBUG, logger="improvd.mqtt"):
        control._handle("improvd/test/set", b"[" * 1900 + b"]" * 1900, False)
        control._handle("improvd/test/set/temperature", b"9" * 4000, False)
    assert caplog.records == []
    reasons = [data["reason"] for name, data in control._events]
    assert "nested deeper" in reasons[0]
    assert "characters is over the limit" in reasons[1]
