"""The daemon's configuration: a TOML file (``--config``) with command-line flags over it, validated in one place.

Every key is documented in ``systemd/improvd.toml``. A bad key or value raises
``ConfigError`` naming the key, the value and what is allowed. The ``[mqtt]``
table belongs to ``improvd.daemon.mqtt`` (``config_from``), which validates it.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from improvd.core.schema import BY_NAME, CC_NUMBER, EVERY_NOTE, FILE, FLAG, SETTINGS, Setting, check_style

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG = Path("/etc/improvd/improvd.toml")
MAX_CONFIG_BYTES = 64 << 10  # the configuration file (systemd/improvd.toml, every key documented, is 8 KB)
SHOWN_CHARS = 80  # of a bad value in an error line
CC_KEYS = ("temperature", "respond", "panic", "enable", "metronome", "session_memory", "forget", "style")
RESERVED_CC = {64: "the sustain pedal", **{n: "a channel mode message" for n in range(120, 128)}}


class ConfigError(ValueError):
    """A configuration that cannot be used; the text names the key, the value and what is allowed."""


@dataclass(frozen=True)
class Config:
    """The validated configuration (channels counted from 1 as musicians count them; None = all / off / random)."""

    midi_api: str = "alsa"
    input: str = ""  # "" = a virtual port of client "improvd"
    output: str = ""
    input_channel: int | None = None
    output_channel: int = 1
    program: int | None = None  # None = send no program change (counted from 1, as General MIDI counts them)
    key: str = "auto"
    range: tuple[int, int] = EVERY_NOTE
    model: str = ""  # "" = the shipped model
    models_path: str = ""  # "" = the folder that holds the model
    style: str = ""  # "" = the model alone; auto, or a model's folder name under the models path
    clock: str = "internal"
    clock_out: bool = False
    bpm: float = 120.0
    enabled: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    phrase_end_steps: int = 8
    phrase_end: str = "music"
    turns: int | str = "phrase"  # a number: trade that many bars
    min_call_steps: int = 8
    max_call_steps: int = 0
    meter: str = "4/4"
    response_bars: int | str = "match"  # as many whole bars as the call
    response_steps: int | str | None = None  # None: whole bars (response_bars)
    barge_in: str = "stop"
    velocity: int = 0  # 0 = follow the player
    gate: float = 0.9
    groove: str = "straight"
    metronome: bool = False
    metronome_channel: int = 10  # General MIDI percussion
    metronome_notes: tuple[int, int] = (76, 77)  # the bar's first beat, the other beats
    count_in_bars: int = 0
    thru: bool = False
    session_memory: bool = True
    memory_phrases: int = 8
    record_dir: str = ""  # "" = no recording
    seed: int | None = None
    log_level: str = "info"
    stats_interval: float = 60.0
    cc: dict[str, int] = field(default_factory=dict)  # control name -> CC number
    mqtt: Any = None  # improvd.daemon.mqtt.MqttConfig, or None without improvd.daemon.mqtt
    source: str = "defaults"  # where it came from, for messages

    def engine_settings(self) -> dict[str, Any]:
        """The keyword arguments of ``improvd.core.settings.Settings``, in the engine's units."""
        values = {s.name: s.to_engine(getattr(self, s.name)) for s in SETTINGS if s.engine and FILE in s.sources}
        return {**values, "follow_tempo": self.clock == "follow"}


def _must(setting: Setting, value: Any) -> Any:
    try:
        return setting.check(value, outside=True)
    except ValueError as allowed:
        raise ValueError(f"must be {allowed}") from None


def _folder_or_nothing(value: Any) -> str:
    text = _must(BY_NAME["record_dir"], value)
    if text and not Path(text).expanduser().is_dir():
        raise ValueError("must be an existing folder (or empty for no recording)")
    if text and not os.access(Path(text).expanduser(), os.W_OK):
        raise ValueError("must be a folder improvd may write in")
    return text


def _style(value: Any) -> str:
    try:
        return check_style(value)
    except ValueError as allowed:
        raise ValueError(f"must be {allowed}") from None


def _door(setting: Setting) -> Callable[[Any], Any]:
    """The check of a key of the file or a flag, in the daemon's units."""
    if setting.kind == "folder":
        return _folder_or_nothing
    if setting.name == "style":
        return _style
    return lambda value: _must(setting, value)


# key -> validator (returns the normalised value or raises ValueError saying what is allowed), from the table
CHECKS: dict[str, Callable[[Any], Any]] = {s.name: _door(s) for s in SETTINGS if FILE in s.sources}
# key -> what the setting does and what it allows: the flag's help (the default is added from Config), one line per
# key; systemd/improvd.toml says the same at more length
HELP: dict[str, str] = {s.name: s.help_text() for s in SETTINGS if FLAG in s.sources}
# what a default means where its value does not say it
DEFAULT_WORDS = {
    "input": "a virtual port of client improvd",
    "output": "a virtual port of client improvd",
    "input_channel": "all",
    "model": "the shipped model, models/essen",
    "models_path": "the folder that holds the model",
    "style": "none: the model alone answers",
    "response_steps": "unset: whole bars",
    "program": "none",
    "record_dir": "none",
    "seed": "random",
}
CC_HELP = (
    f"Control changes, in the file only ([cc]: a CC number {CC_NUMBER.span()} per control; leave a key out for "
    f"off): temperature ({CC_NUMBER.span()} onto {BY_NAME['temperature'].span()}), respond (>= 64), panic (>= 64), "
    "enable, metronome, session_memory (on >= 64, off below), forget (>= 64: forget your earlier phrases), "
    "style (auto, then the models by name); CC 64 and 120-127 are refused"
)

# flag dest -> config key (flags left at None are not given): one flag per key
FLAGS = {key: key for key in HELP}


def default_text(key: str) -> str:
    """The default of ``key`` as the help shows it."""
    if key in DEFAULT_WORDS:
        return DEFAULT_WORDS[key]
    value = next(f.default for f in fields(Config) if f.name == key)
    if isinstance(value, bool):
        return "on" if value else "off"
    return (
        " ".join(map(str, value))
        if isinstance(value, tuple)
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The daemon's flags, one per key of the file (``[cc]`` only in the file); each overrides the key."""
    parser.add_argument("--config", help=f"TOML configuration file (default {DEFAULT_CONFIG} when present)")
    parser.epilog = f"Every flag overrides the key of the same name in the file. {CC_HELP}."
    for key, text in HELP.items():
        flag = "--" + key.replace("_", "-")
        help_text = f"{text} (default: {default_text(key)})".replace("%", "%%")
        _add_flag(parser, BY_NAME[key], flag, help_text)
    parser.add_argument(
        "--no-mqtt", action="store_true", help="do not connect to an MQTT broker (mqtt.enabled = false)"
    )


def _add_flag(parser: argparse.ArgumentParser, setting: Setting, flag: str, help_text: str) -> None:
    """The flag of ``setting``, its type from the table's kind."""
    if setting.kind == "switch":
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    elif setting.kind == "notes":
        metavar = tuple(part.split()[0].upper() for part in setting.parts)  # FIRST OTHER, LOWEST HIGHEST
        parser.add_argument(flag, nargs=2, type=int, metavar=metavar, help=help_text)
    elif setting.kind == "choice":
        parser.add_argument(flag, type=str.lower, choices=setting.words, help=help_text)
    elif setting.words or isinstance(setting.empty, str):
        parser.add_argument(flag, type=_flag_value, help=help_text)
    else:
        parser.add_argument(flag, type={"number": float, "whole": int}.get(setting.kind, str), help=help_text)


def _flag_value(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def read_capped(path: str | Path, limit: int) -> bytes:
    """The bytes of the file at ``path`` (symbolic links followed), at most ``limit`` of them.

    It is opened without blocking, then judged by what it is: a FIFO, socket, folder or block device raises
    ValueError before anything is read; a character device is read like a file (``/dev/null`` is empty, ``/dev/zero``
    is over the limit); more than ``limit`` bytes raises ValueError; OSError as ``open`` and ``read`` raise it.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    with os.fdopen(descriptor, "rb") as handle:
        mode = os.fstat(descriptor).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
            raise ValueError("not a regular file")
        data = handle.read(limit + 1)  # the size may have changed since fstat
    if len(data) > limit:
        raise ValueError(f"over the limit of {limit} bytes")
    return data


def read_file(path: Path) -> dict[str, Any]:
    """The TOML table of ``path``; a missing, malformed, oversized or too deeply nested file, or one that is not a
    regular file, raises ConfigError."""
    try:
        return tomllib.loads(read_capped(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the configuration file: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    except ValueError as error:
        raise ConfigError(f"{path}: cannot be the configuration file: {error}") from None


def config_path(args: argparse.Namespace) -> Path | None:
    """The file to read: ``--config``, else the default when it exists, else none."""
    if getattr(args, "config", None):
        return Path(args.config)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load(args: argparse.Namespace) -> Config:
    """Read the configuration file (if any), put the flags over it and validate everything."""
    path = config_path(args)
    table = read_file(path) if path is not None else {}
    return from_table(table, args, source=str(path) if path else "flags")


def from_table(table: dict[str, Any], args: argparse.Namespace | None = None, source: str = "file") -> Config:
    """Validate a configuration table with the flags in ``args`` over it."""
    table = dict(table)
    mqtt_table = table.pop("mqtt", {})
    cc_table = table.pop("cc", {})
    known = [f.name for f in fields(Config) if f.name in CHECKS]
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in CHECKS:
            raise ConfigError(f"{source}: unknown key {key!r} (known keys: {', '.join([*known, 'cc', 'mqtt'])})")
        values[key] = _checked(key, value, source)
    for dest, key in FLAGS.items():
        value = getattr(args, dest, None) if args is not None else None
        if value is not None:
            values[key] = _checked(key, value, f"--{dest.replace('_', '-')}")
    return Config(**values, cc=_cc(cc_table, source), mqtt=_mqtt(mqtt_table, args, source), source=source)


def _checked(key: str, value: Any, where: str) -> Any:
    try:
        return CHECKS[key](value)
    except ValueError as reason:
        raise ConfigError(f"{where}: {key} = {_show(value)}: {reason}") from None


def _show(value: Any) -> str:
    """``value`` as an error line shows it: cut to SHOWN_CHARS characters."""
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 1]}… ({len(text)} characters)"


def _cc(table: Any, source: str) -> dict[str, int]:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: cc = {_show(table)}: must be a table [cc] of control names to CC numbers")
    numbers = {}
    for key, value in table.items():
        if key not in CC_KEYS:
            raise ConfigError(f"{source}: unknown key 'cc.{key}' (known: {', '.join('cc.' + k for k in CC_KEYS)})")
        try:
            numbers[key] = _must(CC_NUMBER, value)
        except ValueError as reason:
            raise ConfigError(f"{source}: cc.{key} = {_show(value)}: {reason} (leave the key out for off)") from None
    for key, number in numbers.items():
        if number in RESERVED_CC:
            raise ConfigError(f"{source}: cc.{key} = {number}: CC {number} is {RESERVED_CC[number]}; give another")
    if len(set(numbers.values())) < len(numbers):
        raise ConfigError(f"{source}: [cc] gives one CC number to two controls: {numbers}")
    return numbers


def _mqtt(table: Any, args: argparse.Namespace | None, source: str) -> Any:
    """The ``[mqtt]`` table, validated by improvd.daemon.mqtt; None when that module is not there."""
    try:
        from improvd.daemon import mqtt
    except ImportError:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: mqtt = {_show(table)}: must be a table [mqtt]")
    try:
        return mqtt.config_from(table, args or argparse.Namespace())
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None
