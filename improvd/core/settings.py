"""The engine's musical settings and their checks: what a setting may be, said once for the engine.

``Settings.validate`` names the field, the value and what is allowed; the engine refuses a change that fails
it (all changes of one ``update`` together or none). The daemon's configuration file, flags and MQTT messages
are checked again at their own doors (improvd.daemon.config, improvd.daemon.control) in their own units (channels 1 to 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from improvd.core.grid import parse_meter
from improvd.core.metronome import DEFAULT_NOTES


@dataclass
class Settings:
    """Musical settings; ``validate`` names the field, the value and what is allowed."""

    temperature: float = 1.0
    top_p: float | None = None
    bpm: float = 120.0
    phrase_end_steps: int = 8
    min_call_steps: int = 8
    max_call_steps: int = 0
    meter: str = "4/4"
    response_bars: int = 2
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
    input_channel: int | None = None
    buffer_steps: int | None = None
    enabled: bool = True

    def validate(self) -> Settings:
        checks = [
            ("temperature", _number(self.temperature) and 0.05 <= self.temperature <= 2.0, "a number from 0.05 to 2.0"),
            (
                "top_p",
                self.top_p is None or (_number(self.top_p) and 0 < self.top_p <= 1),
                "empty or a number in (0, 1]",
            ),
            ("bpm", _number(self.bpm) and 20 <= self.bpm <= 300, "a number from 20 to 300"),
            ("phrase_end_steps", _whole(self.phrase_end_steps, 1, 64), "a whole number from 1 to 64"),
            ("min_call_steps", _whole(self.min_call_steps, 1, 1024), "a whole number from 1 to 1024"),
            ("max_call_steps", _whole(self.max_call_steps, 0, 4096), "0 (no limit) or a whole number up to 4096"),
            ("meter", _is_meter(self.meter), "a time signature such as 4/4, 3/4 or 6/8 (at most 64 16ths a bar)"),
            ("response_bars", _whole(self.response_bars, 1, 16), "a whole number from 1 to 16"),
            (
                "response_steps",
                self.response_steps is None or self.response_steps == "match" or _whole(self.response_steps, 1, 256),
                'empty (whole bars: response_bars), 1 to 256 or "match"',
            ),
            ("barge_in", self.barge_in in ("stop", "overlap"), '"stop" or "overlap"'),
            ("velocity", self.velocity is None or _whole(self.velocity, 1, 127), "empty (follow the call) or 1 to 127"),
            ("gate", _number(self.gate) and 0.05 <= self.gate <= 1.0, "a number from 0.05 to 1.0"),
            ("groove", self.groove in ("straight", "follow"), '"straight" or "follow"'),
            ("metronome", isinstance(self.metronome, bool), "true or false"),
            ("follow_tempo", isinstance(self.follow_tempo, bool), "true or false"),
            ("thru", isinstance(self.thru, bool), "true or false"),
            ("metronome_channel", _whole(self.metronome_channel, 0, 15), "a whole number from 0 to 15"),
            (
                "metronome_notes",
                isinstance(self.metronome_notes, tuple)
                and len(self.metronome_notes) == 2
                and all(_whole(n, 0, 127) for n in self.metronome_notes),
                "two notes from 0 to 127: the bar's first beat, then the other beats",
            ),
            ("count_in_bars", _whole(self.count_in_bars, 0, 8), "a whole number from 0 to 8"),
            ("output_channel", _whole(self.output_channel, 0, 15), "a whole number from 0 to 15"),
            (
                "input_channel",
                self.input_channel is None or _whole(self.input_channel, 0, 15),
                "empty (all) or 0 to 15",
            ),
            ("buffer_steps", self.buffer_steps is None or _whole(self.buffer_steps, 8, 4096), "empty or 8 to 4096"),
            ("enabled", isinstance(self.enabled, bool), "true or false"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r} is not allowed: use {allowed}")
        return self


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _is_meter(value: Any) -> bool:
    try:
        parse_meter(value)
    except ValueError:
        return False
    return isinstance(value, str)


def _whole(value: Any, lowest: int, highest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lowest <= value <= highest
