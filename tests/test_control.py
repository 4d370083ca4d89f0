"""improvd.daemon.control: every kind of message, good and bad, parsed without a broker."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from improvd.daemon.control import MAX_PAYLOAD, ControlError, Request, parse


@pytest.mark.parametrize(
    ("subtopic", "payload", "changes"),
    [
        ("set/temperature", b"0.7", {"temperature": 0.7}),
        ("set/temperature", b" 2 \n", {"temperature": 2.0}),
        ("set/temperature", b"0.05", {"temperature": 0.05}),
        ("set/bpm", b"96", {"bpm": 96.0}),
        ("set/bpm", b"20", {"bpm": 20.0}),
        ("set/bpm", b"300", {"bpm": 300.0}),
        ("set/enabled", b"true", {"enabled": True}),
        ("set/enabled", b"OFF", {"enabled": False}),
        ("set/enabled", b"on", {"enabled": True}),
        ("set/enabled", b"0", {"enabled": False}),
        ("set/enabled", b"1", {"enabled": True}),
        ("set/response_steps", b"16", {"response_steps": 16}),
        ("set/response_steps", b"match", {"response_steps": "match"}),
        ("set/response_steps", b"256", {"response_steps": 256}),
        ("set/phrase_end_steps", b"4", {"phrase_end_steps": 4}),
        ("set/response_bars", b"4", {"response_bars": 4}),
        ("set/meter", b"6/8", {"meter": "6/8"}),
        ("set/meter", b" 3/4\n", {"meter": "3/4"}),
        ("set", b'{"meter": "3/4", "response_bars": 1}', {"meter": "3/4", "response_bars": 1}),
        ("set/model", b"essen", {"model": "essen"}),
        ("set/model", b"essen-v2.1_small", {"model": "essen-v2.1_small"}),
        (
            "set",
            b'{"temperature": 0.9, "bpm": 100, "enabled": "off"}',
            {"temperature": 0.9, "bpm": 100.0, "enabled": False},
        ),
        ("set", b'{"response_steps": "match", "model": "essen"}', {"response_steps": "match", "model": "essen"}),
        # a string in a set object reads as its own topic's payload: what Node-RED and dashboards often send
        ("set", b'{"turns": "4", "temperature": "0.5"}', {"turns": 4, "temperature": 0.5}),
        ("set", b'{"model": "1"}', {"model": "1"}),
    ],
)
def test_good_settings(subtopic, payload, changes):
    assert parse(subtopic, payload) == Request(changes=changes)


@pytest.mark.parametrize("name", ["respond", "panic", "forget"])
def test_commands_ignore_the_payload(name):
    assert parse(f"cmd/{name}", b"") == Request(command=name)
    assert parse(f"cmd/{name}", b"anything") == Request(command=name)


@pytest.mark.parametrize(
    ("subtopic", "payload", "reason"),
    [
        ("set/temperature", b"warm", "temperature must be a number from 0.05 to 2"),
        ("set/temperature", b"NaN", "NaN is not a number"),
        ("set/temperature", b"nan", "temperature must be a number"),
        ("set/temperature", b"Infinity", "Infinity is not a number"),
        ("set/temperature", b"-Infinity", "-Infinity is not a number"),
        ("set/temperature", b"1e999", "temperature must be a number"),
        ("set/temperature", b"0.01", "got 0.01"),
        ("set/temperature", b"2.5", "got 2.5"),
        ("set/temperature", b"true", "got True"),
        ("set/temperature", b"[0.5]", "expected a single value"),
        ("set/temperature", b"", "empty payload"),
        ("set/temperature", b"  \n", "empty payload"),
        ("set/temperature", b"\xff\xfe", "not UTF-8"),
        ("set/temperature", b"1" * (MAX_PAYLOAD + 1), "over the limit of 4096"),
        ("set/bpm", b"19.9", "bpm must be a number from 20 to 300"),
        ("set/bpm", b"301", "bpm must be a number from 20 to 300"),
        ("set/enabled", b"maybe", "enabled must be true/false, on/off or 1/0"),
        ("set/enabled", b"2", "enabled must be"),
        ("set/response_steps", b"0", 'response_steps must be a whole number from 1 to 256, or "match"'),
        ("set/response_steps", b"257", "response_steps must be"),
        ("set/response_steps", b"8.5", "response_steps must be"),
        ("set/response_steps", b"all", "response_steps must be"),
        ("set/phrase_end_steps", b"65", "phrase_end_steps must be a whole number from 1 to 64"),
        ("set/response_bars", b"0", "response_bars must be a whole number from 1 to 16"),
        ("set/response_bars", b"17", "response_bars must be"),
        ("set/meter", b"3/5", "meter must be a time signature such as 4/4, 3/4 or 6/8"),
        ("set/meter", b"7/32", "meter must be"),
        ("set/meter", b"waltz", "meter must be"),
        ("set", b'{"meter": 4}', "meter must be"),
        ("set/phrase_end_steps", b"2.0", "phrase_end_steps must be"),
        ("set/model", b"../etc", "model must be the name of a model directory"),
        ("set/model", b"a/b", "model must be"),
        ("set/model", b".hidden", "model must be"),
        ("set", b"{temperature: 1}", "bad JSON"),
        ("set", b'{"temperature": NaN}', "NaN is not a number"),
        ("set", b"[1, 2]", "expected a JSON object"),
        ("set", b"{}", "expected a JSON object"),
        (
            "set",
            b'{"temperature": 0.5, "volume": 3}',
            "unknown key 'volume' (allowed: model, bpm, enabled, temperature",
        ),
        ("set", b'{"temperature": "warm"}', "temperature must be a number"),
        ("set", b'{"temperature": "NaN"}', "NaN is not a number"),
        ("set", b'{"turns": "[4]"}', "expected a single value"),
        ("set", b'{"temperature": 0.5, "bpm": 1000}', "bpm must be"),
        ("set", b"", "empty payload"),
        ("set/volume", b"1", "no such topic 'set/volume'"),
        ("set/temperature/x", b"1", "no such topic"),
        ("cmd/explode", b"", "no such topic 'cmd/explode' (topics: set, set/model, set/bpm"),
        ("cmd/panic", b"x" * (MAX_PAYLOAD + 1), "over the limit"),
    ],
)
def test_bad_messages_name_the_reason(subtopic, payload, reason):
    with pytest.raises(ControlError) as error:
        parse(subtopic, payload)
    assert reason in str(error.value)


@given(st.binary(max_size=64), st.sampled_from(["set", "set/temperature", "set/bpm", "set/enabled", "set/model"]))
def test_any_payload_parses_or_is_rejected_with_a_reason(payload, subtopic):
    try:
        request = parse(subtopic, payload)
    except ControlError as error:
        assert str(error)
    else:
        assert request.changes and request.command is None


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_temperature_is_accepted_exactly_in_range(value):
    text = json.dumps(value).encode()
    if 0.05 <= value <= 2.0:
        assert parse("set/temperature", text).changes == {"temperature": value}
    else:
        with pytest.raises(ControlError):
            parse("set/temperature", text)


@pytest.mark.parametrize(
    ("subtopic", "payload", "reason"),
    [
        ("set", b"[" * 1900 + b"]" * 1900, "nested deeper than"),
        ("set", b'{"temperature": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested deeper than"),
        ("set/temperature", b"9" * 4000, "a number of 4000 characters"),
        ("set/temperature", b"0." + b"1" * 4000, "a number of 4002 characters"),
        ("set", b'{"bpm": ' + b"9" * 4000 + b"}", "a number of 4000 characters"),
    ],
)
def test_nesting_and_number_bombs_are_refused_before_parsing(subtopic, payload, reason):
    """They used to raise RecursionError and OverflowError, each logged with a full traceback."""
    with pytest.raises(ControlError, match=reason):
        parse(subtopic, payload)


def test_brackets_inside_strings_are_not_nesting():
    with pytest.raises(ControlError, match="meter must be a time signature"):
        parse("set", b'{"meter": "[[[{{{3/4"}')


def test_groove_is_straight_or_follow():
    assert parse("set/groove", b"follow") == Request(changes={"groove": "follow"})
    with pytest.raises(ControlError, match="groove must be straight or follow, got 'swing'"):
        parse("set/groove", b"swing")


def test_metronome_and_count_in_over_mqtt():
    assert parse("set/metronome", b"on") == Request(changes={"metronome": True})
    assert parse("set", b'{"metronome": false, "count_in_bars": 1}') == Request(
        changes={"metronome": False, "count_in_bars": 1}
    )
    with pytest.raises(ControlError, match="metronome must be true/false"):
        parse("set/metronome", b"loud")
    with pytest.raises(ControlError, match="count_in_bars must be a whole number from 0 to 8"):
        parse("set/count_in_bars", b"9")


def test_a_key_given_twice_is_refused_not_silently_the_last():
    with pytest.raises(ControlError, match="key 'bpm' given twice"):
        parse("set", b'{"bpm": 100, "bpm": 200}')
