"""Session recording: what the player played and what improvd answered, as standard MIDI files.

A ``Session`` collects timestamped channel messages on two tracks, ``player`` and ``improvd`` (clicks
included), and the grids the music was played on (``grid``: the tempo and metre, and where the steps fell),
from the timing thread; adding costs it O(1). A ``Writer`` turns a session into a type-1 MIDI file off the
timing thread: a tempo track (the tempo map and every time-signature change at the step where it happened,
each followed phrase on its own grid, and the key of what the player played), then the two tracks; a note
still on at the end is released there. The writer encodes only what came since its last save (and what a
later grid moved), writes nothing when nothing changed, and each file whole or not at all under a name of
its own. Bar 1 is the session's start: with the internal clock the daemon's grid origin.

A session holds at most ``MAX_MESSAGES`` messages and grids: past that it drops and counts them
(``dropped``), and the daemon starts a new session after ``SESSION_SECONDS`` or on SIGHUP anyway.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import mido
import numpy as np

from improvd.core.grid import parse_meter
from improvd.core.keys import key_of_weights, midi_key_name, simplest
from improvd.daemon.session_layout import TICKS_PER_BEAT, Grid, Layout, layout
from improvd.files import stage

MAX_MESSAGES = 200_000  # about 3 MB of MIDI: hours of playing
SESSION_SECONDS = 3600.0
TRACKS = ("player", "improvd")
NOTE_ON, NOTE_OFF = 0x90, 0x80
BLOCK = 256  # messages encoded between looks at the timing thread's next send (about 0.3 ms of work)
ENDED_SAVES = 2  # saves that find an ended session unchanged before it is done with: the first may come before
# the timing thread's last message to it (it took the new session at its next message)


@dataclass
class Session:
    """The messages of one session, by track, with their times (seconds on the recording clock), and its grids.

    One thread adds (the timing thread); a writer reads from another: every list is only appended to, or
    replaced whole, so a reader's copy is always consistent."""

    start: float
    started_at: datetime = field(default_factory=datetime.now)
    messages: dict[str, list[tuple[float, bytes]]] = field(default_factory=lambda: {t: [] for t in TRACKS})
    grids: list[Grid] = field(default_factory=list)
    dropped: int = 0
    _count: int = 0
    _last_tick: tuple[int, float] | None = None
    _meter: tuple[str, tuple[int, int]] = ("", (4, 4))  # the last meter given, parsed

    def add(self, track: str, message: mido.Message, time: float) -> None:
        """Keep a channel message (notes, controls, bends...); others (clock, SysEx) are not music to keep."""
        if not hasattr(message, "channel"):
            return
        if self._full():
            return
        self.messages[track].append((time, bytes(message.bytes())))

    def grid(self, step: int, step_start: float, step_seconds: float, meter: str) -> None:
        """The grid at a boundary: step ``step`` opened at ``step_start``, steps now last ``step_seconds``. A step
        numbered afresh starts a grid from its step 0 (a followed phrase's first beat, MIDI Start), replacing the
        grids after that; the next step after a pause (MIDI Stop, then Continue) a grid from itself. A new tempo
        or metre goes on from this step."""
        last, self._last_tick = self._last_tick, (step, step_start)
        if meter != self._meter[0]:
            self._meter = (meter, parse_meter(meter))
        signature = self._meter[1]
        current = self.grids[-1] if self.grids else None
        if current is None or last is None or step != last[0] + 1:
            origin = step_start - step * step_seconds
            kept = [g for g in self.grids if g.time < origin]
            self.grids = [*kept, Grid(origin, 0, step_seconds, signature, True)]
        elif not _in_time(step_start - last[1], current.step_seconds, step_seconds):
            self.grids.append(Grid(step_start, step, step_seconds, signature, True))
        elif (current.step_seconds, current.meter) != (step_seconds, signature) and not self._full():
            self.grids.append(Grid(step_start, step, step_seconds, signature, False))

    def _full(self) -> bool:
        if self._count >= MAX_MESSAGES:
            self.dropped += 1
            return True
        self._count += 1
        return False

    def __len__(self) -> int:
        return sum(len(m) for m in self.messages.values())

    def file_stem(self) -> str:
        return f"improvd-{self.started_at:%Y%m%d-%H%M%S}"


def _in_time(gap: float, before: float, now: float) -> bool:
    """A step lasted ``gap``: as steps did (``before``) or do now, not a pause."""
    return abs(gap - before) < before / 2 or abs(gap - now) < now / 2


def _variable(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _meta_bytes(delta: int, message: mido.MetaMessage) -> bytes:
    return _variable(delta) + bytes(message.bytes())


@dataclass
class _Track:
    """One track's encoded events so far, and where to go back to when a grid moves what came after."""

    name: str
    data: bytearray = field(default_factory=bytearray)
    done: int = 0  # messages encoded
    tick: int = 0
    time: float = -math.inf  # of the last message encoded
    sounding: dict[tuple[int, int], float] = field(default_factory=dict)  # (channel, note) -> start time
    weights: np.ndarray = field(default_factory=lambda: np.zeros(12))  # seconds per pitch class (key)
    saved: list[tuple] = field(default_factory=list)  # checkpoints: the state after each save

    def encode(self, messages: list[tuple[float, bytes]], place: Layout) -> None:
        for time, data in messages:
            tick = max(self.tick, place.tick(time))
            self.data += _variable(tick - self.tick) + data
            self.tick, self.time = tick, time
            self._sound(time, data)
        self.done += len(messages)

    def _sound(self, time: float, data: bytes) -> None:
        kind = data[0] & 0xF0
        if kind not in (NOTE_ON, NOTE_OFF):
            return
        key = (data[0] & 0x0F, data[1])
        if kind == NOTE_ON and data[2]:
            self.sounding[key] = time
        elif key in self.sounding:
            self.weights[data[1] % 12] += time - self.sounding.pop(key)

    def checkpoint(self) -> None:
        self.saved.append((self.done, len(self.data), self.tick, self.time, dict(self.sounding), self.weights.copy()))

    def back_to(self, time: float) -> None:
        """Forget what was encoded at ``time`` or after (a grid from there on moved it)."""
        while self.saved and self.saved[-1][3] >= time:
            self.saved.pop()
        done, size, self.tick, self.time, sounding, weights = (
            self.saved[-1] if self.saved else (0, 0, 0, -math.inf, {}, np.zeros(12))
        )
        self.done, self.sounding, self.weights = done, dict(sounding), weights.copy()
        del self.data[size:]

    def chunk(self) -> bytes:
        """The track as written now: its name, the events, a release for every note still on, its end."""
        name = _meta_bytes(0, mido.MetaMessage("track_name", name=self.name))
        closing = b"".join(bytes((0, NOTE_OFF | channel, note, 0)) for channel, note in self.sounding)
        body = name + bytes(self.data) + closing + _meta_bytes(0, mido.MetaMessage("end_of_track"))
        return b"MTrk" + len(body).to_bytes(4, "big") + body


class Writer:
    """Writes one session to its own file, again whenever it changed: only new messages are encoded."""

    def __init__(self, session: Session, folder: Path, keep_off: Callable[[], None] = lambda: None) -> None:
        self.session = session
        self.folder = folder
        self.keep_off = keep_off  # sleeps through the window around the timing thread's next send
        self.path: Path | None = None
        self._tracks = {name: _Track(name) for name in TRACKS}
        self._grids: list[Grid] = []
        self._start: float | None = None
        self._written: tuple | None = None  # what the file on disk holds: message counts and grids
        self.idle = 0  # saves since the session ended that found nothing new (improvd.daemon.recorder.Recorder)
        self._lock = threading.Lock()

    def _version(self, grids: list[Grid], start: float) -> tuple:
        return (*(len(self.session.messages[name]) for name in TRACKS), len(grids), grids[-1:], start)

    def save(self, bpm: float = 120.0, meter: tuple[int, int] = (4, 4)) -> Path | None:
        """Write the session's file if it changed since the last save (None if not, or if it holds nothing);
        ``bpm`` and ``meter`` lay it out while the timing thread has given it no grid."""
        with self._lock:
            session = self.session
            grids, start = list(session.grids), session.start
            counts = {name: len(session.messages[name]) for name in TRACKS}
            version = self._version(grids, start)
            if version == self._written or not any(counts.values()):
                return None
            place = layout(grids, start, bpm, meter)
            self._settle(grids, start)
            for name, track in self._tracks.items():
                new = session.messages[name][track.done : counts[name]]
                for block in range(0, len(new), BLOCK):
                    self.keep_off()  # never while the timing thread sends
                    track.encode(new[block : block + BLOCK], place)
                track.checkpoint()
            self._write(place)
            self._written = version
            return self.path

    def _settle(self, grids: list[Grid], start: float) -> None:
        """Go back to before the first grid that is not as it was when the tracks were encoded."""
        if grids == self._grids and start == self._start:
            moved = math.inf
        elif start != self._start or not grids or not self._grids or grids[0] != self._grids[0]:
            moved = -math.inf
        else:
            same = next((k for k, (a, b) in enumerate(zip(grids, self._grids, strict=False)) if a != b), None)
            if same is None:
                same = min(len(grids), len(self._grids))
            moved = min([g.time for g in grids[same : same + 1] + self._grids[same : same + 1]], default=math.inf)
        if moved < math.inf:
            for track in self._tracks.values():
                track.back_to(moved)
        self._grids, self._start = grids, start

    def _tempo_track(self, place: Layout) -> bytes:
        player = self._tracks["player"]
        key = simplest(*key_of_weights(player.weights))
        events = [
            (0, mido.MetaMessage("track_name", name="improvd session")),
            (0, mido.MetaMessage("key_signature", key=midi_key_name(*key))),
        ]
        body, now = bytearray(), 0
        for tick, message in events + place.meta:
            body += _meta_bytes(tick - now, message)
            now = tick
        body += _meta_bytes(0, mido.MetaMessage("end_of_track"))
        return b"MTrk" + len(body).to_bytes(4, "big") + bytes(body)

    def _write(self, place: Layout) -> None:
        chunks = [self._tempo_track(place)] + [track.chunk() for track in self._tracks.values()]
        header = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + len(chunks).to_bytes(2, "big")
        header += TICKS_PER_BEAT.to_bytes(2, "big")

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as out:
                out.write(header)
                for chunk in chunks:
                    out.write(chunk)

        reserved = self.path is None
        if reserved:
            self.path = _reserve(self.folder, self.session.file_stem())
        try:
            stage(self.path, write).replace(self.path)
        except BaseException:
            if reserved:  # the empty file that held the name goes too: nothing half-written is left
                self.path.unlink(missing_ok=True)
                self.path = None
            raise


def _reserve(folder: Path, stem: str) -> Path:
    """A new file's name: ``stem.mid``, else ``stem-2.mid``, ``stem-3.mid``...; created (empty) so that no other
    recording can take it before the first write renames the whole file over it."""
    for number in range(1, 10_000):
        path = folder / (f"{stem}.mid" if number == 1 else f"{stem}-{number}.mid")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{folder}: no free name for {stem}.mid")


class Recorder:
    """The daemon's recordings in ``folder``: one Session at a time, a new one every SESSION_SECONDS or on demand.

    ``save`` writes every session that changed, the ended ones too, until a save finds an ended one unchanged:
    what the timing thread added to a session just as it ended is written with it, never lost."""

    def __init__(self, folder: Path, now: float, keep_off: Callable[[], None] = lambda: None) -> None:
        self.folder = folder
        self.keep_off = keep_off  # improvd.daemon.quiet.QuietWindow.keep_off: encoding keeps off the sends
        self.session = Session(start=now)
        self._writers = [Writer(self.session, folder, keep_off)]
        self._lock = threading.Lock()

    @property
    def path(self) -> Path | None:
        """The file of the session being recorded, once written."""
        return self._writers[-1].path

    def due(self, now: float) -> bool:
        """The session is an hour old: time for a new one."""
        return now - self.session.start >= SESSION_SECONDS

    def rotate(self, start: float) -> Session:
        """Start a new session whose bar 1 begins at ``start``; returns the one that ends."""
        ended, self.session = self.session, Session(start=start)
        self._writers.append(Writer(self.session, self.folder, self.keep_off))
        return ended

    def save(self, bpm: float, meter: tuple[int, int]) -> list[Path]:
        """Write every session that changed (off the timing thread); the files written. An ended session found
        unchanged is done with."""
        written = []
        with self._lock:
            for writer in list(self._writers):
                path = writer.save(bpm, meter)
                if path is not None:
                    written.append(path)
                elif writer.session is not self.session:
                    writer.idle += 1
                    if writer.idle >= ENDED_SAVES:
                        self._writers.remove(writer)
        return written
