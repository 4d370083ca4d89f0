"""The engine in simulated time: what a player plays, given to it exactly as the daemon would, without a clock.

Time starts at 0 and moves from grid boundary to grid boundary: at boundary k ``drive`` feeds the player's messages
that came before it (and wakes the engine at its deadline between ticks among them: ``Engine.next_deadline``), sends
what the engine has due by then, and ticks; ``perform`` plays a call of notes with it. This is the daemon's loop with
the waiting taken out, so a file gives the same response as the same phrase played live (with the same seed), and the
same file and seed always give the same response.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import mido

from improvd.core.engine import Engine, Event, Timed
from improvd.core.grid import bar_steps
from improvd.core.notes import PlayedNote
from improvd.core.schema import BY_NAME, MATCH_BARS

TAIL_STEPS = 64  # steps to wait beyond the longest possible response before giving up


class OfflineError(RuntimeError):
    """The engine did not answer the call; the text says what to change."""


@dataclass(frozen=True)
class Performance:
    """What came out of one simulated run."""

    response: list[PlayedNote]  # the engine's notes, in seconds from the grid origin
    events: list[Event]
    messages: list[Timed]  # every message the engine sent, in order


def call_messages(call: list[PlayedNote]) -> list[tuple[float, mido.Message]]:
    """The call as a player's note_on/note_off messages, in time order (note_off first at equal times)."""
    timed = []
    for n in call:
        timed.append((n.start, 1, mido.Message("note_on", note=n.pitch, velocity=n.velocity)))
        timed.append((n.end, 0, mido.Message("note_off", note=n.pitch, velocity=0)))
    timed.sort(key=lambda item: (item[0], item[1], item[2].note))
    return [(time, message) for time, _, message in timed]


@dataclass(frozen=True)
class Boundary:
    """One pass of the loop at a grid boundary: what was sent there and what the engine reported."""

    time: float
    sent: list[Timed]  # the replies to the messages fed before the boundary, then what was due by it
    events: list[Event]  # what feeding and the tick at the boundary reported


def drive(
    engine: Engine, messages: Iterable[tuple[float, mido.Message]], steps: int | None = None
) -> Iterator[Boundary]:
    """Play ``messages`` (player messages with their times) to ``engine`` (fresh, not yet started) in simulated
    time, in the order of the daemon's loop: start the grid at 0, then at boundary k (k steps from 0, for k up
    to ``steps``, or for ever without) feed the messages that came before it, send what is due by it, tick it,
    collect the events, and yield the boundary. The caller may stop at any boundary; the engine is left there
    (what it queued for later still queued, its notes still sounding)."""
    pending = deque(sorted(messages, key=lambda item: item[0]))  # a stable sort: equal times keep their order
    engine.start(0.0)
    step = engine.step_seconds()
    k = 0
    while steps is None or k <= steps:
        boundary = k * step
        sent: list[Timed] = []
        while pending and pending[0][0] < boundary:
            time, message = pending.popleft()
            sent += _woken(engine, time)
            sent += engine.feed(message, time)
        sent += _woken(engine, boundary)
        sent += engine.pop_due(boundary)
        engine.tick(boundary)
        yield Boundary(boundary, sent, engine.drain_events())
        k += 1


def _woken(engine: Engine, time: float) -> list[Timed]:
    """The engine's deadline between ticks met by ``time`` (``Engine.next_deadline``), as the daemon's loop wakes
    for it: what it queued by then is sent, before a message played after the deadline is heard."""
    deadline = engine.next_deadline()
    if deadline is None or deadline > time:
        return []
    engine.wake(deadline)
    return engine.pop_due(time)


def _step_limit(engine: Engine, call: list[PlayedNote]) -> int:
    settings = engine.settings
    call_steps = math.ceil(max(n.end for n in call) / engine.step_seconds())
    if settings.response_steps is None:
        bars = MATCH_BARS if settings.response_bars == "match" else int(settings.response_bars)
        response = (bars + 1) * bar_steps(settings.meter)  # a pickup bar, then whole bars
    else:
        response = call_steps if settings.response_steps == "match" else int(settings.response_steps)
    if settings.turns != "phrase":  # the player's turn, then as long an answer
        response = 2 * (int(settings.turns) + 1) * bar_steps(settings.meter)
    return call_steps + settings.phrase_end_steps + response + TAIL_STEPS


def perform(engine: Engine, call: list[PlayedNote]) -> Performance:
    """Play ``call`` to ``engine`` (fresh, not yet started) and collect its response. The call is held whole: no
    rest inside it ends it (by its length, nor ``phrase_end = "music"``'s bar lines before its last onset)."""
    if not call:
        raise OfflineError("the call holds no notes")
    messages = call_messages(call)
    last, last_onset = messages[-1][0], max(n.start for n in call)
    sent: list[Timed] = []
    events: list[Event] = []
    answered = False
    wanted, rule = engine.settings.phrase_end_steps, engine.settings.phrase_end
    inner = min(_longest_rest(call, engine.step_seconds()) + 1, BY_NAME["phrase_end_steps"].high)
    if inner > wanted:  # a rest inside the call is not its end: the file holds the call whole
        engine.update(phrase_end_steps=inner)
    if rule != "silence" and last_onset > 0:
        engine.update(phrase_end="silence")  # ... nor a bar line before its last note
    for boundary in drive(engine, messages, _step_limit(engine, call)):
        if engine.settings.phrase_end != rule and boundary.time >= last_onset:
            engine.update(phrase_end=rule)  # the last note is fed before the next tick: no rest follows inside
        if engine.settings.phrase_end_steps != wanted and boundary.time > last:
            engine.update(phrase_end_steps=wanted)  # every message fed: the pause after it ends the phrase
        sent += boundary.sent
        events += boundary.events
        answered = answered or any(e.name == "response_end" for e in boundary.events)
        if answered and last < boundary.time and engine.next_due() is None:  # every message fed, all sent
            break
    sent += engine.pop_due(math.inf)
    sent += engine.stop(_last_time(sent, events))
    if not any(e.name == "response_start" for e in events):
        raise OfflineError(
            "the engine did not answer: the call may be shorter than min_call_steps "
            f"({engine.settings.min_call_steps} steps) or never pause for phrase_end_steps"
        )
    return Performance(notes_of(sent), events, sent)


def _longest_rest(call: list[PlayedNote], step_seconds: float) -> int:
    """The longest silence inside ``call``, in whole steps (a note's onset after every earlier note has ended)."""
    notes = sorted(call, key=lambda n: n.start)
    longest, sounding_until = 0, notes[0].end
    for note in notes[1:]:
        longest = max(longest, round((note.start - sounding_until) / step_seconds))
        sounding_until = max(sounding_until, note.end)
    return longest


def _last_time(sent: list[Timed], events: list[Event]) -> float:
    return max([t.time for t in sent] + [e.time for e in events] + [0.0])


def notes_of(messages: list[Timed]) -> list[PlayedNote]:
    """Pair note_on/note_off messages into notes (a note still on at the end is closed at the last time)."""
    notes: list[PlayedNote] = []
    sounding: dict[int, tuple[float, int]] = {}
    for timed in sorted(messages, key=lambda t: t.time):
        message = timed.message
        if message.type not in ("note_on", "note_off"):
            continue
        if message.note in sounding:
            start, velocity = sounding.pop(message.note)
            notes.append(PlayedNote(message.note, start, timed.time, velocity))
        if message.type == "note_on" and message.velocity > 0:
            sounding[message.note] = (timed.time, message.velocity)
    end = max((t.time for t in messages), default=0.0)
    notes += [PlayedNote(pitch, start, end, velocity) for pitch, (start, velocity) in sounding.items()]
    return sorted(notes, key=lambda n: (n.start, n.pitch))
