"""The daemon's configuration: a TOML file (``--config``) with command-line flags over it, validated in one place.

Every key is documented in ``systemd/improvd.toml``. A bad key or value raises
``ConfigError`` naming the key, the value and what is allowed. The ``[mqtt]``
table belongs to ``improvd.daemon.mqtt`` (``config_from``), which validates it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG = Path("/etc/improvd/improvd.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")
CC_KEYS = ("temperature", "respond", "panic", "enable", "metronome")
RESERVED_CC = {64: "the sustain pedal", **{n: "a channel mode message" for n in range(120, 128)}}


class ConfigError(ValueError):
    """A configuration that cannot be used; the text names the key, the value and what is allowed."""


@dataclass(frozen=True)
class Config:
    """The validated configuration (channels 1 to 16 as musicians count them; None = all / off / random)."""

    midi_api: str = "alsa"
    input: str = ""  # "" = a virtual port of client "improvd"
    output: str = ""
    input_channel: int | None = None
    output_channel: int = 1
    model: str = ""  # "" = the shipped model
    models_path: str = ""  # "" = the folder that holds the model
    clock: str = "internal"
    clock_out: bool = False
    bpm: float = 120.0
    enabled: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    phrase_end_steps: int = 8
    min_call_steps: int = 8
    max_call_steps: int = 0
    meter: str = "4/4"
    response_bars: int = 2
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
    record_dir: str = ""  # "" = no recording
    seed: int | None = None
    log_level: str = "info"
    stats_interval: float = 60.0
    cc: dict[str, int] = field(default_factory=dict)  # control name -> CC number
    mqtt: Any = None  # improvd.daemon.mqtt.MqttConfig, or None without improvd.daemon.mqtt
    source: str = "defaults"  # where it came from, for messages

    def engine_settings(self) -> dict[str, Any]:
        """The keyword arguments of ``improvd.core.engine.Settings``."""
        return {
            "temperature": self.temperature,
            "top_p": None if self.top_p >= 1.0 else self.top_p,
            "bpm": self.bpm,
            "phrase_end_steps": self.phrase_end_steps,
            "min_call_steps": self.min_call_steps,
            "max_call_steps": self.max_call_steps,
            "meter": self.meter,
            "response_bars": self.response_bars,
            "response_steps": self.response_steps,
            "barge_in": self.barge_in,
            "velocity": self.velocity or None,
            "gate": self.gate,
            "groove": self.groove,
            "follow_tempo": self.clock == "follow",
            "thru": self.thru,
            "metronome": self.metronome,
            "metronome_channel": self.metronome_channel - 1,
            "metronome_notes": self.metronome_notes,
            "count_in_bars": self.count_in_bars,
            "output_channel": self.output_channel - 1,
            "input_channel": None if self.input_channel is None else self.input_channel - 1,
            "enabled": self.enabled,
        }


def _number(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        if not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return float(value)

    return check


def _whole(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value

    return check


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value.lower()

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _channel_or_all(value: Any) -> int | None:
    if isinstance(value, str) and value.lower() == "all":
        return None
    return _whole(1, 16)(value)


def _steps_or_match(value: Any) -> int | str:
    if isinstance(value, str) and value.lower() == "match":
        return "match"
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    try:
        return _whole(1, 256)(value)
    except ValueError:
        raise ValueError('must be a whole number from 1 to 256, or "match" (as long as the call)') from None


def _meter(value: Any) -> str:
    from improvd.core.grid import parse_meter

    try:
        beats, unit = parse_meter(value)
    except ValueError:
        raise ValueError("must be a time signature such as 4/4, 3/4 or 6/8 (at most 64 16ths a bar)") from None
    return f"{beats}/{unit}"


def _folder_or_nothing(value: Any) -> str:
    text = _text(value)
    if text and not Path(text).expanduser().is_dir():
        raise ValueError("must be an existing folder (or empty for no recording)")
    if text and not os.access(Path(text).expanduser(), os.W_OK):
        raise ValueError("must be a folder improvd may write in")
    return text


def _two_notes(value: Any) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("must be two MIDI notes [first beat of the bar, other beats], e.g. [76, 77]")
    first, other = (_whole(0, 127)(v) for v in value)
    return first, other


def _top_p(value: Any) -> float:
    number = _number(0.0, 1.0)(value)
    if number <= 0:
        raise ValueError("must be a number above 0 and at most 1 (1 = off)")
    return number


# key -> validator (returns the normalised value or raises ValueError saying what is allowed)
CHECKS: dict[str, Callable[[Any], Any]] = {
    "midi_api": _choice("alsa", "jack"),
    "input": _text,
    "output": _text,
    "input_channel": _channel_or_all,
    "output_channel": _whole(1, 16),
    "model": _text,
    "models_path": _text,
    "clock": _choice("internal", "midi", "follow"),
    "clock_out": _boolean,
    "bpm": _number(20, 300),
    "enabled": _boolean,
    "temperature": _number(0.05, 2.0),
    "top_p": _top_p,
    "phrase_end_steps": _whole(1, 64),
    "min_call_steps": _whole(1, 256),
    "max_call_steps": _whole(0, 1024),
    "meter": _meter,
    "response_bars": _whole(1, 16),
    "response_steps": _steps_or_match,
    "barge_in": _choice("stop", "overlap"),
    "velocity": _whole(0, 127),
    "gate": _number(0.05, 1.0),
    "groove": _choice("straight", "follow"),
    "metronome": _boolean,
    "metronome_channel": _whole(1, 16),
    "metronome_notes": _two_notes,
    "count_in_bars": _whole(0, 8),
    "thru": _boolean,
    "record_dir": _folder_or_nothing,
    "seed": _whole(0, 2**32 - 1),
    "log_level": _choice(*LOG_LEVELS),
    "stats_interval": _number(1, 86400),
}

# key -> what the setting does and what it allows: the flag's help (the default is added from Config), one line per
# key; systemd/improvd.toml says the same at more length
HELP: dict[str, str] = {
    "midi_api": "MIDI system: alsa or jack",
    "input": "input port to connect to, a case-insensitive substring of its name",
    "output": "output port to connect to, a case-insensitive substring of its name",
    "input_channel": "listen to this channel only: 1-16 or all",
    "output_channel": "play on this channel, 1-16",
    "model": "model directory (model.json + weights.npz)",
    "models_path": "folder of the models that MQTT set/model may switch to by name",
    "clock": "internal (the grid at --bpm), midi (follow MIDI clock on the input) or follow (your playing's tempo)",
    "clock_out": "send MIDI clock, Start and Stop on the output at the internal tempo",
    "bpm": "tempo of the internal clock, 20-300 beats per minute",
    "enabled": "answer phrases at all (--no-enabled: listen only)",
    "temperature": "sampling temperature, 0.05-2.0 (safe to wild)",
    "top_p": "nucleus sampling: keep the likeliest symbols up to this probability, above 0 to 1 (1 = off)",
    "phrase_end_steps": "silent 16ths that end your phrase and start the answer, 1-64",
    "min_call_steps": "shortest phrase worth answering, in 16ths, 1-256",
    "max_call_steps": "longest phrase kept, in 16ths, 0-1024 (0 = no limit)",
    "meter": "time signature of the bars the answer fills, e.g. 4/4, 3/4, 6/8 (at most 64 16ths a bar)",
    "response_bars": "answer length in whole bars, 1-16",
    "response_steps": "answer length in 16ths instead of bars: 1-256, or match (as long as your phrase)",
    "barge_in": "when you play during an answer: stop (it stops at once) or overlap (it plays on)",
    "velocity": "velocity of the answer, 1-127; 0 = your phrase's level and accents",
    "gate": "fraction of each note's length that it sounds, 0.05-1.0",
    "groove": "straight (answers on the 16th grid) or follow (your call's timing off the grid)",
    "metronome": "click every beat of the meter, the bar's first beat distinct",
    "metronome_channel": "MIDI channel of the clicks, 1-16",
    "metronome_notes": "percussion notes of the clicks: the bar's first beat, the other beats, 0-127 each",
    "count_in_bars": "bars of clicks before listening after a start, an enable or MIDI Start, 0-8",
    "thru": "pass what you play to the output as it arrives (for a controller without sound)",
    "record_dir": "keep every session as MIDI files in this existing folder",
    "seed": "random seed, 0-4294967295",
    "log_level": "debug, info, warning or error",
    "stats_interval": "seconds between timing statistics in the log, 1-86400",
}
# what a default means where its value does not say it
DEFAULT_WORDS = {
    "input": "a virtual port of client improvd",
    "output": "a virtual port of client improvd",
    "input_channel": "all",
    "model": "the shipped model, models/essen",
    "models_path": "the folder that holds the model",
    "response_steps": "unset: whole bars",
    "record_dir": "none",
    "seed": "random",
}
# keys whose flags are switches (--key and --no-key), take two values, or take a number
SWITCHES = ("clock_out", "enabled", "metronome", "thru")
NUMBERS: dict[str, Callable[[str], Any]] = {
    "output_channel": int,
    "bpm": float,
    "temperature": float,
    "top_p": float,
    "phrase_end_steps": int,
    "min_call_steps": int,
    "max_call_steps": int,
    "response_bars": int,
    "velocity": int,
    "gate": float,
    "metronome_channel": int,
    "count_in_bars": int,
    "seed": int,
    "stats_interval": float,
}
CHOICES = {"midi_api": ("alsa", "jack"), "clock": ("internal", "midi", "follow"), "barge_in": ("stop", "overlap")}
CHOICES |= {"groove": ("straight", "follow"), "log_level": LOG_LEVELS}
CC_HELP = (
    "Control changes, in the file only ([cc]: a CC number 0-127 per control; leave a key out for off): "
    "temperature (0-127 onto 0.05-2.0), respond (>= 64), panic (>= 64), enable (on >= 64, off below), "
    "metronome (on >= 64, off below); CC 64 and 120-127 are refused"
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
        if key in SWITCHES:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif key == "metronome_notes":
            parser.add_argument(flag, nargs=2, type=int, metavar=("FIRST", "OTHER"), help=help_text)
        elif key in CHOICES:
            parser.add_argument(flag, type=str.lower, choices=CHOICES[key], help=help_text)
        elif key in ("input_channel", "response_steps"):
            parser.add_argument(flag, type=_flag_value, help=help_text)
        else:
            parser.add_argument(flag, type=NUMBERS.get(key, str), help=help_text)
    parser.add_argument(
        "--no-mqtt", action="store_true", help="do not connect to an MQTT broker (mqtt.enabled = false)"
    )


def _flag_value(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def read_file(path: Path) -> dict[str, Any]:
    """The TOML table of ``path``; a missing or malformed file raises ConfigError."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the configuration file: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None


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
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _cc(table: Any, source: str) -> dict[str, int]:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: cc = {_show(table)}: must be a table [cc] of control names to CC numbers")
    numbers = {}
    for key, value in table.items():
        if key not in CC_KEYS:
            raise ConfigError(f"{source}: unknown key 'cc.{key}' (known: {', '.join('cc.' + k for k in CC_KEYS)})")
        try:
            numbers[key] = _whole(0, 127)(value)
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
