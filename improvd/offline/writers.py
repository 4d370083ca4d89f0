"""Call and response to files: a MIDI file (one named track each; tempo, metre and key meta messages) and a
MusicXML score (one staff, the answer following the call: improvd.offline.engraving).

Every file is written to a temporary name beside the target and renamed into
place, so a failure never leaves a half-written file. The MIDI bytes depend only
on the notes and the tempo, so the same call and seed give the same file.
"""

from __future__ import annotations

from pathlib import Path

import mido

from improvd.core.encoding import Note
from improvd.core.keys import midi_key_name
from improvd.core.notes import PlayedNote
from improvd.files import atomic_write
from improvd.offline.engraving import Heading, score

TICKS_PER_BEAT = 480
CALL_TRACK, RESPONSE_TRACK = "Call", "Response (improvd)"
CALL_CHANNEL, RESPONSE_CHANNEL = 0, 1
CALL_PROGRAM, RESPONSE_PROGRAM = 0, 11  # General MIDI: acoustic grand piano, vibraphone


def _track(name: str, notes: list[PlayedNote], channel: int, program: int, bpm: float) -> mido.MidiTrack:
    ticks_per_second = bpm / 60 * TICKS_PER_BEAT
    events = []
    for n in notes:
        events.append(
            (
                round(n.start * ticks_per_second),
                1,
                mido.Message("note_on", channel=channel, note=n.pitch, velocity=n.velocity),
            )
        )
        events.append(
            (round(n.end * ticks_per_second), 0, mido.Message("note_off", channel=channel, note=n.pitch, velocity=0))
        )
    events.sort(key=lambda e: (e[0], e[1], e[2].note))  # at the same tick: note_off before note_on
    track = mido.MidiTrack(
        [mido.MetaMessage("track_name", name=name), mido.Message("program_change", channel=channel, program=program)]
    )
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    return track


def write_midi(
    path: str | Path,
    call: list[PlayedNote],
    response: list[PlayedNote],
    bpm: float,
    time_signature: tuple[int, int] = (4, 4),
    title: str = "",
    key: tuple[str, str] = ("C", "major"),
) -> Path:
    """A type 1 MIDI file: a tempo track (title, tempo, time and key signature), then the call and the response on
    tracks of their own."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    numerator, denominator = time_signature
    midi.tracks.append(
        mido.MidiTrack(
            [
                mido.MetaMessage("track_name", name=title or "improvd"),
                mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)),
                mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator),
                mido.MetaMessage("key_signature", key=midi_key_name(*key)),
            ]
        )
    )
    midi.tracks.append(_track(CALL_TRACK, call, CALL_CHANNEL, CALL_PROGRAM, bpm))
    midi.tracks.append(_track(RESPONSE_TRACK, response, RESPONSE_CHANNEL, RESPONSE_PROGRAM, bpm))
    return atomic_write(path, lambda temporary: midi.save(temporary))


def grid_melody(notes: list[PlayedNote], step_seconds: float, gate: float = 1.0) -> list[Note]:
    """Notes on the sixteenth grid from step 0: rests fill gaps; a note lasts until the next onset at most.

    ``gate`` undoes the shortening of the engine's note_off (a note of L steps sounds ``gate * L`` steps).
    """
    melody: list[Note] = []
    position = 0
    onsets = [round(n.start / step_seconds) for n in notes]
    for i, (n, onset) in enumerate(zip(notes, onsets, strict=True)):
        if onset < position:
            continue  # two notes quantised onto one step: the first wins
        length = max(1, round((n.end - n.start) / step_seconds / gate))
        if i + 1 < len(notes):
            length = min(length, max(1, onsets[i + 1] - onset))
        if onset > position:
            melody.append(Note(None, (onset - position) / 4))
        melody.append(Note(n.pitch, length / 4))
        position = onset + length
    return melody


def write_musicxml(path: str | Path, call: list[Note], response: list[Note], heading: Heading) -> Path:
    """A score of one staff: the call, then the response (both melodies count from step 0), as ``heading`` says."""
    made = score(call, response, heading)
    return atomic_write(path, lambda temporary: made.write("musicxml", fp=temporary))
