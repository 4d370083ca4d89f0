"""What the daemon does with each message from the MIDI input: a decision, made without threads or ports.

``InputFilter.decide`` takes a message's raw bytes and returns one of
``Feed`` (player input for the timing thread), ``Clock`` (a MIDI clock byte
to follow), ``Change`` or ``Command`` (a configured control change, the
``[cc]`` table) or ``Drop`` (with its reason; ``counted`` ones go to the
daemon's tally of hostile or broken input). The daemon carries it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mido

from improvd.core.schema import BY_NAME, CC_NUMBER
from improvd.daemon.config import Config
from improvd.daemon.timing import CLOCK, CONTINUE, START, STOP

CLOCK_BYTES = (CLOCK, START, CONTINUE, STOP)
MALFORMED = "malformed MIDI messages"  # the one counted reason
SUSTAIN = 64  # CC 64, the sustain pedal: passed on without thru too
CHANNEL_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}  # status & 0xF0 -> data bytes
SYSTEM_COMMON = range(0xF0, 0xF8)  # SysEx and system common: never for improvd, dropped uncounted
PRESSED = 64  # a switch control's value from which it is on (or, for respond and panic, pressed)


def well_formed(data: Sequence[int]) -> bool:
    """A complete channel message (its status byte and exactly its 7-bit data bytes) or one real-time byte.

    Everything from a port passes this before it is parsed: short, long or
    otherwise malformed bytes are dropped by the caller, never raised.
    """
    if not data:
        return False
    status = data[0]
    if status >= 0xF8:
        return len(data) == 1
    if not 0x80 <= status < 0xF0 or len(data) != 1 + CHANNEL_DATA_BYTES[status & 0xF0]:
        return False
    return all(0 <= byte < 0x80 for byte in data[1:])


@dataclass(frozen=True)
class Feed:
    """Player input for the engine (``TimingThread.feed``)."""

    message: mido.Message


@dataclass(frozen=True)
class Clock:
    """A MIDI clock, Start, Continue or Stop byte to follow (``TimingThread.clock_message``)."""

    status: int


@dataclass(frozen=True)
class Change:
    """A setting from a control change, valid as it is: ``temperature``, ``enabled``, ``metronome``,
    ``session_memory`` or ``style`` (the CC's place from 0 to 1, which the controller turns into auto or a model's
    name)."""

    name: str
    value: float | bool


@dataclass(frozen=True)
class Command:
    """A control pressed: ``respond``, ``panic`` or ``forget``."""

    name: str


@dataclass(frozen=True)
class Drop:
    """Nothing to do; ``counted`` when the input was broken (its ``reason`` goes to the tally), not just not ours."""

    reason: str
    counted: bool = False


Decision = Feed | Clock | Change | Command | Drop


class InputFilter:
    """Decides what each input message is for; keeps the notes the player holds (one reader at a time)."""

    def __init__(self) -> None:
        self._held: set[tuple[int, int]] = set()  # (channel, note)

    def decide(self, data: Sequence[int], config: Config, thru: bool) -> Decision:
        """The decision for one message's bytes under ``config`` (clock, input_channel, cc) and the engine's thru.

        Bytes are checked before they are parsed: malformed ones are a counted drop, never an exception.
        """
        if not well_formed(data):
            if data and data[0] in SYSTEM_COMMON:
                return Drop("SysEx or system common")
            return Drop(MALFORMED, counted=True)
        status = data[0]
        if status >= 0xF0:
            if status in CLOCK_BYTES and config.clock == "midi":
                return Clock(status)
            return Drop("real-time byte not followed")
        if config.input_channel is not None and status & 0x0F != config.input_channel - 1:
            return Drop("another channel")
        return self._channel_message(mido.Message.from_bytes(data), config, thru)

    def _channel_message(self, message: mido.Message, config: Config, thru: bool) -> Decision:
        if message.type == "control_change":
            control = _control(message, config.cc)
            if control is not None:
                return control
        if message.type in ("note_on", "note_off"):
            return Feed(message) if self._track(message) else Drop("note_off of a note not held")
        if thru or (message.type == "control_change" and message.control == SUSTAIN):
            return Feed(message)  # with thru every channel message goes on: the engine passes it to the output
        return Drop("not passed on without thru")

    def _track(self, message: mido.Message) -> bool:
        """Keep the player's held notes; False for a note_off of a note not held (nothing to release)."""
        key = (message.channel, message.note)
        if message.type == "note_on" and message.velocity > 0:
            self._held.add(key)
            return True
        if key in self._held:
            self._held.discard(key)
            return True
        return False


def _control(message: mido.Message, cc: dict[str, int]) -> Decision | None:
    """What a configured control change asks for; None when its number is not in the ``[cc]`` table."""
    name = next((name for name, number in cc.items() if number == message.control), None)
    if name is None:
        return None
    value = message.value
    if name == "temperature":
        return Change("temperature", BY_NAME["temperature"].scale(value / CC_NUMBER.high))
    if name == "style":  # its place across auto and the models: the controller knows them
        return Change("style", value / CC_NUMBER.high)
    if name in ("enable", "metronome", "session_memory"):
        return Change("enabled" if name == "enable" else name, value >= PRESSED)
    return Command(name) if value >= PRESSED else Drop("control released")
