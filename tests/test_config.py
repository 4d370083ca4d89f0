"""The daemon's configuration: the documented example, flags over the file, one clear error per bad value."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys

import pytest

from improvd.daemon import config
from improvd.daemon.config import CHECKS, Config, ConfigError, from_table, read_file
from tests.helpers import EXAMPLE, flags, run_help


def documented_keys(text: str) -> set[str]:
    """Keys set or shown commented out in the example, with their table (``cc.panic``, ``mqtt.host``)."""
    keys, table = set(), ""
    for line in text.splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line.strip()):
            table = header.group(1) + "."
        elif key := re.match(r"#? ?(\w+) = ", line):
            keys.add(table + key.group(1))
    return keys


def test_the_example_is_valid_and_gives_the_defaults():
    loaded = from_table(read_file(EXAMPLE), argparse.Namespace(no_mqtt=False))
    defaults = Config()
    for field in dataclasses.fields(Config):
        if field.name not in ("mqtt", "source"):
            assert getattr(loaded, field.name) == getattr(defaults, field.name), field.name


def test_every_key_is_documented_in_the_example():
    from improvd.daemon.mqtt import MqttConfig

    expected = (
        set(CHECKS) | {f"cc.{k}" for k in config.CC_KEYS} | {f"mqtt.{f.name}" for f in dataclasses.fields(MqttConfig)}
    )
    assert documented_keys(EXAMPLE.read_text()) == expected


def test_run_help_shows_every_setting_of_the_example_with_its_default():
    """Each key of systemd/improvd.toml has a flag whose help gives its default (and its range where it has one);
    [cc] is named in the epilog, mqtt.enabled is --no-mqtt, mqtt.password is only in the file."""
    text = run_help()
    lines = text.splitlines()
    entries = {entry.split()[0].rstrip(","): entry for entry in re.split(r"\n(?=  -)", text) if entry.startswith("  -")}
    special = {"mqtt.enabled": "--no-mqtt", "mqtt.instance": "--instance", "mqtt.password": "--mqtt-password-file"}
    for key in sorted(documented_keys(EXAMPLE.read_text())):
        table, _, name = key.rpartition(".")
        if table == "cc":
            assert name in lines[-1] and "[cc]" in lines[-1], key
            continue
        flag = special.get(key) or ("--mqtt-" if table else "--") + name.replace("_", "-")
        assert "default" in entries[flag] or key == "mqtt.enabled", (key, entries[flag])
    for key, text in config.HELP.items():  # a range where the setting has one
        if CHECKS[key].__qualname__.startswith(("_number", "_whole")):
            assert re.search(r"\d-\d|\d to \d", text), key


def test_every_setting_has_one_help_text():
    assert set(config.HELP) == set(CHECKS)


def test_the_new_flags_reach_the_configuration():
    loaded = config.load(
        flags(
            *("--top-p", "0.9", "--gate", "0.5", "--barge-in", "OVERLAP", "--velocity", "90", "--no-enabled"),
            *("--metronome-notes", "60", "61", "--stats-interval", "5", "--min-call-steps", "4", "--no-mqtt"),
        )
    )
    assert (loaded.top_p, loaded.gate, loaded.barge_in, loaded.velocity, loaded.enabled) == (
        0.9,
        0.5,
        "overlap",
        90,
        False,
    )
    assert (loaded.metronome_notes, loaded.stats_interval, loaded.min_call_steps) == ((60, 61), 5.0, 4)


def test_flags_override_the_file(tmp_path):
    file = tmp_path / "improvd.toml"
    file.write_text('bpm = 100\ntemperature = 0.5\ninput = "keystation"\nresponse_steps = "match"\n[cc]\npanic = 81\n')
    loaded = config.load(flags("--config", str(file), "--bpm", "140", "--response-steps", "24", "--no-mqtt"))
    assert (loaded.bpm, loaded.temperature, loaded.input, loaded.response_steps) == (140.0, 0.5, "keystation", 24)
    assert loaded.cc == {"panic": 81}
    assert loaded.mqtt.enabled is False
    assert loaded.engine_settings()["output_channel"] == 0  # channel 1 as the engine counts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bpm = 500", "bpm = 500: must be a number from 20 to 300"),
        ('clock = "sundial"', 'clock = "sundial": must be one of internal, midi'),
        ("temperature = true", "temperature = True: must be a number from 0.05 to 2"),
        ("input_channel = 17", "input_channel = 17: must be a whole number from 1 to 16"),
        ('response_steps = "long"', 'response_steps = "long": must be a whole number from 1 to 256, or "match"'),
        ('meter = "3/5"', 'meter = "3/5": must be a time signature such as 4/4, 3/4 or 6/8'),
        ("response_bars = 0", "response_bars = 0: must be a whole number from 1 to 16"),
        ("tempo = 120", "unknown key 'tempo'"),
        ("[cc]\nvolume = 7", "unknown key 'cc.volume'"),
        ("[cc]\npanic = 200", "cc.panic = 200: must be a whole number from 0 to 127"),
        ("[cc]\npanic = 80\nrespond = 80", "one CC number to two controls"),
        ("[mqtt]\nport = 0", "mqtt.port = 0: must be from 1 to 65535"),
        ("bpm = ", "not valid TOML"),
    ],
)
def test_a_bad_value_names_key_value_and_what_is_allowed(tmp_path, text, message):
    file = tmp_path / "bad.toml"
    file.write_text(text + "\n")
    with pytest.raises(ConfigError) as error:
        config.load(flags("--config", str(file)))
    assert message in str(error.value)
    assert str(file) in str(error.value)


def test_a_bad_flag_is_named():
    with pytest.raises(ConfigError, match=r"--temperature: temperature = 3.0: must be a number from 0.05 to 2"):
        config.load(flags("--config", "/dev/null", "--temperature", "3"))


def test_a_missing_file_is_an_error():
    with pytest.raises(ConfigError, match="configuration file not found"):
        config.load(flags("--config", "/no/such/improvd.toml"))


@pytest.mark.parametrize(
    "line, message",
    [
        ("phrase_end_steps = 0", "phrase_end_steps = 0: must be a whole number from 1 to 64"),
        ('clock = "sundial"', 'clock = "sundial": must be one of internal, midi'),
    ],
)
def test_improvd_run_exits_non_zero_naming_the_key(tmp_path, line, message):
    file = tmp_path / "bad.toml"
    file.write_text(line + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "improvd.cli", "run", "--config", str(file)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_meter_and_response_bars_from_the_file_and_the_flags(tmp_path):
    file = tmp_path / "bars.toml"
    file.write_text('meter = "6/8"\nresponse_bars = 4\n')
    loaded = config.load(flags("--config", str(file), "--response-bars", "3"))
    settings = loaded.engine_settings()
    assert (settings["meter"], settings["response_bars"], settings["response_steps"]) == ("6/8", 3, None)
    assert config.load(flags("--meter", "3/4")).engine_settings()["meter"] == "3/4"


def test_the_metronome_settings_reach_the_engine(tmp_path):
    file = tmp_path / "click.toml"
    file.write_text("metronome_channel = 16\nmetronome_notes = [34, 33]\ncount_in_bars = 2\n[cc]\nmetronome = 83\n")
    loaded = config.load(flags("--config", str(file), "--metronome"))
    settings = loaded.engine_settings()
    assert (settings["metronome"], settings["metronome_channel"], settings["metronome_notes"]) == (True, 15, (34, 33))
    assert settings["count_in_bars"] == 2 and loaded.cc == {"metronome": 83}
    file.write_text("metronome_notes = [34]\n")
    with pytest.raises(ConfigError, match="metronome_notes = \\[34\\]: must be two MIDI notes"):
        config.load(flags("--config", str(file)))


def test_thru_and_a_record_folder_that_must_exist(tmp_path):
    loaded = config.load(flags("--thru", "--record-dir", str(tmp_path)))
    assert loaded.engine_settings()["thru"] is True and loaded.record_dir == str(tmp_path)
    with pytest.raises(ConfigError, match=r"record_dir = .*: must be an existing folder"):
        config.load(flags("--record-dir", str(tmp_path / "missing")))
