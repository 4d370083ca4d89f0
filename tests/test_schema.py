"""The one table of settings: every door (file, flag, MQTT, the engine) takes a setting's range from it, at both
ends and no further; Home Assistant, the flags' help and the documentation say the same ranges; nobody else does."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from improvd.core.schema import BY_NAME, CC, FILE, FLAG, MQTT, SETTINGS, Setting, check_style
from improvd.core.settings import Settings
from improvd.daemon import config, mqtt
from improvd.daemon.config import Config, ConfigError
from improvd.daemon.control import ControlError, parse
from tests.helpers import EXAMPLE, flags, run_help

ROOT = Path(__file__).resolve().parent.parent
RANGED = [s for s in SETTINGS if s.kind in ("number", "whole", "notes")]
DOORS = (FILE, FLAG, MQTT, "engine")


def doors(setting: Setting) -> list[str]:
    return [door for door in DOORS if door in setting.sources or (door == "engine" and setting.engine)]


def ends(setting: Setting, outside: bool) -> tuple[list[float], list[float]]:
    """The lowest and highest allowed value, and the values just outside them."""
    low, high = setting.bounds(outside)
    step = 1 if setting.kind != "number" else 0.001
    inside = [high] if setting.above else [low, high]
    return inside, [low if setting.above else low - step, high + step]


def shaped(setting: Setting, value: float, door: str) -> Any:
    if setting.kind != "notes":
        return value
    return (value, value) if door == "engine" else [value, value]


def enter(setting: Setting, value: Any, door: str) -> Any:
    """``value`` through ``door``: the value it keeps, or the error it raises."""
    if door == FILE:
        return getattr(config.from_table({setting.name: value}, argparse.Namespace(no_mqtt=True)), setting.name)
    if door == FLAG:
        words = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        loaded = config.from_table({}, flags("--" + setting.name.replace("_", "-"), *words, "--no-mqtt"))
        return getattr(loaded, setting.name)
    if door == MQTT:
        return parse(f"set/{setting.name}", str(value).encode()).changes[setting.name]
    return getattr(Settings(**{setting.name: value}).validate(), setting.name)


@pytest.mark.parametrize(
    ("setting", "door"), [(s, door) for s in RANGED for door in doors(s)], ids=lambda item: getattr(item, "name", item)
)
def test_every_door_takes_the_ends_of_the_range_and_nothing_past_them(setting, door):
    outside = door != "engine"
    inside, past = ends(setting, outside)
    for value in inside:
        kept = enter(setting, shaped(setting, value, door), door)
        assert kept == shaped(setting, value, "engine"), (value, kept)
    for value in past:
        given = shaped(setting, value, door)
        with pytest.raises((ConfigError, ControlError, ValueError)) as error:
            enter(setting, given, door)
        text = str(error.value)
        assert setting.name in text and setting.allowed(outside) in text and "\n" not in text, text


@pytest.mark.parametrize("setting", [s for s in RANGED if FILE in s.sources and s.engine], ids=lambda s: s.name)
def test_the_ends_of_the_file_reach_the_engine_in_its_units(setting):
    for value in ends(setting, outside=True)[0]:
        loaded = config.from_table({setting.name: shaped(setting, value, FILE)}, argparse.Namespace(no_mqtt=True))
        engine_value = Settings(**loaded.engine_settings()).validate().__dict__[setting.name]
        expected = None if value == setting.empty else shaped(setting, value - setting.offset, "engine")
        assert engine_value == expected


def test_the_defaults_of_the_file_are_the_engines():
    assert Settings(**Config().engine_settings()) == Settings()


def test_a_word_of_the_table_is_taken_in_any_case_at_the_daemons_doors():
    assert config.from_table({"input_channel": "ALL", "response_steps": "Match"}).input_channel is None
    assert parse("set/response_steps", b"MATCH").changes == {"response_steps": "match"}
    with pytest.raises(ValueError, match="groove = 'Follow' is not allowed: use straight or follow"):
        Settings(groove="Follow").validate()


def test_home_assistant_numbers_have_the_tables_range():
    entities = mqtt._entities(mqtt._every_setting(), ["essen"])
    numbers = {path.split("/")[1]: entity for path, entity in entities.items() if path.startswith("number/")}
    steered = {s.name for s in RANGED if MQTT in s.sources and s.kind != "notes"}  # two notes: a text box
    assert set(numbers) == steered - {"turns"}  # phrase or a few bars: a select
    assert [parse("set/turns", option.encode()).changes["turns"] for option in entities["select/turns"]["options"]] == [
        "phrase",
        *range(1, int(BY_NAME["turns"].high) + 1),
    ]
    assert entities["select/phrase_end"]["options"] == list(BY_NAME["phrase_end"].words)
    assert {s.name for s in RANGED if MQTT in s.sources and s.kind == "notes"} == {"range"}
    assert re.fullmatch(entities["text/range"]["pattern"], "48 84")
    assert BY_NAME["range"].check("48 84", outside=True) == (48, 84)
    assert all(BY_NAME["key"].check(option, outside=True) == option for option in entities["select/key"]["options"])
    for name, entity in numbers.items():
        assert (entity["min"], entity["max"]) == BY_NAME[name].bounds(outside=True), name
    assert entities["select/groove"]["options"] == list(BY_NAME["groove"].words)


def test_home_assistant_shows_the_meter_the_clock_and_the_beat_and_says_bpm_counts_quarters():
    entities = mqtt._entities(mqtt._every_setting(), ["essen"])
    assert entities["text/meter"]["command_topic"] == "set/meter"
    assert re.fullmatch(entities["text/meter"]["pattern"], "6/8") and BY_NAME["meter"].check("6/8") == "6/8"
    assert {"sensor/clock", "sensor/beat_bpm"} <= set(entities)
    assert "quarter notes" in entities["number/bpm"]["name"] and "quarter notes" in BY_NAME["bpm"].help


def test_style_auto_is_a_word_of_any_case_and_a_model_name_keeps_its_own():
    assert [check_style(text) for text in ("AUTO", "Auto", "auto", "essen", "My-Model", "")] == [
        "auto",
        "auto",
        "auto",
        "essen",
        "My-Model",
        "",
    ]


def test_a_key_is_named_as_musicians_name_it_and_kept_as_the_table_writes_it():
    key = BY_NAME["key"]
    assert [key.check(text, outside=True) for text in ("g minor", "Bb major", "f# Dorian", "E-", "AUTO")] == [
        "G minor",
        "Bb major",
        "F# dorian",
        "Eb major",
        "auto",
    ]
    for bad in ("H minor", "G blues", "", 7, "G minor major"):
        with pytest.raises(ValueError, match="a tonic and a mode"):
            key.check(bad, outside=True)
    with pytest.raises(ValueError, match="the first not above the second"):
        BY_NAME["range"].check([72, 60], outside=True)


def test_run_help_shows_each_flags_range_from_the_table():
    entries = {entry.split()[0].rstrip(","): entry for entry in re.split(r"\n(?=  -)", run_help())}
    for setting in (s for s in RANGED if FLAG in s.sources):
        assert "{range}" in setting.help, setting.name
        assert setting.span() in entries["--" + setting.name.replace("_", "-")], setting.name
    assert f"temperature (0-127 onto {BY_NAME['temperature'].span()})" in config.CC_HELP


def test_the_settings_a_control_change_steers_are_the_cc_keys():
    settings = {"enabled" if key == "enable" else key for key in config.CC_KEYS} - {
        "respond",
        "panic",
        "forget",
    }  # commands
    assert {s.name for s in SETTINGS if CC in s.sources} == settings


def comment_above(lines: list[str], name: str) -> str:
    """The comment block just above the (maybe commented-out) line of key ``name``."""
    index = next(i for i, line in enumerate(lines) if re.match(rf"#? ?{name} = ", line))
    start = index
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    return " ".join(lines[start:index])


def test_the_documented_ranges_are_the_tables():
    lines = EXAMPLE.read_text().splitlines()
    for setting in (s for s in RANGED if FILE in s.sources):
        assert setting.span(" to ") in comment_above(lines, setting.name), setting.name
    rows = (ROOT / "docs" / "mqtt.md").read_text().splitlines()
    for setting in (s for s in RANGED if MQTT in s.sources):
        row = next(row for row in rows if row.startswith(f"| `set/{setting.name}` |"))
        assert setting.span(" to ") in row, setting.name


SOURCES = [
    "improvd/core/settings.py",
    "improvd/daemon/config.py",
    "improvd/daemon/control.py",
    "improvd/daemon/mqtt.py",
    "improvd/daemon/service.py",
    "improvd/offline/continue_command.py",
    "improvd/offline/demo.py",
]


@pytest.mark.parametrize("path", SOURCES)
def test_no_module_restates_a_range_of_the_table(path):
    text = (ROOT / path).read_text()
    for setting in RANGED:
        for low, high in {setting.bounds(), setting.bounds(outside=True)}:
            for between in (", ", " to ", "-", " - "):
                written = rf"(?<![\d.]){re.escape(f'{low}{between}{high}')}(?![\d.])"
                assert not re.search(written, text), (setting.name, f"{low}{between}{high}")


def test_the_doors_keep_no_tables_of_their_own():
    from improvd.daemon import control

    assert not {"NUMBERS", "SWITCHES", "CHOICES", "LOG_LEVELS"} & set(vars(config))
    assert not {"_number", "_whole", "_choice", "_top_p", "_two_notes", "_steps_or_match"} & set(vars(config))
    assert not {"_number", "_whole", "_temperature", "_bpm", "_groove", "_response_steps"} & set(vars(control))
