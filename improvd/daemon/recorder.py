"""Session recording: what the player played and what improvd answered, as standard MIDI files.

A ``Session`` collects timestamped channel messages on two tracks, ``player`` and ``improvd`` (clicks
included), from its start; ``write`` turns them into a type-1 MIDI file (a tempo track with the playing tempo
and time signature, then the two tracks; a note still on at the end is released there), written beside its
target and renamed over it, so a file on disk is always whole. Bar 1 is the session's start: with the
internal clock the daemon's grid origin, so a DAW's bars fall on improvd's at a steady tempo. A session
holds at most ``MAX_MESSAGES`` messages: past that it drops and counts them (``dropped``), and the daemon
starts a new session after ``SESSION_SECONDS`` or on SIGHUP anyway.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import mido

TICKS_PER_BEAT = 480
MAX_MESSAGES = 200_000  # about 3 MB of MIDI: hours of playing
SESSION_SECONDS = 3600.0
TRACKS = ("player", "improvd")


@dataclass
class Session:
    """The messages of one session, by track, with their times (seconds on the recording clock)."""

    start: float
    started_at: datetime = field(default_factory=datetime.now)
    messages: dict[str, list[tuple[float, mido.Message]]] = field(default_factory=lambda: {t: [] for t in TRACKS})
    dropped: int = 0

    def add(self, track: str, message: mido.Message, time: float) -> None:
        """Keep a channel message (notes, controls, bends...); others (clock, SysEx) are not music to keep."""
        if not hasattr(message, "channel"):
            return
        if sum(len(m) for m in self.messages.values()) >= MAX_MESSAGES:
            self.dropped += 1
            return
        self.messages[track].append((max(time, self.start), message))

    def __len__(self) -> int:
        return sum(len(m) for m in self.messages.values())

    def file_name(self) -> str:
        return f"improvd-{self.started_at:%Y%m%d-%H%M%S}.mid"

    def midi(self, bpm: float = 120.0, meter: tuple[int, int] = (4, 4)) -> mido.MidiFile:
        """The session as a type-1 MIDI file at ``bpm`` in ``meter``: a tempo track, then one track per source."""
        midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
        numerator, denominator = meter
        midi.tracks.append(
            mido.MidiTrack(
                [
                    mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)),
                    mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator),
                ]
            )
        )
        seconds_per_tick = 60.0 / bpm / TICKS_PER_BEAT
        for name in TRACKS:
            track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
            now = 0
            for time, message in _closed(sorted(self.messages[name], key=lambda item: item[0])):
                tick = max(now, round((time - self.start) / seconds_per_tick))  # before bar 1: at its start
                track.append(message.copy(time=tick - now))
                now = tick
            midi.tracks.append(track)
        return midi

    def write(self, folder: Path, bpm: float = 120.0, meter: tuple[int, int] = (4, 4)) -> Path:
        """Write (or rewrite) the session's file in ``folder``, whole or not at all; returns its path."""
        path = folder / self.file_name()
        handle, staged = tempfile.mkstemp(prefix=".improvd-", suffix=".mid", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                self.midi(bpm, meter).save(file=out)
            os.replace(staged, path)
        except BaseException:
            Path(staged).unlink(missing_ok=True)
            raise
        return path


def _closed(messages: list[tuple[float, mido.Message]]) -> list[tuple[float, mido.Message]]:
    """``messages`` with a note_off at the last time for every note still on there."""
    on: dict[tuple[int, int], bool] = {}
    for _, message in messages:
        if message.type == "note_on" and message.velocity > 0:
            on[(message.channel, message.note)] = True
        elif message.type in ("note_on", "note_off"):
            on.pop((message.channel, message.note), None)
    end = messages[-1][0] if messages else 0.0
    return messages + [(end, mido.Message("note_off", channel=c, note=n)) for c, n in on]


class Recorder:
    """The daemon's recordings in ``folder``: one Session at a time, a new one every SESSION_SECONDS or on demand."""

    def __init__(self, folder: Path, now: float) -> None:
        self.folder = folder
        self.session = Session(start=now)

    def due(self, now: float) -> bool:
        """The session is an hour old: time for a new one."""
        return now - self.session.start >= SESSION_SECONDS

    def rotate(self, start: float) -> Session:
        """Start a new session whose bar 1 begins at ``start``; returns the one that ends (to write once more)."""
        ended, self.session = self.session, Session(start=start)
        return ended
