"""A file's melody as a call: the notes a player would have played, in seconds.

MIDI files are read with mido (their own timing, tempo map included, or beat for beat at ``--bpm``); abc,
kern and MusicXML with music21 through ``improvd.offline.notation``. Either way the call
is the top line: where notes sound together the highest one, and a lower note
that starts under a held higher one is dropped. A piece where every onset is a
chord is not a melody and is refused, as are unreadable files and files
without notes; every error names the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import mido
from music21 import chord, meter, stream, tempo

from improvd.core.notes import PlayedNote
from improvd.core.schema import BY_NAME
from improvd.offline.notation import ScoreError, melody_of, read_score, signature_key

MIDI_SUFFIXES = (".mid", ".midi")
NOTATION_SUFFIXES = (".abc", ".krn", ".musicxml", ".mxl", ".xml")
DEFAULT_BPM = 120.0
DRUM_CHANNEL = 9
CHORD_WINDOW = 0.03  # seconds: MIDI notes starting this close together sound as one chord
MAX_FILE_BYTES = 1 << 20  # a larger input file is refused before it is parsed
MAX_CALL_STEPS = 4096  # 16th steps from the first note's start to the last note's end (256 bars of 4/4)
MAX_NOTES = 4096  # notes in the call
BPM = BY_NAME["bpm"]  # a call's tempo, given or the file's, is one the engine plays at


class CallError(ValueError):
    """A file that gives no usable call; the text names the file and what is wrong."""


@dataclass(frozen=True)
class Call:
    """The melody of a file, ready to be played to the engine."""

    notes: list[PlayedNote]
    bpm: float
    time_signature: tuple[int, int] = (4, 4)
    bar_start_step: int = 0  # the step where bar 1 begins: one bar in when a pickup fills the end of bar 0
    title: str = ""
    key: tuple[str, str] | None = field(default=None, compare=False)  # (tonic, mode) when the file says
    spelling: dict[int, str] = field(default_factory=dict, compare=False)  # pitch class -> its name in the file

    @property
    def steps_per_bar(self) -> int:
        """Sixteenth-note steps in one bar (16 in 4/4, 12 in 3/4 and 6/8)."""
        numerator, denominator = self.time_signature
        return max(1, numerator * 16 // denominator)

    @property
    def step_seconds(self) -> float:
        return 60.0 / self.bpm / 4

    def first_bars(self, bars: int) -> Call:
        """The call cut after ``bars`` bars (a pickup comes on top), notes cut at the bar line."""
        end = (self.bar_start_step + bars * self.steps_per_bar) * self.step_seconds
        kept = [replace(n, end=min(n.end, end)) for n in self.notes if n.start < end - 1e-9]
        return replace(self, notes=kept)


def read_call(path: str | Path, bpm: float | None = None) -> Call:
    """The call of a MIDI or notation file; ``bpm`` overrides the file's tempo (a MIDI file is stretched to it)."""
    path = Path(path)
    if not path.is_file():
        raise CallError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CallError(f"{path}: {size} bytes, over the limit of {MAX_FILE_BYTES} for an input file")
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        call = _midi_call(path, bpm)
    elif suffix in NOTATION_SUFFIXES:
        call = _notation_call(path, bpm)
    else:
        allowed = ", ".join(MIDI_SUFFIXES + NOTATION_SUFFIXES)
        raise CallError(f"{path}: unsupported file type '{path.suffix}' (use one of {allowed})")
    if not call.notes:
        raise CallError(f"{path}: holds no notes")
    _check_size(call, path)
    return call


def _check_size(call: Call, path: Path) -> None:
    """Refuse a call over MAX_NOTES notes or MAX_CALL_STEPS steps: the engine plays every step of it."""
    if len(call.notes) > MAX_NOTES:
        raise CallError(f"{path}: {len(call.notes)} notes, over the limit of {MAX_NOTES}")
    steps = max(n.end for n in call.notes) / call.step_seconds
    if steps > MAX_CALL_STEPS:
        longest = max(call.notes, key=lambda n: n.end - n.start)
        raise CallError(
            f"{path}: the call lasts {steps:.0f} 16th steps (its longest note {longest.end - longest.start:.1f} s), "
            f"over the limit of {MAX_CALL_STEPS}"
        )


def _checked_bpm(bpm: float, where: str, given: bool) -> float:
    """``bpm`` when the engine plays at that tempo; else CallError naming it (``given``: it is ``--bpm``)."""
    if math.isfinite(bpm) and BPM.low <= bpm <= BPM.high:
        return bpm
    if given:
        raise CallError(f"{where}: --bpm {bpm:g}: give a tempo from {BPM.span(' to ')} BPM")
    raise CallError(
        f"{where}: its tempo of {bpm:g} BPM is outside {BPM.span(' to ')}; give --bpm to play it at another"
    )


def _midi_call(path: Path, bpm: float | None) -> Call:
    """The call of a MIDI file: as it plays through its tempo map (at the tempo in force at its first note, which
    each later tempo under its notes must be one the engine plays too), or with ``bpm`` beat for beat at that tempo."""
    if bpm is not None:
        _checked_bpm(bpm, str(path), given=True)
    try:
        midi = mido.MidiFile(path)
        events = list(midi)  # delta times in seconds, through the tempo map
    except EOFError:
        why = "it is empty" if path.stat().st_size == 0 else "it ends in the middle: truncated"
        raise CallError(f"{path}: not a readable MIDI file ({why})") from None
    except Exception as error:  # mido raises OSError, KeyError, ValueError... for bad files
        raise CallError(f"{path}: not a readable MIDI file ({type(error).__name__}: {error})") from None
    if midi.ticks_per_beat <= 0:  # mido reads the header's division signed: SMPTE frames are negative
        raise CallError(f"{path}: SMPTE timing (frames per second) is not supported; save it in ticks per quarter")
    signature, notes, file_key = (4, 4), [], None
    tempi: list[tuple[float, float]] = []  # (beat, BPM) of each tempo in force at a note's start, changes only
    sounding: dict[tuple[int, int], tuple[float, float, int]] = {}  # (channel, pitch) -> (second, beat, velocity)
    now, beat, tempo, meter_seen = 0.0, 0.0, mido.bpm2tempo(DEFAULT_BPM), False
    for message in events:
        now += message.time
        beat += message.time * 1e6 / tempo  # the delta was timed at the tempo in force before this message
        if message.type == "set_tempo":
            tempo = message.tempo
        elif message.type == "time_signature" and not meter_seen:
            signature, meter_seen = (message.numerator, message.denominator), True
        elif message.type == "key_signature" and file_key is None:
            file_key = (message.key.rstrip("m").replace("b", "-"), "minor" if message.key.endswith("m") else "major")
        elif message.type in ("note_on", "note_off") and message.channel != DRUM_CHANNEL:
            key = (message.channel, message.note)
            if key in sounding:
                start, first, velocity = sounding.pop(key)
                notes.append((PlayedNote(message.note, start, now, velocity), first, beat))
            if message.type == "note_on" and message.velocity > 0:
                sounding[key] = (now, beat, message.velocity)
                if not tempi or tempi[-1][1] != mido.tempo2bpm(tempo):
                    tempi.append((beat, mido.tempo2bpm(tempo)))
    notes += [(PlayedNote(pitch, start, now, v), first, beat) for (_, pitch), (start, first, v) in sounding.items()]
    file_bpm = tempi[0][1] if tempi else DEFAULT_BPM
    if bpm is None and notes:
        _checked_bpm(file_bpm, str(path), given=False)
        for at, changed in tempi[1:]:
            if not (math.isfinite(changed) and BPM.low <= changed <= BPM.high):
                raise CallError(
                    f"{path}: its tempo changes to {changed:g} BPM at beat {at:g}, outside {BPM.span(' to ')}; "
                    "give --bpm to play it all at one tempo"
                )
    if bpm is None:
        played = [note for note, _, _ in notes]
    else:  # beat for beat at ``bpm``: the chord window is in seconds as played
        played = [replace(note, start=first * 60 / bpm, end=last * 60 / bpm) for note, first, last in notes]
    played = [n for n in played if n.end > n.start]
    _refuse_chords([n.start for n in played], path, CHORD_WINDOW)
    return Call(top_line(played), bpm or file_bpm, signature, 0, path.stem, file_key)


def top_line(notes: list[PlayedNote]) -> list[PlayedNote]:
    """The skyline: per onset the highest note; a note under a held higher one is dropped; overlaps cut."""
    line: list[PlayedNote] = []
    for note in sorted(notes, key=lambda n: (n.start, -n.pitch)):
        if line and note.start - line[-1].start < CHORD_WINDOW:
            continue  # a lower note of the same chord
        if line and line[-1].end > note.start:
            if line[-1].pitch > note.pitch:
                continue
            line[-1] = replace(line[-1], end=note.start)
        line.append(note)
    return line


def _refuse_chords(onsets: list[float], path: Path, window: float) -> None:
    """Raise if every onset is a chord of two or more notes: such a piece has no melody to continue."""
    sizes: list[int] = []
    group_start = None
    for onset in sorted(onsets):
        if group_start is None or onset - group_start >= window:
            group_start = onset
            sizes.append(0)
        sizes[-1] += 1
    if sizes and min(sizes) >= 2:
        raise CallError(
            f"{path}: not a melody: all {len(sizes)} onsets are chords; give a tune whose top line is a melody"
        )


def _notation_call(path: Path, bpm: float | None) -> Call:
    try:
        parsed = read_score(path)
    except ScoreError as error:
        raise CallError(str(error)) from None
    score = parsed.scores[0] if isinstance(parsed, stream.Opus) and parsed.scores else parsed
    return call_from_score(score, bpm, str(path), Path(path).stem)


def call_from_score(score: stream.Stream, bpm: float | None, where: str, title: str = "") -> Call:
    """The call of a music21 score: its top line at ``bpm`` (else its metronome mark, else 120)."""
    part = score.parts[0] if isinstance(score, stream.Score) and score.parts else score
    elements = [e for e in part.flatten().notes if e.quarterLength > 0]
    chords = sum(1 for e in elements if isinstance(e, chord.Chord) and len(e.pitches) > 1)
    if elements and chords == len(elements):
        raise CallError(
            f"{where}: not a melody: all {chords} onsets are chords; give a tune whose top line is a melody"
        )
    try:
        melody = melody_of(score, where)
    except ScoreError as error:
        raise CallError(str(error)) from None
    bpm = _checked_bpm(bpm, where, given=True) if bpm is not None else _checked_bpm(_score_bpm(score), where, False)
    seconds_per_quarter = 60.0 / bpm
    signature, pickup = _bars(part)
    bar_steps = Call([], bpm, signature).steps_per_bar
    lead = (bar_steps - pickup) / 4 if pickup else 0.0  # a pickup ends where bar 1 begins: on a bar line
    notes, position = [], lead
    for item in melody:
        if item.pitch is not None:
            start, end = position * seconds_per_quarter, (position + item.quarter_length) * seconds_per_quarter
            notes.append(PlayedNote(item.pitch, start, end))
        position += item.quarter_length
    if score.metadata and score.metadata.title:
        title = readable(score.metadata.title)
    spelling: dict[int, str] = {}  # each pitch class of the top line as the file first names it
    for element in elements:
        top = max(element.pitches, key=lambda p: p.midi)
        spelling.setdefault(top.midi % 12, top.name)
    return Call(notes, bpm, signature, bar_steps if pickup else 0, title, signature_key(part), spelling)


def _score_bpm(score: stream.Stream) -> float:
    for mark in score.recurse().getElementsByClass(tempo.MetronomeMark):
        if mark.number:
            return float(mark.getQuarterBPM())
    return DEFAULT_BPM


def _bars(part: stream.Stream) -> tuple[tuple[int, int], int]:
    """(time signature, steps of the pickup) from the first time signature and the first measure."""
    found = next(iter(part.recurse().getElementsByClass(meter.TimeSignature)), None)
    signature = (found.numerator, found.denominator) if found else (4, 4)
    bar = signature[0] * 4 / signature[1]
    measures = part.getElementsByClass(stream.Measure)
    pickup = 0.0
    if measures and measures[0].duration.quarterLength < bar:
        pickup = measures[0].duration.quarterLength
    return signature, round(pickup * 4)


DOS_LETTERS = re.compile(
    "[\x80-\x9f]"
)  # C1 controls: a DOS code page's letters (the Essen files' umlauts) read as Latin-1


def readable(title: str) -> str:
    """A title as it was meant: music21 reads the Essen files as Latin-1, though they hold UTF-8 of a DOS code
    page's letters ("Des Pfalzgrafen T\xc2\x94chterlein" is "Töchterlein"). Other titles are left alone."""
    try:
        text = title.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return title
    if not DOS_LETTERS.search(text):
        return text
    try:
        return text.encode("latin-1").decode("cp437")
    except UnicodeError:
        return title
