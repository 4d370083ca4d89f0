"""Drive an Engine in simulated time with an arbitrary stream of player messages."""

from __future__ import annotations

import math
from collections.abc import Iterator

import mido

from improvd.core.engine import Engine, Event, Timed


def drive(
    engine: Engine, messages: list[tuple[float, mido.Message]], steps: int, sent: list[Timed], events: list[Event]
) -> Iterator[float]:
    """Boundary k (at k steps from 0) for k up to ``steps``: the messages played before it are fed, what is due by
    then is sent (into ``sent``); the boundary is yielded, then ticked (its events into ``events``)."""
    pending = sorted(messages, key=lambda item: item[0])
    engine.start(0.0)
    step = engine.step_seconds()
    for k in range(steps + 1):
        boundary = k * step
        while pending and pending[0][0] < boundary:
            time, message = pending.pop(0)
            sent += engine.feed(message, time)
        sent += engine.pop_due(boundary)
        yield boundary
        engine.tick(boundary)
        events += engine.drain_events()


def run(
    engine: Engine, messages: list[tuple[float, mido.Message]], steps: int, drain: bool = True
) -> tuple[list[Timed], list[Event]]:
    """Tick ``steps`` boundaries from 0, feeding each message before the boundary after it; return output and events.

    With ``drain`` the output still queued after the last tick is taken too (as if time ran on).
    """
    sent: list[Timed] = []
    events: list[Event] = []
    for _ in drive(engine, messages, steps, sent, events):
        pass
    if drain:
        sent += engine.pop_due(math.inf)
    return sent, events


def run_until_sounding(engine: Engine, messages: list[tuple[float, mido.Message]], steps: int = 200) -> float:
    """Drive as ``run`` does until an answer note sounds; the time of that boundary (the tick there not yet run)."""
    for boundary in drive(engine, messages, steps, [], []):
        if engine.sounding:
            return boundary
    raise AssertionError(f"no answer note sounded in {steps} steps")


def sounding_after(sent: list[Timed]) -> set[tuple[int, int]]:
    """(channel, note) pairs whose last message was a note_on (CC 123 releases a channel)."""
    on: set[tuple[int, int]] = set()
    for timed in sorted(sent, key=lambda t: t.time):
        m = timed.message
        if m.type == "note_on" and m.velocity > 0:
            on.add((m.channel, m.note))
        elif m.type in ("note_on", "note_off"):
            on.discard((m.channel, m.note))
        elif m.type == "control_change" and m.control == 123:
            on = {(c, n) for c, n in on if c != m.channel}
    return on
