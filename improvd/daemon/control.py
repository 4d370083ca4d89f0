"""MQTT control messages to requests: pure parsing and validation, no I/O.

A message is a topic relative to the instance prefix (``set/temperature``,
``set``, ``cmd/panic``) and the raw payload bytes. ``parse`` turns it into a
``Request`` (settings to change together, or a command) or raises
``ControlError`` with a reason fit to publish in an ``error`` event. Nothing
is applied here: the controller applies the changes all together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from improvd.core.schema import MODEL_NAME, MQTT, SETTINGS, Setting, check_style

MAX_PAYLOAD = 4096  # bytes
MAX_DEPTH = 2  # JSON nesting: a settings object is flat; deeper payloads are refused before they are parsed
MAX_NUMBER_CHARS = 32  # digits and signs of one JSON number; longer ones are refused, never converted
COMMANDS = ("respond", "panic", "forget")
TRUE_WORDS = ("true", "on", "1")
FALSE_WORDS = ("false", "off", "0")


class ControlError(ValueError):
    """A message that is rejected; the text says why."""


@dataclass(frozen=True)
class Request:
    """What a message asks for: ``changes`` to apply together, or a ``command``."""

    changes: dict[str, Any] = field(default_factory=dict)
    command: str | None = None


def _switch(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ControlError(f"{key} must be true/false, on/off or 1/0, got {value!r}")


def _model(value: Any) -> str:
    if not isinstance(value, str) or not MODEL_NAME.fullmatch(value):
        raise ControlError(
            f"model must be the name of a model directory (letters, digits, '.', '_', '-'), got {value!r}"
        )
    return value


def _style(value: Any) -> str:
    try:
        return check_style(value)
    except ValueError as allowed:
        raise ControlError(f"style must be {allowed}, got {value!r}") from None


def _validator(setting: Setting) -> Callable[[Any], Any]:
    """The check of a JSON value (or one parsed from a plain-text payload) of ``setting``, from the table."""
    if setting.name == "model":
        return _model
    if setting.name == "style":
        return _style
    if setting.kind == "switch":
        return lambda value: _switch(value, setting.name)

    def check(value: Any) -> Any:
        try:
            return setting.check(value, outside=True)
        except ValueError as allowed:
            raise ControlError(f"{setting.name} must be {allowed}, got {value!r}") from None

    return check


# key -> validator of a JSON value (or a value parsed from a plain-text payload)
VALIDATORS: dict[str, Callable[[Any], Any]] = {s.name: _validator(s) for s in SETTINGS if MQTT in s.sources}
# plain-text payloads given to the check as they are ("G minor", "3/4", "48 84": the check reads two notes from text)
TEXT_PAYLOADS = tuple(
    s.name for s in SETTINGS if MQTT in s.sources and s.kind in ("text", "choice", "meter", "key", "notes")
)


def _reject_constant(name: str) -> float:
    raise ControlError(f"{name} is not a number")


def _bounded(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """A JSON number hook that refuses numbers longer than MAX_NUMBER_CHARS before converting them."""

    def parse_number(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise ControlError(f"a number of {len(text)} characters is over the limit of {MAX_NUMBER_CHARS}")
        return convert(text)

    return parse_number


def _depth(text: str) -> int:
    """The deepest nesting of JSON arrays and objects in ``text`` (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return text.count("[") + text.count("{")  # at most: the scan below is needed only for more brackets
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (not escaped and char == "\\"), in_string and (escaped or char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _json(text: str) -> Any:
    """``json.loads`` within bounds: nesting over MAX_DEPTH, over-long numbers, NaN and a key given twice in an
    object are ControlError."""
    if _depth(text) > MAX_DEPTH:
        raise ControlError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return json.loads(
        text,
        parse_constant=_reject_constant,
        parse_int=_bounded(int),
        parse_float=_bounded(float),
        object_pairs_hook=_once_each,
    )


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    twice = next((key for key in keys if keys.count(key) > 1), None)
    if twice is not None:
        raise ControlError(f"key {twice!r} given twice")
    return dict(pairs)


def _scalar(text: str) -> Any:
    """A plain-text payload as a JSON scalar when it is one (``0.7``, ``true``), else the text itself."""
    try:
        value = _json(text)
    except json.JSONDecodeError:
        return text
    if isinstance(value, (dict, list)):
        raise ControlError(f"expected a single value, got {text[:40]!r}")
    return value


def _text(payload: bytes) -> str:
    if len(payload) > MAX_PAYLOAD:
        raise ControlError(f"payload of {len(payload)} bytes is over the limit of {MAX_PAYLOAD}")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ControlError("payload is not UTF-8 text") from None
    if not text:
        raise ControlError("empty payload")
    return text


def parse_object(text: str) -> dict[str, Any]:
    """A ``set`` payload: a JSON object of several settings, each validated."""
    try:
        value = _json(text)
    except json.JSONDecodeError as error:
        raise ControlError(f"bad JSON: {error}") from None
    if not isinstance(value, dict) or not value:
        raise ControlError(f'expected a JSON object of settings such as {{"temperature": 0.8}}, got {text[:40]!r}')
    unknown = sorted(set(value) - set(VALIDATORS))
    if unknown:
        raise ControlError(f"unknown key {unknown[0]!r} (allowed: {', '.join(VALIDATORS)})")
    return {key: VALIDATORS[key](_as_topic(key, item)) for key, item in value.items()}


def _as_topic(key: str, item: Any) -> Any:
    """A string in a ``set`` object read as the setting's own topic reads its payload: ``{"turns": "4"}`` is 4."""
    return _scalar(item) if isinstance(item, str) and key not in TEXT_PAYLOADS else item


def parse(subtopic: str, payload: bytes) -> Request:
    """The request of a message on ``<prefix>/<subtopic>``; ControlError says why it is rejected."""
    parts = subtopic.split("/")
    if parts[0] == "cmd" and len(parts) == 2 and parts[1] in COMMANDS:
        if len(payload) > MAX_PAYLOAD:
            raise ControlError(f"payload of {len(payload)} bytes is over the limit of {MAX_PAYLOAD}")
        return Request(command=parts[1])
    if parts == ["set"]:
        return Request(changes=parse_object(_text(payload)))
    if parts[0] == "set" and len(parts) == 2 and parts[1] in VALIDATORS:
        text = _text(payload)
        return Request(changes={parts[1]: VALIDATORS[parts[1]](_as_topic(parts[1], text))})
    topics = ["set", *(f"set/{key}" for key in VALIDATORS), *(f"cmd/{name}" for name in COMMANDS)]
    raise ControlError(f"no such topic {subtopic!r} (topics: {', '.join(topics)})")
