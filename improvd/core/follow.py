"""Following the player's tempo: a call heard on the engine's grid is heard again on the player's own.

At a phrase end with ``clock = "follow"`` the engine estimates the call's tempo and beat (improvd.core.tempo),
lays a new 16th grid from that beat (step 0 on the call's first beat, so bar 1 starts there; a call that sped up
or slowed down gets a grid that did too, ``Beat.time``) and replays the call's messages onto it exactly as they
would have been heard live: each snaps to the nearest boundary and each step closes once the messages played
before its end are in. The answer then plays on that grid, extrapolated from the call's end at its last tempo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mido

from improvd.core.encoding import is_pitch
from improvd.core.seedbuffer import SeedBuffer
from improvd.core.tempo import Beat

FOLLOW_LEAD = 0.03  # seconds: the answer's first step starts at least this long after the phrase-end tick
SUSTAIN = 64


@dataclass
class Regridded:
    """The call heard on the player's grid: its buffer, its melody onsets (step, velocity, deviation in steps),
    the step open at the phrase end and the steps the call has lasted."""

    buffer: SeedBuffer
    open_step: int
    call_steps: int
    onsets: list[tuple[int, int, float]] = field(default_factory=list)


def regrid(messages: list[tuple[float, mido.Message]], beat: Beat, now: float, length: int) -> Regridded | None:
    """``messages`` (the call's, in time order) replayed on ``beat``'s grid up to the step open at ``now``
    (the last step that starts at least FOLLOW_LEAD before the answer's first); None without a note."""
    starts = [t for t, m in messages if m.type == "note_on" and m.velocity > 0]
    if not starts:
        return None

    def steps(time: float) -> float:
        return beat.beats(time) * 4

    def snap(time: float) -> int:
        return math.floor(steps(time) + 0.5)

    first = snap(min(starts))
    open_step = max(first + 1, math.ceil(steps(now + FOLLOW_LEAD)) - 1)
    result = Regridded(SeedBuffer(length), open_step, open_step - first)
    deviations: dict[tuple[int, int], float] = {}
    pending = iter(messages)
    waiting = next(pending, None)
    for k in range(first, open_step):
        while waiting is not None and waiting[0] < beat.time((k + 1) / 4):
            time, message = waiting
            at = snap(time)
            deviations[(at, getattr(message, "note", -1))] = steps(time) - at
            _hear(result.buffer, message, at)
            waiting = next(pending, None)
        symbol = result.buffer.close(k)
        if is_pitch(symbol):
            result.onsets.append((k, result.buffer.velocities[-1], deviations.get((k, int(symbol)), 0.0)))
    return result


def _hear(buffer: SeedBuffer, message: mido.Message, step: int) -> None:
    if message.type == "note_on" and message.velocity > 0:
        buffer.note_on(message.note, message.velocity, step)
    elif message.type in ("note_on", "note_off"):
        buffer.note_off(message.note, step)
    elif message.type == "control_change" and message.control == SUSTAIN:
        buffer.pedal(message.value >= 64, step)
