"""Configuration faults give one line and exit status 2; a reload says what it changed and keeps restart keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from improvd.daemon import config, mqtt
from improvd.daemon.config import ConfigError
from improvd.daemon.control import parse
from tests.helpers import raised_without_blocking
from tests.inprocess import make_daemon
from tests.services import wait_for


def run_with(file) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "improvd.cli", "run", "--no-mqtt", "--config", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_non_utf8_file_is_one_line_and_exit_2(tmp_path):
    file = tmp_path / "latin1.toml"
    file.write_bytes("# température\nbpm = 100\n".encode("latin-1"))
    result = run_with(file)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not UTF-8 text" in result.stderr


def test_a_non_utf8_password_file_is_one_line_and_exit_2(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"\xff\xfe\n")
    file = tmp_path / "improvd.toml"
    file.write_text(f'[mqtt]\nusername = "u"\npassword_file = "{secret}"\n')
    result = run_with(file)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot be read (not UTF-8 text)" in result.stderr


def test_an_unreadable_password_file_is_a_config_error(tmp_path, monkeypatch):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mqtt, "read_capped", denied)
    with pytest.raises(ConfigError, match=r"password_file .*: cannot be read \(Permission denied\)"):
        config.from_table({"mqtt": {"username": "u", "password_file": str(secret)}}, argparse.Namespace())


@pytest.mark.parametrize("number", [64, 120, 123, 127])
def test_a_control_cannot_take_the_sustain_pedal_or_a_mode_message(number):
    with pytest.raises(ConfigError, match=f"cc.panic = {number}: CC {number} is"):
        config.from_table({"cc": {"panic": number}})


def test_a_reload_keeps_the_clock_and_says_which_settings_it_changed(tmp_path):
    """A reload from clock midi to internal silently stopped the grid; one over MQTT changes was silent."""
    file = tmp_path / "improvd.toml"
    file.write_text('clock = "midi"\ntemperature = 1.0\n')
    daemon = make_daemon(config_file=str(file))
    events: list[tuple[str, dict]] = []
    daemon.controller.event = lambda name, data: events.append((name, data))
    clocks: list[int] = []
    daemon.timing.clock_message = lambda status, arrival: clocks.append(status)
    daemon.timing.start()
    try:
        daemon.controller.apply({"temperature": 1.5})  # over MQTT
        wait_for(lambda: daemon.engine.settings.temperature == 1.5, 5, "the MQTT change")
        file.write_text('clock = "internal"\ntemperature = 1.0\n')

        async def reload() -> None:
            daemon._loop = asyncio.get_running_loop()
            await daemon.reload()

        asyncio.run(reload())
        wait_for(lambda: daemon.engine.settings.temperature == 1.0, 5, "the reload")
    finally:
        daemon.timing.stop()
    assert daemon.controller.config.clock == "midi"  # a restart changes it; until then the grid follows MIDI clock
    daemon.on_midi([0xF8], 0.0)
    assert clocks == [0xF8]
    assert ("reloaded", {"changed": {"temperature": 1.0}}) in events


NESTED = "a = " + "[" * 5000 + "]" * 5000 + "\n"  # 10 KB


def test_a_deeply_nested_file_is_one_line_and_exit_2(tmp_path):
    """It raised RecursionError: a traceback at start, and a reload that ended the daemon with status 1."""
    file = tmp_path / "nested.toml"
    file.write_text(NESTED)
    result = run_with(file)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not valid TOML: nested too deeply" in result.stderr


def test_a_reload_of_a_deeply_nested_file_keeps_the_running_configuration(tmp_path, caplog):
    file = tmp_path / "improvd.toml"
    file.write_text("temperature = 1.5\n")
    daemon = make_daemon(config_file=str(file))
    file.write_text(NESTED)

    async def reload() -> None:
        daemon._loop = asyncio.get_running_loop()
        await daemon.reload()

    asyncio.run(reload())
    assert daemon.controller.config.temperature == 1.5
    assert "reload refused, configuration unchanged: " in caplog.text and "nested too deeply" in caplog.text


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fifo", "cannot be the configuration file: not a regular file"),
        ("folder", "cannot read the configuration file: Is a directory"),
        ("/dev/zero", "cannot be the configuration file: over the limit of 65536 bytes"),
    ],
)
def test_a_file_that_is_not_a_regular_file_is_refused_in_bounded_time_and_memory(tmp_path, kind, message):
    """A link to /dev/zero took 3 GB in 4.8 s at a reload; a FIFO blocked the reload for ever."""
    file = tmp_path / "improvd.toml"
    if kind == "fifo":
        os.mkfifo(file)
    elif kind == "folder":
        file.mkdir()
    else:
        file.symlink_to(kind)
    error = raised_without_blocking(lambda: config.read_file(file))
    assert isinstance(error, ConfigError) and message in str(error)


def test_dev_null_is_an_empty_configuration():
    assert config.read_file(Path("/dev/null")) == {}


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    file = tmp_path / "improvd.toml"
    file.write_text("# " + "x" * config.MAX_CONFIG_BYTES + "\nbpm = 100\n")
    with pytest.raises(ConfigError, match=rf"over the limit of {config.MAX_CONFIG_BYTES} bytes"):
        config.read_file(file)


def test_a_long_bad_value_is_shown_cut(tmp_path):
    with pytest.raises(ConfigError) as error:
        config.from_table({"meter": "4/4" * 10_000})
    assert len(str(error.value)) < 300 and "(30002 characters)" in str(error.value)


def test_mqtt_values_reach_the_engine_in_its_units_and_the_state_in_the_daemons():
    """Channel 16 and program 1 over MQTT are the engine's 15 and 0; the program change goes out on channel 16."""
    daemon = make_daemon()
    daemon.timing.start()
    try:
        text = b'{"output_channel": 16, "program": 1, "key": "g minor", "range": [48, 84], "meter": "6/8"}'
        changes = parse("set", text).changes
        daemon.controller.apply(changes)
        wait_for(lambda: daemon.engine.settings.program == 0, 5, "the MQTT change")
        wait_for(lambda: [0xCF, 0] in daemon.ports.sent, 5, "the program change on channel 16")
    finally:
        daemon.timing.stop()
    settings = daemon.engine.settings
    assert (settings.output_channel, settings.key, settings.range) == (15, "G minor", (48, 84))
    state = daemon.controller.state()
    assert (state["output_channel"], state["program"], state["key"], state["range"]) == (16, 1, "G minor", [48, 84])
    assert state["beat_bpm"] == round(state["bpm"] * 2 / 3, 2)  # 6/8 clicks the dotted quarter
