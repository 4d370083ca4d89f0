"""The engine's musical settings and their checks, from the one table of settings (improvd.core.schema).

``Settings.validate`` names the field, the value and what is allowed; the engine refuses a change that fails
it (all changes of one ``update`` together or none). The daemon's configuration file, flags and MQTT messages
are checked at their own doors (improvd.daemon.config, improvd.daemon.control) against the same table, in the
daemon's units (channels counted from 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from improvd.core.metronome import DEFAULT_NOTES
from improvd.core.schema import EVERY_NOTE, SETTINGS, Setting


@dataclass
class Settings:
    """Musical settings; ``validate`` names the field, the value and what is allowed."""

    temperature: float = 1.0
    top_p: float | None = None
    bpm: float = 120.0
    phrase_end_steps: int = 8
    phrase_end: str = "music"  # the phrase end the music tells (its bar line); "silence": phrase_end_steps of it
    turns: int | str = "phrase"  # a number: trade that many bars
    min_call_steps: int = 8
    max_call_steps: int = 0
    meter: str = "4/4"
    response_bars: int | str = "match"  # "match": as many whole bars as the call (1 to MATCH_BARS)
    response_steps: int | str | None = None  # None: whole bars (response_bars)
    barge_in: str = "stop"
    velocity: int | None = None
    gate: float = 0.9
    groove: str = "straight"
    follow_tempo: bool = False
    thru: bool = False
    metronome: bool = False
    metronome_channel: int = 9  # channel 10, General MIDI percussion
    metronome_notes: tuple[int, int] = DEFAULT_NOTES
    count_in_bars: int = 0
    output_channel: int = 0
    program: int | None = None  # a program change on the output channel, or none
    key: str = "auto"  # "auto": the call's own; or a key such as "G minor"
    range: tuple[int, int] = EVERY_NOTE  # the answer's lowest and highest note
    input_channel: int | None = None
    buffer_steps: int | None = None
    session_memory: bool = True
    memory_phrases: int = 8
    enabled: bool = True

    def validate(self) -> Settings:
        """This, when every field is one ``SETTINGS`` allows in the engine's units; else ValueError naming the first
        field that is not, its value and what is allowed."""
        for setting in SETTINGS:
            if setting.engine and not _allows(setting, getattr(self, setting.name)):
                value = getattr(self, setting.name)
                raise ValueError(f"{setting.name} = {value!r} is not allowed: use {setting.allowed()}")
        return self


def _allows(setting: Setting, value: Any) -> bool:
    """The value is allowed as it is (normalising would change it: "Follow" is not "follow")."""
    try:
        checked = setting.check(value)
    except ValueError:
        return False
    return bool(checked == value)
