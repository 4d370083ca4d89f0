"""The MQTT control plane: settings, commands, retained state and events under ``improvd/<instance>``.

The music never waits for MQTT. ``ControlPlane.run`` lives in the daemon's
asyncio loop, connects with backoff (capped at 30 s), and on every (re)connect
subscribes again and republishes ``status`` and ``state``. ``publish_state``
and ``publish_event`` may be called from any thread and never block: state
publishes are coalesced (the newest state wins), events wait in a bounded queue
(the oldest are dropped when MQTT cannot keep up). Every message is parsed by
``improvd.daemon.control``; a rejected one gives an ``error`` event and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import aiomqtt

from improvd.core.keys import key_name
from improvd.core.schema import AUTO, BY_NAME, MAX_TURN_BARS
from improvd.daemon.config import read_capped
from improvd.daemon.control import VALIDATORS as MQTT_SETTINGS
from improvd.daemon.control import ControlError, parse
from improvd.daemon.tally import Tally

log = logging.getLogger("improvd.daemon.mqtt")

BACKOFF_START = 1.0  # seconds before the first retry
BACKOFF_CAP = 30.0
STATE_INTERVAL = 0.05  # at most one state publish per interval: a burst of changes gives one publish
EVENT_QUEUE = 1000
REFUSALS_LOGGED = 32  # subtopics whose first refused message is logged with its reason; the rest are counted
OFFLINE_TIMEOUT = 0.5  # seconds to publish "offline" at a clean exit (the daemon waits this long for it)
LAST_EVENTS = 4  # events still queued at a clean exit that are published before "offline" (the newest)
TOPIC_CHARS_FORBIDDEN = set("+#/\0")
MAX_INSTANCE_CHARS = 64  # the instance name (a host name has at most 63)
MAX_TEXT_CHARS = 1024  # every other text setting of [mqtt], and the password file
TEXT_KEYS = ("instance", "host", "username", "password", "client_id", "discovery_prefix")


class Controller(Protocol):
    """What the control plane steers (the daemon implements it).

    Optional: ``models() -> list[str]``, the names ``set/model`` accepts (the options of Home Assistant's model
    select); and ``reports_changes = True`` when apply and command only queue a change and the controller calls
    ``ControlPlane.publish_state`` once it has landed, so that the state is published once, with the new values.
    Without it the control plane publishes the state right after apply or command.
    """

    def state(self) -> dict: ...

    def apply(self, changes: dict) -> None: ...

    def command(self, name: str) -> None: ...


class MqttConfigError(ValueError):
    """A bad ``[mqtt]`` setting or flag; the text names the key, the value and what is allowed."""


@dataclass(frozen=True)
class MqttConfig:
    """The ``[mqtt]`` table of the configuration file (flags override it)."""

    enabled: bool = True
    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    tls: bool = False  # TLS with the system's CAs; tls_ca turns it on with a CA file of its own
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    client_id: str | None = None
    instance: str = ""  # "" = the host name
    keepalive: int = 60
    homeassistant: bool = False
    discovery_prefix: str = "homeassistant"

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> MqttConfig:
        """Validate an ``[mqtt]`` TOML table (unknown keys and wrong types are errors)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise MqttConfigError(f"mqtt.{unknown[0]}: unknown key (allowed: {', '.join(known)})")
        for key, value in table.items():
            _check_type(key, value, cls.__dataclass_fields__[key].default)
        return cls(**table).validated()

    def validated(self) -> MqttConfig:
        """Check ranges and files; fill in the instance and read the password file."""
        if not 1 <= self.port <= 65535:
            raise MqttConfigError(f"mqtt.port = {self.port}: must be from 1 to 65535")
        if not 5 <= self.keepalive <= 65535:
            raise MqttConfigError(f"mqtt.keepalive = {self.keepalive}: must be from 5 to 65535 seconds")
        if not self.host:
            raise MqttConfigError("mqtt.host is empty: give a host name or address")
        config = self if self.instance else replace(self, instance=socket.gethostname().split(".")[0] or "improvd")
        for key in TEXT_KEYS:
            _check_text(key, getattr(config, key), MAX_INSTANCE_CHARS if key == "instance" else MAX_TEXT_CHARS)
        _check_instance(config.instance)
        for key in ("tls_ca", "tls_cert", "tls_key", "password_file"):
            path = getattr(config, key)
            if path is None:
                continue
            if not Path(path).expanduser().is_file():
                raise MqttConfigError(f"mqtt.{key} = {path!r}: no such file")
            config = replace(config, **{key: str(Path(path).expanduser())})
        if (config.tls_cert is None) != (config.tls_key is None):
            raise MqttConfigError("mqtt.tls_cert and mqtt.tls_key go together: give both or neither")
        if config.password is not None and config.password_file is not None:
            raise MqttConfigError("give mqtt.password or mqtt.password_file, not both")
        if config.password_file is not None:
            try:
                lines = read_capped(config.password_file, MAX_TEXT_CHARS).decode("utf-8").splitlines()
            except (OSError, ValueError) as error:
                reason = error.strerror if isinstance(error, OSError) else error
                reason = "not UTF-8 text" if isinstance(error, UnicodeDecodeError) else reason
                raise MqttConfigError(
                    f"mqtt.password_file = {config.password_file!r}: cannot be read ({reason})"
                ) from None
            config = replace(config, password=lines[0] if lines else "", password_file=None)
        return config

    @property
    def prefix(self) -> str:
        return f"improvd/{self.instance}"

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca is not None or self.tls_cert is not None


def _check_instance(instance: str) -> None:
    """The instance name goes into every topic: no control characters, no '/', '+' or '#' (its length and UTF-8
    are ``_check_text``'s)."""
    shown = _shown(instance)
    if TOPIC_CHARS_FORBIDDEN & set(instance):
        raise MqttConfigError(f"mqtt.instance = {shown}: must not hold '/', '+', '#'")
    if not instance.isprintable():
        raise MqttConfigError(f"mqtt.instance = {shown}: must not hold control characters")


def _check_text(key: str, value: str | None, limit: int) -> None:
    """A text setting must be UTF-8 (a flag of other bytes reaches Python as lone surrogates) and at most ``limit``
    characters (an instance of 70,000 characters, or of bytes that are not UTF-8, killed the control plane after
    READY)."""
    if value is None:
        return
    if len(value) > limit:
        raise MqttConfigError(f"mqtt.{key} = {_shown(value)}: at most {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MqttConfigError(f"mqtt.{key} = {_shown(value)}: not UTF-8 text") from None


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 40 else f"{value[:39]!r}… ({len(value)} characters)"


def _check_type(key: str, value: Any, default: Any) -> None:
    expected = type(default) if default is not None else str
    if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
        kind = {bool: "true or false", int: "an integer", str: "a string"}[expected]
        raise MqttConfigError(f"mqtt.{key} = {value!r}: must be {kind}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that override the ``[mqtt]`` table (``--no-mqtt`` belongs to the daemon; dest ``no_mqtt``)."""
    group = parser.add_argument_group("MQTT (the [mqtt] table; mqtt.password only in the file)")
    group.add_argument("--mqtt-host", help="broker host name or address (default: localhost)")
    group.add_argument("--mqtt-port", type=int, help="broker port, 1-65535 (default: 1883)")
    group.add_argument(
        "--instance",
        help="instance name in the topics improvd/<instance>/..., at most 64 characters, no / + # (default: host name)",
    )
    group.add_argument("--mqtt-username", help="user name at the broker (default: anonymous)")
    group.add_argument("--mqtt-password-file", help="file whose first line is the password (default: none)")
    group.add_argument("--mqtt-tls", action="store_true", default=None, help="TLS with the system's CAs (default: off)")
    group.add_argument("--mqtt-tls-ca", help="CA certificate file; turns TLS on (default: none)")
    group.add_argument("--mqtt-tls-cert", help="client certificate file, with --mqtt-tls-key (default: none)")
    group.add_argument("--mqtt-tls-key", help="client key file (default: none)")
    group.add_argument("--mqtt-client-id", help="MQTT client id (default: chosen by the client library)")
    group.add_argument("--mqtt-keepalive", type=int, help="keepalive in seconds, 5-65535 (default: 60)")
    group.add_argument(
        "--mqtt-homeassistant",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="publish Home Assistant discovery; --no-mqtt-homeassistant clears it (default: off)",
    )
    group.add_argument("--mqtt-discovery-prefix", help="Home Assistant's discovery prefix (default: homeassistant)")


FLAGS = {
    "mqtt_host": "host",
    "mqtt_port": "port",
    "instance": "instance",
    "mqtt_username": "username",
    "mqtt_password_file": "password_file",
    "mqtt_tls": "tls",
    "mqtt_tls_ca": "tls_ca",
    "mqtt_tls_cert": "tls_cert",
    "mqtt_tls_key": "tls_key",
    "mqtt_client_id": "client_id",
    "mqtt_keepalive": "keepalive",
    "mqtt_homeassistant": "homeassistant",
    "mqtt_discovery_prefix": "discovery_prefix",
}


def config_from(table: dict[str, Any], args: argparse.Namespace) -> MqttConfig:
    """The ``[mqtt]`` table with the flags given on the command line over it."""
    merged = dict(table)
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            merged[key] = value
            if key == "password_file":
                merged.pop("password", None)
    if getattr(args, "no_mqtt", False):
        merged["enabled"] = False
    return MqttConfig.from_table(merged)


METER_PATTERN = r"^\s*\d{1,2}\s*/\s*\d{1,2}\s*$"  # what Home Assistant's meter box lets through (the table checks)
KEY_CHOICES = [key_name(tonic, mode) for mode in ("major", "minor") for tonic in range(12)]  # the key select's
MODES = ("idle", "counting_in", "listening", "responding")  # the engine's modes: the mode sensor's enum options
LEGACY_DISCOVERY = ("number/temperature", "number/bpm", "switch/enabled", "sensor/mode")  # before 0.2: flat topics
TOPIC_KEYS = ("command_topic", "json_attributes_topic")  # relative to the prefix in _entities
SWITCH = {"payload_on": "on", "payload_off": "off", "state_on": "on", "state_off": "off"}


def discovery_node(instance: str) -> str:
    """The Home Assistant id of an instance: ``improvd_`` and the name in lower case, every run of other
    characters than a-z and 0-9 one ``_`` ("My Studio" -> ``improvd_my_studio``); a name with none of those
    characters gets 8 hex digits of its SHA-1. Legal as a discovery node id and object id ([a-zA-Z0-9_-]) and
    inside an entity id ([a-z0-9_])."""
    slug = re.sub(r"[^a-z0-9]+", "_", instance.lower()).strip("_")
    return f"improvd_{slug or hashlib.sha1(instance.encode()).hexdigest()[:8]}"


def _number(key: str, name: str, step: float, **extra: Any) -> dict:
    """A ``number`` steering ``set/<key>`` and showing ``state.<key>``, its range from the table of settings."""
    low, high = BY_NAME[key].bounds(outside=True)
    return {
        "name": name,
        "command_topic": f"set/{key}",
        "value_template": f"{{{{ value_json.{key} }}}}",
        "min": low,
        "max": high,
        "step": step,
        "mode": "box" if high - low > 100 * step else "slider",
        **extra,
    }


def _switch(key: str, name: str) -> dict:
    return {
        "name": name,
        "command_topic": f"set/{key}",
        "value_template": f"{{{{ 'on' if value_json.{key} else 'off' }}}}",
        **SWITCH,
    }


def _entities(state: dict, models: list[str]) -> dict[str, dict]:
    """``component/key`` -> the entity's own settings (topics relative to the instance prefix), for each setting
    in ``state`` (the controller's state: a daemon without a metronome gets no metronome switch)."""
    choices = sorted({*models, str(state.get("model", ""))} - {""})
    entities = {
        "number/temperature": _number("temperature", "Temperature", 0.05),
        "number/bpm": _number("bpm", "Tempo (quarter notes)", 1, unit_of_measurement="BPM"),
        "sensor/beat_bpm": {
            "name": "Beat (the meter's: a dotted quarter in 6/8)",
            "value_template": "{{ value_json.beat_bpm }}",
            "unit_of_measurement": "BPM",
        },
        "text/meter": {
            "name": "Meter",
            "command_topic": "set/meter",
            "value_template": "{{ value_json.meter }}",
            "pattern": METER_PATTERN,
        },
        "sensor/clock": {"name": "Clock (set in the configuration)", "value_template": "{{ value_json.clock }}"},
        "number/output_channel": _number("output_channel", "Output channel", 1),
        "number/program": _number(
            "program",
            "Program",
            1,
            # none (no program change sent) reads as unknown
            value_template="{{ value_json.program if value_json.program is number else 'None' }}",
        ),
        "select/key": {
            "name": "Key",
            "command_topic": "set/key",
            "value_template": "{{ value_json.key }}",
            "options": [*BY_NAME["key"].words, *KEY_CHOICES],
        },
        "text/range": {
            "name": "Range (lowest highest)",
            "command_topic": "set/range",
            "value_template": "{{ value_json.range | join(' ') }}",
            "pattern": r"^\s*\d{1,3}\s+\d{1,3}\s*$",
        },
        "switch/enabled": _switch("enabled", "Enabled"),
        "number/response_bars": _number(
            "response_bars",
            "Response length",
            1,
            unit_of_measurement="bars",
            # "match" (as long as the call) reads as unknown
            value_template="{{ value_json.response_bars if value_json.response_bars is number else 'None' }}",
        ),
        "number/response_steps": _number(
            "response_steps",
            "Response length in 16ths",
            1,
            unit_of_measurement="16ths",
            # unset (whole bars) or "match" reads as unknown: the number's payload_reset
            value_template="{{ value_json.response_steps if value_json.response_steps is number else 'None' }}",
        ),
        "number/phrase_end_steps": _number("phrase_end_steps", "Phrase end", 1, unit_of_measurement="16ths"),
        "switch/metronome": _switch("metronome", "Metronome"),
        "switch/session_memory": _switch("session_memory", "Session memory"),
        "number/memory_phrases": _number("memory_phrases", "Memory", 1, unit_of_measurement="phrases"),
        "sensor/remembered": {
            "name": "Phrases remembered",
            "value_template": "{{ value_json.remembered }}",
        },
        "number/count_in_bars": _number("count_in_bars", "Count-in", 1, unit_of_measurement="bars"),
        "select/groove": {
            "name": "Groove",
            "command_topic": "set/groove",
            "value_template": "{{ value_json.groove }}",
            "options": list(BY_NAME["groove"].words),
        },
        "select/phrase_end": {
            "name": "Phrase end rule",
            "command_topic": "set/phrase_end",
            "value_template": "{{ value_json.phrase_end }}",
            "options": list(BY_NAME["phrase_end"].words),
        },
        "select/turns": {
            "name": "Turns (phrase, or bars each)",
            "command_topic": "set/turns",
            "value_template": "{{ value_json.turns }}",
            "options": [*BY_NAME["turns"].words, *(str(bars) for bars in range(1, MAX_TURN_BARS + 1))],
        },
        "switch/thru": _switch("thru", "Thru"),
        "select/model": {
            "name": "Model",
            "command_topic": "set/model",
            "value_template": "{{ value_json.model }}",
            "options": choices,
        },
        "select/style": {
            "name": "Style",
            "command_topic": "set/style",
            "value_template": "{{ value_json.style }}",
            "options": [AUTO, *choices],
        },
        "sensor/mode": {
            "name": "Mode",
            "value_template": "{{ value_json.mode }}",
            "device_class": "enum",
            "options": list(MODES),
        },
    }
    present = {path: entity for path, entity in entities.items() if path.split("/")[1] in state}
    if "timing" in state and "sensor/mode" in present:  # send lateness p50, p99, max as the mode's attributes
        present["sensor/mode"] = {
            **present["sensor/mode"],
            "json_attributes_topic": "state",
            "json_attributes_template": "{{ value_json.timing | tojson }}",
        }
    if not choices:
        present.pop("select/model", None)
        present.pop("select/style", None)
    buttons = {
        "button/respond": {"name": "Respond", "command_topic": "cmd/respond"},
        "button/panic": {"name": "Panic", "command_topic": "cmd/panic"},
        "button/forget": {"name": "Forget", "command_topic": "cmd/forget"},
    }
    return {**present, **buttons}


def _every_setting() -> dict:
    """A state that holds every setting an entity can show (the daemon's, in short)."""
    return {
        **dict.fromkeys(MQTT_SETTINGS),
        "mode": "idle",
        "timing": {},
        "model": "essen",
        "style": "",
        "clock": "",
        "beat_bpm": 0,
        "remembered": 0,
    }


def discovery(config: MqttConfig, version: str, state: dict | None = None, models: list[str] | None = None) -> dict:
    """Home Assistant discovery messages: config topic -> payload (single component discovery, one retained
    config per entity on ``<discovery_prefix>/<component>/<node>/<key>/config``).

    ``state`` is the controller's state: only the settings it holds get an entity (all of them when None);
    ``models`` are the options of the model ``select`` (with the state's model).
    """
    node = discovery_node(config.instance)
    state = _every_setting() if state is None else state
    device = {
        "identifiers": [node],
        "name": f"improvd {config.instance}",
        "manufacturer": "improvd",
        "model": "improvd",
        "sw_version": version,
    }
    availability = {
        "availability_topic": f"{config.prefix}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    messages = {}
    for path, entity in _entities(state, models or []).items():
        component, key = path.split("/")
        topics = {name: f"{config.prefix}/{entity[name]}" for name in TOPIC_KEYS if name in entity}
        payload = {**entity, **topics}
        if component != "button":
            payload["state_topic"] = f"{config.prefix}/state"
        messages[discovery_topic(config, component, key)] = {
            **payload,
            **availability,
            "unique_id": f"{node}_{key}",
            "default_entity_id": f"{component}.{node}_{key}",
            "device": device,
            "origin": {"name": "improvd", "sw_version": version},
        }
    return messages


def discovery_topic(config: MqttConfig, component: str, key: str) -> str:
    return f"{config.discovery_prefix}/{component}/{discovery_node(config.instance)}/{key}/config"


def discovery_topics(config: MqttConfig) -> set[str]:
    """Every config topic improvd may use for this instance, and those of earlier versions: the topics to clear
    (an empty retained message) where no entity is published."""
    old_node = "improvd_" + config.instance.replace(".", "_")
    legacy = {f"{config.discovery_prefix}/{path.replace('/', f'/{old_node}_')}/config" for path in LEGACY_DISCOVERY}
    every = _entities(_every_setting(), [])
    return legacy | {discovery_topic(config, *path.split("/")) for path in every}


def raise_if_cancelled() -> None:
    """Honour a cancellation that was swallowed on the way.

    Before Python 3.12, ``asyncio.wait_for`` (which aiomqtt awaits on connect,
    subscribe and publish) returns its result and drops the cancellation when
    the awaited future finishes in the same loop turn as the cancel (CPython
    gh-86296). The task still counts the request, so check it at safe points.
    """
    task = asyncio.current_task()
    if task is not None and getattr(task, "cancelling", lambda: 0)():
        raise asyncio.CancelledError


def _describe(error: aiomqtt.MqttError, config: MqttConfig) -> str:
    where = f"{config.host}:{config.port}"
    if isinstance(error, aiomqtt.MqttCodeError) and error.rc in (4, 5, 134, 135):
        who = f"user {config.username!r}" if config.username else "anonymous (no mqtt.username)"
        return f"broker {where} refused the login of {who}: {error} (check mqtt.username and mqtt.password_file)"
    return f"cannot reach the broker at {where}: {error}"


class ControlPlane:
    """Connects the daemon to the broker and keeps it connected; see the module docstring."""

    def __init__(self, config: MqttConfig, controller: Controller, version: str, dropped: Tally | None = None) -> None:
        """``dropped`` counts messages that failed inside improvd (the daemon logs the counts)."""
        self.config = config
        self.dropped = dropped or Tally()
        self._failures_logged: set[str] = set()
        self._refusals_logged: set[str] = set()
        self.controller = controller
        self.version = version
        self.connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._state_pending = True
        self._published_state: str | None = None  # on this connection
        self._stopping = False  # set once cancelled: an error while disconnecting must not reconnect
        self._stop_requested = False  # set by request_stop before the daemon cancels run()
        self._events: collections.deque[tuple[str, dict]] = collections.deque(maxlen=EVENT_QUEUE)
        self._lock = threading.Lock()

    def request_stop(self) -> None:
        """Say that ``run`` is about to be cancelled, so a cancellation swallowed on the way is still honoured
        (``Task.cancelling``, which ``raise_if_cancelled`` reads, is missing before Python 3.11)."""
        self._stop_requested = True

    def _raise_if_stopping(self) -> None:
        if self._stop_requested:
            raise asyncio.CancelledError
        raise_if_cancelled()

    def topic(self, name: str) -> str:
        return f"{self.config.prefix}/{name}"

    def publish_state(self) -> None:
        """Schedule a retained state publish (thread-safe, never blocks; bursts give one publish)."""
        self._state_pending = True
        self._poke()

    def publish_event(self, name: str, data: dict) -> None:
        """Schedule an event publish (thread-safe, never blocks); events while disconnected are dropped."""
        if not self.connected:
            return
        self._events.append((name, data))
        self._poke()

    def _poke(self) -> None:
        with self._lock:
            loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            if loop is _running_loop():
                wake.set()
            else:
                loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop closed meanwhile: nothing to publish to
            pass

    async def run(self) -> None:
        """Forever: connect, serve, and after a failure wait (1, 2, 4 ... 30 s) and connect again."""
        with self._lock:
            self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        delay = BACKOFF_START
        while True:
            entered = False
            try:
                async with self._client() as client:
                    entered, delay = True, BACKOFF_START
                    await self._serve(client)
            except aiomqtt.MqttError as error:
                if self._stopping:  # aiomqtt's disconnect failed while we were being cancelled: still a stop
                    raise asyncio.CancelledError from error
                self._raise_if_stopping()
                reason = f"lost the broker at {self.config.host}:{self.config.port}: {error}"
                log.warning("MQTT: %s; retrying in %.0f s", reason if entered else _describe(error, self.config), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)

    def _client(self) -> aiomqtt.Client:
        config = self.config
        tls = None
        if config.uses_tls:
            tls = aiomqtt.TLSParameters(ca_certs=config.tls_ca, certfile=config.tls_cert, keyfile=config.tls_key)
        return aiomqtt.Client(
            config.host,
            config.port,
            username=config.username,
            password=config.password,
            identifier=config.client_id,
            keepalive=config.keepalive,
            will=aiomqtt.Will(self.topic("status"), b"offline", qos=1, retain=True),
            tls_params=tls,
            timeout=10,
            logger=logging.getLogger("improvd.daemon.mqtt.client"),
        )

    async def _serve(self, client: aiomqtt.Client) -> None:
        """One connection: subscribe, announce, then handle messages and publish until it drops."""
        try:
            # "set/#" matches "set" itself too (MQTT 3.1.1, 4.7.1.2)
            await client.subscribe([(self.topic("set/#"), 1), (self.topic("cmd/#"), 1)])
            await client.publish(self.topic("status"), b"online", qos=1, retain=True)
            await self._announce_discovery(client)
            self.connected = True
            self._published_state = None
            log.info("MQTT: connected to %s:%d as %s", self.config.host, self.config.port, self.config.prefix)
            self.publish_state()
            self._raise_if_stopping()  # a stop may have been swallowed while connecting, subscribing or announcing
            await self._serve_until_lost(client)
        except asyncio.CancelledError:
            self._stopping = True  # the client's exit may turn the cancellation into an MqttError
            await self._say_offline(client)
            raise
        finally:
            self.connected = False

    async def _announce_discovery(self, client: aiomqtt.Client) -> None:
        """Publish the Home Assistant configs (retained) when discovery is on; clear (an empty retained message)
        every other config topic of this instance, so that turning discovery off removes the entities."""
        configs = (
            discovery(self.config, self.version, self.controller.state(), self._models())
            if (self.config.homeassistant)
            else {}
        )
        if configs:
            node = discovery_node(self.config.instance)
            log.info("MQTT: Home Assistant discovery for device %s (%d entities, ids %s_*)", node, len(configs), node)
        for topic, payload in configs.items():
            await client.publish(topic, json.dumps(payload), qos=1, retain=True)
        for topic in sorted(discovery_topics(self.config) - set(configs)):
            await client.publish(topic, b"", qos=1, retain=True)

    def _models(self) -> list[str]:
        """The model names the controller offers (``models()``, optional in a controller)."""
        models = getattr(self.controller, "models", None)
        return list(models()) if callable(models) else []

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """A clean shutdown: the last events still queued (the error that ends the daemon is one), then ``offline``
        (the Last Will only fires on a lost connection)."""
        try:
            await asyncio.wait_for(self._last_words(client), OFFLINE_TIMEOUT)
        except (aiomqtt.MqttError, asyncio.TimeoutError):
            log.warning("MQTT: could not publish offline on shutdown")

    async def _last_words(self, client: aiomqtt.Client) -> None:
        for name, data in list(self._events)[-LAST_EVENTS:]:
            await client.publish(self.topic("events"), _event_payload(name, data), qos=0)
        self._events.clear()
        await client.publish(self.topic("status"), b"offline", qos=1, retain=True)

    async def _serve_until_lost(self, client: aiomqtt.Client) -> None:
        """Receive and publish side by side; when either fails (the connection is gone) stop both."""
        tasks = {asyncio.ensure_future(self._receive(client)), asyncio.ensure_future(self._publish_loop(client))}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self._handle(str(message.topic), message.payload, message.retain)

    def _handle(self, topic: str, payload: Any, retained: bool) -> None:
        """Parse and apply one message; any rejection becomes an error event, never an exception."""
        subtopic = topic[len(self.config.prefix) + 1 :]
        data = payload if isinstance(payload, (bytes, bytearray)) else str(payload or "").encode()
        try:
            request = parse(subtopic, bytes(data))
            if request.command is not None:
                if retained:
                    raise ControlError("retained commands are ignored (publish commands without -r)")
                self.controller.command(request.command)
            else:
                self.controller.apply(request.changes)
        except ValueError as error:  # ControlError is one; the controller raises ValueError
            self._refused(subtopic, str(error))
            self.publish_event("error", {"topic": topic, "reason": str(error)})
            return
        except Exception as error:  # the daemon never crashes on a message; one line per kind, then counts
            kind = type(error).__name__
            if kind not in self._failures_logged:
                self._failures_logged.add(kind)
                log.error("MQTT: handling %s failed (%s: %s); repeats are counted", topic, kind, error)
            self.dropped.add(f"MQTT messages that failed ({kind})")
            self.publish_event("error", {"topic": topic, "reason": f"internal error: {kind}"})
            return
        if not getattr(self.controller, "reports_changes", False):
            self.publish_state()  # the change has landed: apply and command are synchronous in this controller

    def _refused(self, subtopic: str, reason: str) -> None:
        """Count a refused message; log the first refusal on each of the first REFUSALS_LOGGED subtopics."""
        self.dropped.add("refused MQTT messages")
        if subtopic not in self._refusals_logged and len(self._refusals_logged) < REFUSALS_LOGGED:
            self._refusals_logged.add(subtopic)
            log.warning("MQTT: refused %s: %s; repeats are counted", subtopic[:80], reason[:200])

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._state_pending:
                self._state_pending = False
                state = json.dumps(self.controller.state(), default=str)
                if state != self._published_state:  # once per change: a report that changed nothing is not sent
                    self._published_state = state
                    await client.publish(self.topic("state"), state, qos=1, retain=True)
                self._raise_if_stopping()  # a PUBACK in the same turn as the stop would keep this loop alive for ever
            while self._events:
                name, data = self._events.popleft()
                await client.publish(self.topic("events"), _event_payload(name, data), qos=1)
                self._raise_if_stopping()
            await asyncio.sleep(STATE_INTERVAL)


def _event_payload(name: str, data: dict) -> str:
    """An event as published on the events topic: ``{"event": name, ...data}``."""
    return json.dumps({"event": name, **data}, default=str)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
