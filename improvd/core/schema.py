"""Every setting said once: its kind, range, units, help and the doors it comes in by.

A range is in the engine's units; ``offset`` is added where the daemon shows the setting (channels 1 to 16
outside, 0 to 15 in the engine) and ``empty`` is the daemon's word or value for the engine's None. The engine's
``Settings.validate`` (improvd.core.settings), the configuration file and flags (improvd.daemon.config), MQTT
(improvd.daemon.control), Home Assistant discovery (improvd.daemon.mqtt) and the CC mapping all read ``SETTINGS``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from improvd.core.grid import parse_meter
from improvd.core.keys import KEY_TEXT, key_name, parse_key

Kind = Literal["number", "whole", "switch", "choice", "text", "folder", "meter", "notes", "key"]
FILE, FLAG, MQTT, CC = "file", "flag", "mqtt", "cc"
DAEMON = frozenset({FILE, FLAG})  # the configuration file and its flags
STEERED = DAEMON | {MQTT}
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a model's folder name under the models path
AUTO = "auto"  # the style whose model is chosen at each phrase end (improvd.core.styles)
METER_TEXT = "a time signature such as 4/4, 3/4 or 6/8 (at most 64 16ths a bar)"
EVERY_NOTE = (0, 127)  # the MIDI notes: the default range
MATCH_BARS = 8  # response_bars = "match": as many bars as the call, at most this many
MAX_TURN_BARS = 8  # turns: the most bars a player's turn may have


@dataclass(frozen=True)
class Setting:
    """One setting; ``check`` returns its value normalised or raises ValueError with ``allowed``."""

    name: str
    kind: Kind
    help: str  # the flag's help; "{range}" becomes the range as the daemon counts it
    low: float = 0
    high: float = 0
    above: bool = False  # low itself is not allowed
    offset: int = 0  # added to an engine value where the daemon shows it
    empty: str | float | None = None  # the daemon's word or value for the engine's None
    nullable: bool = False  # the engine takes None
    words: tuple[str, ...] = ()  # the choices, or words a whole number may be instead ("match")
    sources: frozenset[str] = DAEMON
    engine: bool = True  # a field of improvd.core.settings.Settings
    parts: tuple[str, str] = ("first beat of the bar", "other beats")  # what the two of "notes" are
    ordered: bool = False  # "notes": the first may not be above the second

    def span(self, between: str = "-") -> str:
        """The range as the daemon counts it: ``1-16`` (``above 0 to 1`` where low is not allowed)."""
        if self.above:
            return f"above {self.low + self.offset} to {self.high + self.offset}"
        return f"{self.low + self.offset}{between}{self.high + self.offset}"

    def help_text(self) -> str:
        """The flag's help with the range filled in."""
        return self.help.format(range=self.span())

    def allowed(self, outside: bool = False) -> str:
        """What a value may be, in the daemon's units (``outside``) or the engine's."""
        low, high = self.bounds(outside)
        text = {
            "number": f"a number above {low} and at most {high}" if self.above else f"a number from {low} to {high}",
            "whole": f"a whole number from {low} to {high}",
            "switch": "true or false",
            "choice": ("one of " if len(self.words) > 2 else "") + _either(self.words),
            "meter": METER_TEXT,
            "notes": f"two MIDI notes from {low} to {high} [{', '.join(self.parts)}]"
            + (", the first not above the second" if self.ordered else ""),
            "key": KEY_TEXT,
        }.get(self.kind, "a string")
        extra = [f'"{word}"' for word in self.words if self.kind != "choice"]
        extra += [f'"{self.empty}"'] if outside and isinstance(self.empty, str) else []
        extra += ["None"] if self.nullable and not outside else []
        return ", or ".join([text, *extra])

    def check(self, value: Any, outside: bool = False) -> Any:
        """``value`` normalised (a choice in lower case, a meter as beats/unit, two notes as a tuple); a word of
        ``empty`` is None; ValueError says what is allowed."""
        if value is None and self.nullable and not outside:
            return None
        word = value.lower() if isinstance(value, str) else None
        if word is not None and outside and word == self.empty:
            return None
        if word is not None and word in self.words:
            return word
        checked = _CHECKS[self.kind](self, value, *self.bounds(outside))
        if checked is None:
            raise ValueError(self.allowed(outside))
        return checked

    def to_engine(self, value: Any) -> Any:
        """A value the daemon checked, in the engine's units."""
        if value is None or (self.empty is not None and value == self.empty):
            return None
        return value - self.offset if self.offset else value

    def scale(self, fraction: float) -> float:
        """The point ``fraction`` (0 to 1) of the way through the range: where a CC value lands."""
        return round(self.low + (self.high - self.low) * fraction, 3)

    def bounds(self, outside: bool = False) -> tuple[float, float]:
        """The lowest and highest value, in the daemon's units (``outside``) or the engine's."""
        if not outside:
            return self.low, self.high
        low, high = self.low + self.offset, self.high + self.offset
        return (min(low, self.empty), high) if _number(self.empty) else (low, high)


def _either(words: tuple[str, ...]) -> str:
    return f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else "".join(words)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _in(setting: Setting, value: float, low: float, high: float) -> bool:
    return (low < value if setting.above else low <= value) and value <= high


def _check_number(setting: Setting, value: Any, low: float, high: float) -> float | None:
    return float(value) if _number(value) and _in(setting, value, low, high) else None


def _check_whole(setting: Setting, value: Any, low: float, high: float) -> int | None:
    return value if isinstance(value, int) and _number(value) and _in(setting, value, low, high) else None


def _check_switch(setting: Setting, value: Any, low: float, high: float) -> bool | None:
    return value if isinstance(value, bool) else None


def _check_text(setting: Setting, value: Any, low: float, high: float) -> str | None:
    return value if isinstance(value, str) else None


def _check_meter(setting: Setting, value: Any, low: float, high: float) -> str | None:
    try:
        beats, unit = parse_meter(value)
    except ValueError:
        return None
    return f"{beats}/{unit}" if isinstance(value, str) else None


def _check_notes(setting: Setting, value: Any, low: float, high: float) -> tuple[int, int] | None:
    if isinstance(value, str):  # a plain-text payload or a flag: "48 84", "[48, 84]"
        found = re.fullmatch(r"\[?\s*(-?\d{1,4})\s*(?:,\s*|\s+)(-?\d{1,4})\s*\]?", value.strip())
        value = [int(found[1]), int(found[2])] if found else None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    first, other = (_check_whole(setting, note, low, high) for note in value)
    if first is None or other is None or (setting.ordered and first > other):
        return None
    return first, other


def _check_key(setting: Setting, value: Any, low: float, high: float) -> str | None:
    key = parse_key(value) if isinstance(value, str) else None
    return None if key is None else key_name(*key)


_CHECKS = {
    "number": _check_number,
    "whole": _check_whole,
    "switch": _check_switch,
    "choice": lambda setting, value, low, high: None,  # a choice is one of its words, checked before
    "text": _check_text,
    "folder": _check_text,
    "meter": _check_meter,
    "notes": _check_notes,
    "key": _check_key,
}

CHANNEL = {"low": 0, "high": 15, "offset": 1}
LOG_LEVELS = ("debug", "info", "warning", "error")
SETTINGS: tuple[Setting, ...] = (
    Setting("midi_api", "choice", "MIDI system: alsa or jack", words=("alsa", "jack"), engine=False),
    Setting("input", "text", "input port to connect to, a case-insensitive substring of its name", engine=False),
    Setting("output", "text", "output port to connect to, a case-insensitive substring of its name", engine=False),
    Setting(
        "input_channel", "whole", "listen to this channel only: {range} or all", **CHANNEL, empty="all", nullable=True
    ),
    Setting("model", "text", "model directory (model.json + weights.npz)", sources=STEERED, engine=False),
    Setting("models_path", "text", "folder of the models that MQTT set/model may switch to by name", engine=False),
    Setting(
        "clock",
        "choice",
        "internal (the grid at --bpm), midi (follow MIDI clock on the input) or follow (your playing's tempo)",
        words=("internal", "midi", "follow"),
        engine=False,
    ),
    Setting("clock_out", "switch", "send MIDI clock, Start and Stop on the output at the internal tempo", engine=False),
    Setting(
        "bpm",
        "number",
        "tempo of the internal clock in quarter notes a minute, {range} (6/8 clicks its dotted quarter: 2/3 of it)",
        20,
        300,
        sources=STEERED,
    ),
    Setting("enabled", "switch", "answer phrases at all (--no-enabled: listen only)", sources=STEERED | {CC}),
    Setting("temperature", "number", "sampling temperature, {range} (safe to wild)", 0.05, 2.0, sources=STEERED | {CC}),
    Setting(
        "top_p",
        "number",
        "nucleus sampling: keep the likeliest symbols up to this probability, {range} (1 = off)",
        0,
        1,
        above=True,
        empty=1,
        nullable=True,
    ),
    Setting(
        "phrase_end_steps",
        "whole",
        "silent 16ths that end your phrase and start the answer, {range}",
        1,
        64,
        sources=STEERED,
    ),
    Setting(
        "phrase_end",
        "choice",
        "music (a phrase that fills 4 or 8 bars ends on the bar line that ends them when nothing sounds or begins "
        "within a few ms of it, the answer from that bar line; other phrases as silence, the answer by the next "
        "beat) or silence (phrase_end_steps of silence, the answer from the next bar line)",
        words=("music", "silence"),
        sources=STEERED,
    ),
    Setting(
        "turns",
        "whole",
        "phrase (answer each phrase) or trade bars: your {range} bars, then as many of improvd's from the next bar "
        "line, then yours again",
        1,
        MAX_TURN_BARS,
        words=("phrase",),
        sources=STEERED,
    ),
    Setting("min_call_steps", "whole", "shortest phrase worth answering, in 16ths, {range}", 1, 1024),
    Setting("max_call_steps", "whole", "longest phrase kept, in 16ths, {range} (0 = no limit)", 0, 4096),
    Setting(
        "meter",
        "meter",
        "time signature of the bars the answer fills, e.g. 4/4, 3/4, 6/8 (at most 64 16ths a bar)",
        sources=STEERED,
    ),
    Setting(
        "response_bars",
        "whole",
        f"answer length in whole bars: {{range}}, or match (as many bars as your phrase, 1 to {MATCH_BARS})",
        1,
        16,
        words=("match",),
        sources=STEERED,
    ),
    Setting(
        "response_steps",
        "whole",
        "answer length in 16ths instead of bars: {range}, or match (as long as your phrase)",
        1,
        256,
        words=("match",),
        nullable=True,
        sources=STEERED,
    ),
    Setting(
        "barge_in",
        "choice",
        "when you play during an answer: stop (it stops at once) or overlap (it plays on)",
        words=("stop", "overlap"),
    ),
    Setting(
        "velocity",
        "whole",
        "velocity of the answer, {range}; 0 = your phrase's level and accents",
        1,
        127,
        empty=0,
        nullable=True,
    ),
    Setting("gate", "number", "fraction of each note's length that it sounds, {range}", 0.05, 1.0),
    Setting(
        "groove",
        "choice",
        "straight (answers on the 16th grid) or follow (your call's timing off the grid)",
        words=("straight", "follow"),
        sources=STEERED,
    ),
    Setting(
        "follow_tempo", "switch", "take the tempo from the call (the daemon's clock = follow)", sources=frozenset()
    ),
    Setting(
        "metronome",
        "switch",
        "click every beat of the meter, the bar's first beat distinct",
        sources=STEERED | {CC},
    ),
    Setting("metronome_channel", "whole", "MIDI channel of the clicks, {range}", **CHANNEL),
    Setting(
        "metronome_notes",
        "notes",
        "percussion notes of the clicks: the bar's first beat, the other beats, {range} each",
        0,
        127,
    ),
    Setting(
        "count_in_bars",
        "whole",
        "bars of clicks before listening after a start, an enable or MIDI Start, {range}",
        0,
        8,
        sources=STEERED,
    ),
    Setting(
        "thru",
        "switch",
        "pass what you play to the output as it arrives (for a controller without sound)",
        sources=STEERED,
    ),
    Setting("output_channel", "whole", "play on this channel, {range}", **CHANNEL, sources=STEERED),
    Setting(
        "program",
        "whole",
        "the answer's instrument: a program change to {range} (General MIDI numbering) on the output channel at "
        "start and when it changes, or none",
        0,
        127,
        offset=1,
        empty="none",
        nullable=True,
        sources=STEERED,
    ),
    Setting(
        "key",
        "key",
        'the answer\'s key: auto (from your phrase) or a tonic and a mode, e.g. "G minor", "D dorian"',
        words=("auto",),
        sources=STEERED,
    ),
    Setting(
        "range",
        "notes",
        "lowest and highest note of the answer, {range} each (MIDI numbers, 60 = middle C)",
        *EVERY_NOTE,
        parts=("lowest", "highest"),
        ordered=True,
        sources=STEERED,
    ),
    Setting(
        "style",
        "text",
        "auto (at each phrase end the model under the models path that found your phrase most likely answers it) or "
        "a model's folder name there",
        sources=STEERED | {CC},
        engine=False,
    ),
    Setting(
        "buffer_steps",
        "whole",
        "16ths of the call the model is primed with (None: the model's sequence length)",
        8,
        4096,
        nullable=True,
        sources=frozenset(),
    ),
    Setting(
        "session_memory",
        "switch",
        "answers draw on your earlier phrases of this session too, under the present one (cmd/forget clears them)",
        sources=STEERED | {CC},
    ),
    Setting(
        "memory_phrases",
        "whole",
        "how many of your last phrases the session memory holds, {range}",
        1,
        64,
        sources=STEERED,
    ),
    Setting("record_dir", "folder", "keep every session as MIDI files in this existing folder", engine=False),
    Setting("seed", "whole", "random seed, {range}", 0, 2**32 - 1, engine=False),
    Setting("log_level", "choice", "debug, info, warning or error", words=LOG_LEVELS, engine=False),
    Setting(
        "stats_interval", "number", "seconds between timing statistics in the log, {range}", 1, 86400, engine=False
    ),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


def check_style(value: Any) -> str:
    """A style: auto, a model's folder name, or "" (the model alone); ValueError says what is allowed."""
    if isinstance(value, str) and value.lower() == AUTO:
        return AUTO  # a word, as every setting's words: any case
    if isinstance(value, str) and (value == "" or MODEL_NAME.fullmatch(value)):
        return value
    raise ValueError("auto or a model's folder name (letters, digits, '.', '_', '-'), or empty for the model alone")


CC_NUMBER = Setting("cc", "whole", "a control change number, {range}", 0, 127, sources=frozenset(), engine=False)
