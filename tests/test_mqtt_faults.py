"""A message that fails inside improvd gives one log line without a traceback, then counts; no broker needed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from improvd.daemon.mqtt import ControlPlane, MqttConfig


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
    with caplog.at_level(logging.DEBUG, logger="improvd.daemon.mqtt"):
        for _ in range(50):
            control._handle("improvd/test/set/temperature", b"0.5", False)
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is None
    assert control.dropped.take() == {"MQTT messages that failed (RuntimeError)": 50}
    assert len(control._events) == 50


def test_a_nesting_bomb_is_an_error_event_and_one_short_line(caplog):
    """Each refusal is an error event; the log has one short line per subtopic, never the payload."""
    control = plane()
    with caplog.at_level(logging.DEBUG, logger="improvd.daemon.mqtt"):
        for _ in range(3):
            control._handle("improvd/test/set", b"[" * 1900 + b"]" * 1900, False)
            control._handle("improvd/test/set/temperature", b"9" * 4000, False)
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split(":")[1] for line in lines] == [" refused set", " refused set/temperature"]
    assert all(len(line) < 300 and "[[[" not in line and "9999" not in line for line in lines)
    reasons = [data["reason"] for name, data in control._events]
    assert "nested deeper" in reasons[0]
    assert "characters is over the limit" in reasons[1]


def test_a_swallowed_cancellation_is_honoured_without_task_cancelling(monkeypatch):
    """Before Python 3.11 Task.cancelling does not exist (pyproject allows 3.10): request_stop still stops."""
    from improvd.daemon import mqtt

    monkeypatch.setattr(mqtt, "raise_if_cancelled", lambda: None)  # what it does where Task.cancelling is missing
    control = plane()

    async def scenario() -> bool:
        done = asyncio.get_running_loop().create_future()

        async def body() -> None:
            await asyncio.wait_for(done, 10)
            control._raise_if_stopping()
            await asyncio.sleep(3600)  # a loop that would never end

        task = asyncio.ensure_future(body())
        await asyncio.sleep(0)
        done.set_result(None)
        control.request_stop()
        task.cancel()  # in the same turn as the result: wait_for may swallow it
        try:
            await asyncio.wait_for(task, 5)
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(scenario())


class Acked:
    """aiomqtt.Client's publish as it waits for its PUBACK: ``wait_for`` on a future the broker's reply completes."""

    def __init__(self) -> None:
        self.acks: list[asyncio.Future] = []

    async def publish(self, topic: str, payload, qos: int = 0, retain: bool = False) -> None:
        ack = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        await asyncio.wait_for(ack, 10)


@pytest.mark.parametrize("what", ["state", "event"])
def test_the_publish_loop_stops_when_a_puback_meets_the_cancel(what):
    """Before Python 3.12 ``wait_for`` drops a cancel that meets its finished future (the PUBACK in the same
    turn as the stop); the publish loop must still end, not wait for the next wake for ever (commit 441fdc2)."""
    control = plane()

    async def scenario() -> bool:
        control._wake = asyncio.Event()
        control._state_pending = what == "state"
        if what == "event":
            control.publish_event("phrase_end", {"call_steps": 12})
        control._wake.set()
        client = Acked()
        task = asyncio.ensure_future(control._publish_loop(client))
        while not client.acks:
            await asyncio.sleep(0)
        client.acks[0].set_result(None)  # the PUBACK ...
        task.cancel()  # ... in the same turn as the stop
        try:
            await asyncio.wait_for(task, 2)
        except asyncio.CancelledError:
            return True
        except asyncio.TimeoutError:
            return False
        return False

    assert asyncio.run(scenario()), "the publish loop went on after its cancellation"
