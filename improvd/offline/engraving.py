"""Call and answer as one staff a musician reads: the call's key signature and metre, its pickup as a short first
bar, pitches spelled in the key, accidentals only where the key signature does not give the note, beams and ties by
the metre, the tempo, the title, and the two voices of the conversation labelled where each begins.

One staff, the answer following the call: improvd answers after the call, never under it, so a second staff
would hold only rests while the other plays; on one staff the conversation reads as the tune it continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from music21 import expressions, instrument, key, metadata, meter, note, pitch, stream, tempo, tie

from improvd.core.encoding import Note
from improvd.core.keys import key_of_weights, signature_sharps, simplest
from improvd.offline.metre import Metre, pieces

CALL_LABEL, ANSWER_LABEL = "call", "answer (improvd)"


@dataclass(frozen=True)
class Heading:
    """What a score says besides its notes."""

    title: str
    meter: tuple[int, int]
    key: tuple[str, str]  # (tonic, mode): "B-", "major"
    bpm: float
    names: dict[int, str] = field(default_factory=dict)  # pitch class -> its name in the source, where it has one


MISFIT = 0.1  # a stated key whose signature leaves this much more of the notes' time out than the estimate's


def melody_key(
    melody: list[Note], stated: tuple[str, str] | None = None, heard: tuple[str, str] | None = None
) -> tuple[str, str]:
    """The key a score of ``melody`` is written in: ``stated`` (the file's own), else the major or minor key
    improvd estimates (``heard``, else improvd.core.keys by time per pitch class). A stated key whose signature leaves MISFIT
    more of the notes' time outside it than the estimate's is not the music's: the Essen files state a tonic
    (``K: G``) and write every flat of a G minor tune as an accidental."""
    weights = np.zeros(12)
    for item in melody:
        if item.pitch is not None:
            weights[item.pitch % 12] += item.quarter_length
    estimate = simplest(*(heard or key_of_weights(weights)))
    if stated is None or not weights.any():
        return stated or estimate

    def inside(found: tuple[str, str]) -> float:
        scale = {p.pitchClass for p in music21_key(*found).getScale().getPitches()}  # its signature's notes
        return sum(weights[pc] for pc in scale) / weights.sum()

    return estimate if inside(stated) < inside(estimate) - MISFIT else stated


def music21_key(tonic: str, mode: str) -> key.Key:
    """The key as music21 writes it: of the signature ``signature_sharps`` gives (as the tonic is spelled)."""
    return key.KeySignature(signature_sharps(tonic, mode)).asKey("minor" if mode == "minor" else "major")


CHROMATIC = {  # semitones above the tonic -> (scale degree, alteration): the usual spelling of a note off the scale
    "major": {1: (1, 1), 3: (3, -1), 6: (4, 1), 8: (5, 1), 10: (7, -1)},  # C: C#, Eb, F#, G#, Bb
    "minor": {1: (2, -1), 4: (3, 1), 6: (4, 1), 9: (6, 1), 11: (7, 1)},  # A: Bb, C#, D#, F#, G#
}


def spelling(found: key.Key, source: dict[int, str] | None = None) -> dict[int, str]:
    """Pitch class -> its name in ``found``: the scale's own names, the rest as the ``source`` names them (an abc
    ``=f`` in E major is an F natural, not an E-sharp), else as CHROMATIC spells them."""
    names = {p.pitchClass: p.name for p in found.getPitches()}
    for semitones, (degree, alteration) in CHROMATIC[found.mode].items():
        pitch_class = (found.tonic.pitchClass + semitones) % 12
        named = found.pitchFromDegree(degree)
        named.accidental = pitch.Accidental(named.alter + alteration)
        names[pitch_class] = (source or {}).get(pitch_class, named.name)
    return names


def spelled(midi: int, names: dict[int, str]) -> pitch.Pitch:
    """``midi`` as a pitch of the name ``names`` gives its class (B-sharp and C-flat keep their sounding octave)."""
    found = pitch.Pitch(names[midi % 12])
    found.octave = midi // 12 - 1
    found.octave += (midi - found.midi) // 12
    return found


def conversation(call: list[Note], answer: list[Note]) -> tuple[list[tuple[Fraction, Note]], Fraction]:
    """The notes of call and answer on one timeline (both melodies count from step 0): (onset, note) pairs, a
    call note cut where the answer begins, and the answer's first onset."""

    def onsets(melody: list[Note]) -> list[tuple[Fraction, Note]]:
        found, position = [], Fraction(0)
        for item in melody:
            length = Fraction(item.quarter_length).limit_denominator(64)
            if item.pitch is not None:
                found.append((position, Note(item.pitch, length)))
            position += length
        return found

    answered = onsets(answer)
    begins = answered[0][0] if answered else None
    notes = []
    for onset, item in onsets(call):
        if begins is not None and onset >= begins:
            break
        end = onset + item.quarter_length if begins is None else min(onset + item.quarter_length, begins)
        notes.append((onset, Note(item.pitch, end - onset)))
    return notes + answered, begins if begins is not None else Fraction(-1)


def score(call: list[Note], answer: list[Note], heading: Heading) -> stream.Score:
    """One staff: the call (labelled), then the answer (labelled), in the call's key and metre, the first bar
    short when the music starts after a bar line (a pickup: bar lines fall every bar from step 0)."""
    notes, begins = conversation(call, answer)
    numerator, denominator = heading.meter
    metre = Metre.of(numerator, denominator)
    first = notes[0][0] if notes else Fraction(0)
    opening = first - first % metre.bar  # the bar line at or before the first note: the score starts there
    found = music21_key(*heading.key)
    part = _staff(heading, found, metre)
    names, position = spelling(found, heading.names), opening
    for onset, item in notes:
        if onset > position:
            _write(part, None, position - opening, onset - position, metre)
        if onset in (first, begins):
            words = expressions.TextExpression(ANSWER_LABEL if onset == begins else CALL_LABEL)
            words.placement = "above"
            part.insert(onset - opening, words)
        _write(part, spelled(item.pitch, names), onset - opening, item.quarter_length, metre)
        position = onset + item.quarter_length
    if (position - opening) % metre.bar:  # the last bar filled to its bar line
        _write(part, None, position - opening, metre.bar - (position - opening) % metre.bar, metre)
    made = part.makeNotation()
    _accidentals(made, found)
    _pickup(made, first - opening)
    whole = stream.Score()
    whole.insert(0, metadata.Metadata(title=heading.title or "improvd", composer="improvd"))
    whole.insert(0, made)
    return whole


def _staff(heading: Heading, found: key.Key, metre: Metre) -> stream.Part:
    """An empty staff with its name, time and key signature, instrument and tempo (by the beat: a dotted
    quarter in 6/8)."""
    part = stream.Part()
    part.partName = heading.title or "improvd"
    part.insert(0, meter.TimeSignature("{}/{}".format(*heading.meter)))
    part.insert(0, key.KeySignature(found.sharps))
    part.insert(0, instrument.Piano())
    beat = note.Note(quarterLength=metre.beat)
    mark = tempo.MetronomeMark(number=round(heading.bpm / metre.beat, 1), referent=beat.duration)
    mark.placement = "above"
    part.insert(0, mark)
    return part


def _write(part: stream.Part, sounding: pitch.Pitch | None, start: Fraction, length: Fraction, metre: Metre) -> None:
    """A note (``sounding``) or rest at ``start`` in tied pieces by the metre (improvd.offline.metre)."""
    lengths = pieces(start, length, metre, rest=sounding is None)
    for index, piece in enumerate(lengths):
        if sounding is None:
            part.append(note.Rest(quarterLength=piece))
            continue
        element = note.Note(pitch.Pitch(sounding.nameWithOctave), quarterLength=piece)  # a pitch of its own each
        if len(lengths) > 1:
            element.tie = tie.Tie("start" if index == 0 else "stop" if index == len(lengths) - 1 else "continue")
        part.append(element)


def _accidentals(part: stream.Part, signature: key.KeySignature) -> None:
    """Accidentals where a note leaves the key signature, or restores it after an accidental earlier in the bar at
    that pitch and octave; none on a note tied from the one before, no courtesy ones."""
    given = {p.step: p.alter for p in signature.alteredPitches}
    for measure in part.getElementsByClass(stream.Measure):
        held: dict[tuple[str, int], float] = {}
        for element in measure.notes:
            sounding = element.pitch
            alter = sounding.alter
            if element.tie is not None and element.tie.type in ("stop", "continue"):
                needed = False  # its accidental is the first piece's; it does not hold for the notes after it
            else:
                needed = alter != held.get((sounding.step, sounding.octave), given.get(sounding.step, 0.0))
                held[(sounding.step, sounding.octave)] = alter
            if needed and sounding.accidental is None:
                sounding.accidental = pitch.Accidental("natural")
            if sounding.accidental is not None:
                sounding.accidental.displayStatus = needed
                sounding.accidental.displayType = "normal" if needed else "never"


def _pickup(part: stream.Part, rests: Fraction) -> None:
    """Make the first bar a pickup: its leading ``rests`` quarters dropped, the bar numbered 0 and left unnumbered."""
    measures = list(part.getElementsByClass(stream.Measure))
    if not measures or rests <= 0:
        return
    first = measures[0]
    for element in list(first.notesAndRests):
        if element.offset < rests:
            first.remove(element)
    for element in first.elements:
        if element.offset >= rests and not isinstance(element, meter.TimeSignature | key.KeySignature):
            first.setElementOffset(element, element.offset - rests)
    first.paddingLeft = float(rests)
    first.number = 0
    first.showNumber = stream.enums.ShowNumber.NEVER
    for number, measure in enumerate(measures[1:], start=1):
        measure.number = number
