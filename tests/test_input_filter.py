"""The input filter alone: bytes in, decisions out (no daemon, no threads, no ports)."""

from __future__ import annotations

import mido
import pytest

from improvd.daemon import config as configuration
from improvd.daemon.input_filter import MALFORMED, Change, Clock, Command, Drop, Feed, InputFilter

CC = {"temperature": 20, "respond": 21, "panic": 22, "enable": 23, "metronome": 24, "session_memory": 25, "forget": 26}


def config(**table):
    return configuration.from_table(table)


def decide(data, thru=False, **table):
    return InputFilter().decide(data, config(**table), thru)


@pytest.mark.parametrize(
    "data",
    [[], [0xE0, 0x40], [0x90, 60], [0x90, 60, 64, 1], [0x90, 60, 200], [0xC0], [0x40, 1, 2], [0xF8, 0]],
    ids=["empty", "short bend", "truncated", "long", "data byte over 127", "no program", "no status", "long clock"],
)
def test_malformed_bytes_are_a_counted_drop(data):
    assert decide(data) == Drop(MALFORMED, counted=True)


@pytest.mark.parametrize("data", [[0xF0, 1, 2], [0xF2, 0, 0], [0xF7], [0xFE]])
def test_sysex_system_common_and_active_sensing_are_dropped_uncounted(data):
    decision = decide(data)
    assert isinstance(decision, Drop) and not decision.counted


@pytest.mark.parametrize("status", [0xF8, 0xFA, 0xFB, 0xFC])
def test_clock_bytes_are_followed_only_under_midi_clock(status):
    assert decide([status], clock="midi") == Clock(status)
    assert isinstance(decide([status]), Drop)


def test_another_channel_is_dropped_when_one_is_listened_to():
    assert isinstance(decide([0x91, 60, 64], input_channel=1), Drop)
    assert decide([0x90, 60, 64], input_channel=1) == Feed(mido.Message("note_on", note=60, velocity=64))
    assert decide([0x91, 60, 64]) == Feed(mido.Message("note_on", channel=1, note=60, velocity=64))


def test_a_note_off_is_fed_only_for_a_held_note():
    """A lost note_on leaves a note_off with nothing to release; a lost note_off leaves the note held."""
    held, settings = InputFilter(), config()
    assert isinstance(held.decide([0x80, 60, 0], settings, False), Drop)  # never pressed
    assert isinstance(held.decide([0x90, 60, 64], settings, False), Feed)
    assert isinstance(held.decide([0x90, 60, 0], settings, False), Feed)  # velocity 0 releases it
    assert isinstance(held.decide([0x80, 60, 0], settings, False), Drop)  # released already
    assert isinstance(held.decide([0x90, 62, 64], settings, False), Feed)
    assert isinstance(held.decide([0x91, 62, 0], settings, False), Drop)  # the same key on another channel
    assert isinstance(held.decide([0x90, 62, 64], settings, False), Feed)  # pressed again, its note_off lost
    assert held.decide([0x80, 62, 0], settings, False) == Feed(mido.Message("note_off", note=62, velocity=0))


@pytest.mark.parametrize(
    ("data", "decision"),
    [
        ([0xB0, 20, 0], Change("temperature", 0.05)),
        ([0xB0, 20, 127], Change("temperature", 2.0)),
        ([0xB0, 20, 64], Change("temperature", round(0.05 + 1.95 * 64 / 127, 3))),
        ([0xB0, 23, 127], Change("enabled", True)),
        ([0xB0, 23, 63], Change("enabled", False)),
        ([0xB0, 24, 64], Change("metronome", True)),
        ([0xB0, 21, 64], Command("respond")),
        ([0xB0, 22, 127], Command("panic")),
        ([0xB0, 25, 64], Change("session_memory", True)),
        ([0xB0, 25, 0], Change("session_memory", False)),
        ([0xB0, 26, 64], Command("forget")),
    ],
)
def test_configured_control_changes_are_actions(data, decision):
    assert decide(data, thru=True, cc=CC) == decision


@pytest.mark.parametrize("number", [21, 22, 26])
def test_releasing_respond_or_panic_does_nothing_and_is_not_passed_on(number):
    decision = decide([0xB0, number, 0], thru=True, cc=CC)
    assert isinstance(decision, Drop) and not decision.counted


def test_without_thru_only_notes_and_the_sustain_pedal_go_on():
    pedal = [0xB0, 64, 127]
    assert decide(pedal) == Feed(mido.Message("control_change", control=64, value=127))
    for data in ([0xB0, 1, 10], [0xE0, 0, 64], [0xC0, 5], [0xB0, 20, 10]):
        assert isinstance(decide(data), Drop)
        assert isinstance(decide(data, thru=True), Feed)  # unmapped controls too
