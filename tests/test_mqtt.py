"""The control plane against a real mosquitto, steering a real engine with a tiny trained model."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from improvd.core.model import ModelError, load_model
from improvd.daemon.mqtt import REFUSALS_LOGGED, ControlPlane, MqttConfig, raise_if_cancelled
from tests.helpers import INSTANCE, PREFIX, Probe, retained
from tests.services import wait_for

engine_module = pytest.importorskip("improvd.core.engine", reason="improvd.core.engine not built yet")
paho = pytest.importorskip("paho.mqtt.client")

pytestmark = pytest.mark.mqtt


class EngineController:
    """What the daemon's controller does, in small: a real Engine and a models directory."""

    def __init__(self, models: Path, name: str) -> None:
        self.models = models
        self.model_name = name
        self.engine = engine_module.Engine(load_model(models / name), engine_module.Settings(), seed=1)
        self.engine.start(time.monotonic())
        self.commands: list[str] = []

    def state(self) -> dict:
        settings = self.engine.settings
        names = ("temperature", "bpm", "enabled", "response_steps", "phrase_end_steps")
        return {**{key: getattr(settings, key) for key in names}, "mode": self.engine.mode, "model": self.model_name}

    def apply(self, changes: dict) -> None:
        changes = dict(changes)
        model = None
        if "model" in changes:
            try:
                model = load_model(self.models / changes["model"])
            except ModelError as error:
                raise ValueError(f"model {changes['model']!r}: {error}") from None
        enabled = changes.pop("enabled", None)
        name = changes.pop("model", None)
        self.engine.update(**changes)
        if enabled is not None:
            self.engine.set_enabled(enabled, time.monotonic())
        if model is not None:
            self.engine.set_model(model)
            self.model_name = name

    def command(self, name: str) -> None:
        self.commands.append(name)
        if name == "panic":
            self.engine.panic(time.monotonic())
        else:
            self.engine.respond_now()


class Plane:
    """A ControlPlane running in a thread of its own, as in the daemon's asyncio loop."""

    def __init__(self, config: MqttConfig, controller) -> None:
        self.plane = ControlPlane(config, controller, "0.1.0-test")
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task | None = None
        self.error: BaseException | None = None
        self.forced = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.task = self.loop.create_task(self.plane.run())
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        except BaseException as error:
            if not self.forced:  # a forced loop stop ends run_until_complete with a RuntimeError
                self.error = error

    def __enter__(self) -> ControlPlane:
        self.thread.start()
        return self.plane

    def __exit__(self, *exc) -> None:
        wait_for(lambda: self.task is not None, 5, "the control plane task")
        self.loop.call_soon_threadsafe(self.task.cancel)
        # a clean stop publishes "offline" (up to 2 s), then aiomqtt may wait its own 10 s timeout for the
        # disconnect; the daemon bounds all of this with its stop grace, the test only needs the thread to end
        self.thread.join(30)
        if self.thread.is_alive():  # a control plane that ignores its cancellation: a bug, the test fails
            self.forced = True
            self.loop.call_soon_threadsafe(self.loop.stop)  # so that the test can end
            self.thread.join(10)
            raise AssertionError("the control plane did not stop on cancel within 30 s")
        assert self.error is None, self.error


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory) -> Path:
    """A models directory with two models: the tiny one and a copy under another name."""
    directory = tmp_path_factory.mktemp("models-path")
    shutil.copytree(tiny_model_dir, directory / "tiny")
    shutil.copytree(tiny_model_dir, directory / "other")
    return directory


def config_for(broker, **extra) -> MqttConfig:
    return MqttConfig.from_table({"host": broker.host, "port": broker.port, "instance": INSTANCE, **extra})


@pytest.fixture
def probe(mosquitto):
    probe = Probe(mosquitto)
    yield probe
    probe.close()


SETS = [
    ("set/temperature", "0.35", {"temperature": 0.35}),
    ("set/bpm", "90", {"bpm": 90.0}),
    ("set/enabled", "off", {"enabled": False, "mode": "idle"}),
    ("set/enabled", "1", {"enabled": True, "mode": "listening"}),
    ("set/response_steps", "match", {"response_steps": "match"}),
    ("set/response_steps", "48", {"response_steps": 48}),
    ("set/phrase_end_steps", "5", {"phrase_end_steps": 5}),
    ("set/model", "other", {"model": "other"}),
    ("set", '{"temperature": 1.5, "bpm": 140, "enabled": false}', {"temperature": 1.5, "bpm": 140.0, "enabled": False}),
]


def test_every_set_topic_changes_the_engine_and_the_retained_state(mosquitto, probe, models):
    controller = EngineController(models, "tiny")
    with Plane(config_for(mosquitto), controller):
        wait_for(lambda: probe.payloads("status") == [b"online"], 10, "status online")
        probe.wait_state(lambda s: s["model"] == "tiny", "the first state")
        for subtopic, payload, expected in SETS:
            probe.publish(subtopic, payload)
            state = probe.wait_state(lambda s, e=expected: e.items() <= s.items(), f"{subtopic} {payload}")
            engine_view = {**vars(controller.engine.settings), "mode": controller.engine.mode}
            assert {k: engine_view.get(k, controller.model_name) for k in expected} == expected
            assert json.loads(retained(mosquitto, "state")) == state
        assert retained(mosquitto, "status") == b"online"
        assert probe.events("error") == []
    assert retained(mosquitto, "status") == b"offline"  # a clean stop says so at once


BAD = [
    ("set/temperature", b"warm"),
    ("set/temperature", b"NaN"),
    ("set/temperature", b"Infinity"),
    ("set/temperature", b"5"),
    ("set/bpm", b"0"),
    ("set/enabled", b"maybe"),
    ("set/response_steps", b"1000"),
    ("set/phrase_end_steps", b"0"),
    ("set/model", b"no-such-model"),
    ("set/model", b"../tiny"),
    ("set", b"{not json"),
    ("set", b'{"temperature": 0.5, "colour": "blue"}'),
    ("set", b'{"temperature": 0.5, "bpm": 1000}'),
    ("set/temperature", b""),
    ("set/temperature", b"0.5" + b" " * 5000),
    ("set/loudness", b"3"),
    ("cmd/explode", b""),
]


def test_every_bad_payload_gives_an_error_event_and_changes_nothing(mosquitto, probe, models, caplog):
    """Each is refused with an error event, counted, and logged once per subtopic with its reason."""
    controller = EngineController(models, "tiny")
    caplog.set_level(logging.WARNING, logger="improvd")
    with Plane(config_for(mosquitto), controller) as plane:
        before = probe.wait_state(lambda s: True, "the first state")
        settings = dict(vars(controller.engine.settings))
        for subtopic, payload in BAD:
            probe.publish(subtopic, payload)
        wait_for(lambda: len(probe.events("error")) == len(BAD), 10, f"{len(BAD)} error events")
        errors = probe.events("error")
        assert [e["topic"] for e in errors] == [f"{PREFIX}/{subtopic}" for subtopic, _ in BAD]
        reasons = {e["topic"].removeprefix(PREFIX + "/") + " " + e["reason"] for e in errors}
        assert any("set/model model 'no-such-model'" in r for r in reasons)
        assert any("unknown key 'colour'" in r for r in reasons)
        assert any("over the limit of 4096" in r for r in reasons)
        assert vars(controller.engine.settings) == settings
        assert controller.model_name == "tiny" and controller.commands == []
        assert probe.state() == before
        assert plane.dropped.take() == {"refused MQTT messages": len(BAD)}
        refusals = [r.getMessage() for r in caplog.records if "MQTT: refused" in r.getMessage()]
        assert len(refusals) == len({subtopic for subtopic, _ in BAD})
        assert any(line.startswith("MQTT: refused set/temperature: ") for line in refusals)
        probe.publish("set/temperature", "0.25")  # still alive and obeying
        probe.wait_state(lambda s: s["temperature"] == 0.25, "temperature 0.25 after the bad ones")


def test_refusals_past_the_first_subtopics_are_counted_not_logged(models, caplog):
    """A flood of refused messages on ever new subtopics logs REFUSALS_LOGGED lines, and counts every message."""
    config = MqttConfig.from_table({"host": "127.0.0.1", "port": 1, "instance": INSTANCE})
    plane = ControlPlane(config, EngineController(models, "tiny"), "0")
    caplog.set_level(logging.WARNING, logger="improvd")
    for k in range(REFUSALS_LOGGED + 8):
        for _ in range(2):
            plane._handle(f"{PREFIX}/set/unknown{k}", b"1", False)
    assert plane.dropped.take() == {"refused MQTT messages": 2 * (REFUSALS_LOGGED + 8)}
    assert len([r for r in caplog.records if "MQTT: refused" in r.getMessage()]) == REFUSALS_LOGGED


def test_commands_reach_the_engine_but_retained_ones_do_not(mosquitto, probe, models):
    probe.publish("cmd/panic", b"now", retain=True)  # a mistake with -r: must not fire at every reconnect
    controller = EngineController(models, "tiny")
    with Plane(config_for(mosquitto), controller):
        wait_for(lambda: len(probe.events("error")) == 1, 10, "the error event of the retained command")
        assert "retained commands are ignored" in probe.events("error")[0]["reason"]
        assert controller.commands == []
        probe.publish("cmd/panic", b"", retain=True)  # clears it, and reaches the plane live as a panic
        probe.publish("cmd/respond", b"")
        wait_for(lambda: controller.commands == ["panic", "respond"], 10, "both commands")


def test_a_flood_of_set_messages_is_applied_and_coalesced(mosquitto, probe, models):
    controller = EngineController(models, "tiny")
    values = [round(0.1 + (i % 190) / 100, 2) for i in range(1000)]
    with Plane(config_for(mosquitto), controller):
        probe.wait_state(lambda s: True, "the first state")
        for value in values:
            probe.client.publish(f"{PREFIX}/set/temperature", str(value), qos=1)
        probe.publish("set/bpm", "77")  # after the flood, in order
        state = probe.wait_state(lambda s: s["bpm"] == 77.0, "the state after the flood")
        assert state["temperature"] == values[-1] == controller.engine.settings.temperature
        assert len(probe.payloads("state")) < len(values) / 2  # bursts give few state publishes
        assert probe.events("error") == []


def test_broker_restart_republishes_status_and_state(mosquitto, models):
    controller = EngineController(models, "tiny")
    with Plane(config_for(mosquitto), controller) as plane:
        wait_for(lambda: plane.connected, 10, "the first connection")
        controller.apply({"temperature": 0.6})
        plane.publish_state()
        wait_for(lambda: retained(mosquitto, "state") != b"", 10, "a retained state")
        mosquitto.stop()  # persistence is off: the retained messages die with the broker
        wait_for(lambda: not plane.connected, 10, "the plane to notice")
        controller.apply({"bpm": 101})  # the music goes on while the broker is away
        mosquitto.start()
        wait_for(lambda: plane.connected, 20, "the reconnection")
        probe = Probe(mosquitto)
        try:
            state = probe.wait_state(lambda s: True, "the republished state")
            assert (state["temperature"], state["bpm"]) == (0.6, 101.0)
            wait_for(lambda: probe.payloads("status") == [b"online"], 10, "status online again")
            probe.publish("set/temperature", "0.9")  # subscribed again
            probe.wait_state(lambda s: s["temperature"] == 0.9, "a set after the restart")
        finally:
            probe.close()


def test_wrong_password_is_reported_clearly_and_nothing_stops(mosquitto_with_password, models, caplog, tmp_path):
    broker = mosquitto_with_password
    secret = tmp_path / "pw"
    secret.write_text("wrong\n")
    controller = EngineController(models, "tiny")
    caplog.set_level(logging.WARNING, logger="improvd.daemon.mqtt")
    with Plane(config_for(broker, username="improvd", password_file=str(secret)), controller) as plane:
        wait_for(lambda: "refused the login of user 'improvd'" in caplog.text, 10, "the refusal in the log")
        assert "check mqtt.username and mqtt.password_file" in caplog.text
        controller.apply({"temperature": 0.4})  # the daemon keeps playing and obeying its own controls
        assert not plane.connected
    secret.write_text(broker.password[1] + "\n")
    with Plane(config_for(broker, username="improvd", password_file=str(secret)), controller):
        wait_for(lambda: retained(broker, "status") == b"online", 10, "online with the right password")
        assert json.loads(retained(broker, "state"))["temperature"] == 0.4


def discovery_configs(probe) -> dict[str, bytes]:
    """The newest payload on each discovery topic the probe saw."""
    with probe.lock:
        return {t: payload for t, payload, _ in probe.messages if t.startswith("homeassistant/")}


def test_home_assistant_discovery_is_retained_and_cleared_when_turned_off(mosquitto, probe, models):
    with Plane(config_for(mosquitto, homeassistant=True), EngineController(models, "tiny")):
        probe.wait_state(lambda s: True, "the first state")
        # temperature, bpm, enabled, response_steps, phrase_end_steps, model, mode, respond, panic, forget
        wait_for(lambda: len([p for p in discovery_configs(probe).values() if p]) == 10, 10, "10 configs")
    configs = {t: json.loads(p) for t, p in discovery_configs(probe).items() if p}
    switch = configs["homeassistant/switch/improvd_test/enabled/config"]
    assert switch["command_topic"] == f"{PREFIX}/set/enabled"
    assert switch["availability_topic"] == f"{PREFIX}/status"
    assert configs["homeassistant/select/improvd_test/model/config"]["options"] == ["tiny"]
    with Plane(config_for(mosquitto, homeassistant=False), EngineController(models, "tiny")):
        wait_for(lambda: all(discovery_configs(probe)[t] == b"" for t in configs), 10, "every config cleared")
    leftover = subprocess.run(
        ["mosquitto_sub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", "homeassistant/#", "-W", "2", "-v"],
        capture_output=True,
        timeout=10,
    )
    assert leftover.stdout == b""  # no retained config left on the broker


class QueuedController(EngineController):
    """Like the daemon: a change lands later, in another thread, which then asks for the state to be published."""

    reports_changes = True
    plane: ControlPlane | None = None

    def apply(self, changes: dict) -> None:
        threading.Timer(0.15, self._land, (changes,)).start()

    def _land(self, changes: dict) -> None:
        super().apply(changes)
        self.plane.publish_state()


def test_state_is_published_once_per_change_with_the_new_values(mosquitto, probe, models):
    controller = QueuedController(models, "tiny")
    with Plane(config_for(mosquitto), controller) as plane:
        controller.plane = plane
        probe.wait_state(lambda s: s["bpm"] == 120, "the first state")
        before = len(probe.payloads("state"))
        probe.publish("set/bpm", "96")
        probe.wait_state(lambda s: s["bpm"] == 96, "bpm 96")
        plane.publish_state()  # a report that changed nothing publishes nothing
        probe.publish("set/temperature", "0.3")  # a change after both: every publish before it has come
        probe.wait_state(lambda s: s["temperature"] == 0.3, "temperature 0.3")
        states = [json.loads(p) for p in probe.payloads("state")[before:]]
        assert [(s["bpm"], s["temperature"]) for s in states] == [(96, 1.0), (96, 0.3)]


CHILD = """
import asyncio, sys
from improvd.daemon.mqtt import ControlPlane, MqttConfig

class Controller:
    def state(self): return {"mode": "listening"}
    def apply(self, changes): pass
    def command(self, name): pass

config = MqttConfig.from_table({"host": "127.0.0.1", "port": int(sys.argv[1]), "instance": "test"})
asyncio.run(ControlPlane(config, Controller(), "0").run())
"""


def test_last_will_marks_a_killed_process_offline(mosquitto, probe, repo_root):
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(mosquitto.port)], cwd=repo_root)
    try:
        wait_for(lambda: probe.payloads("status") == [b"online"], 20, "the child online")
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        wait_for(lambda: probe.payloads("status")[-1:] == [b"offline"], 10, "the Last Will")  # keepalive not needed:
        assert retained(mosquitto, "status") == b"offline"  # the socket closes
    finally:
        if child.poll() is None:
            child.kill()


def test_a_cancellation_swallowed_by_wait_for_is_still_honoured():
    """CPython before 3.12 loses a cancel that meets a finished future in wait_for; run() must still stop."""

    async def scenario() -> tuple[bool, bool]:
        done = asyncio.get_running_loop().create_future()
        swallowed = asyncio.Event()

        async def body() -> None:
            await asyncio.wait_for(done, 10)
            swallowed.set()  # reached only where wait_for dropped the cancel
            raise_if_cancelled()

        task = asyncio.ensure_future(body())
        await asyncio.sleep(0)  # the body waits in wait_for
        done.set_result(None)
        task.cancel()  # in the same turn as the result
        try:
            await task
        except asyncio.CancelledError:
            return True, swallowed.is_set()
        return False, swallowed.is_set()

    cancelled, swallowed = asyncio.run(scenario())
    assert cancelled
    if sys.version_info < (3, 12):
        assert swallowed  # the case the helper exists for really happens here
