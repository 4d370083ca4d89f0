"""The one place that knows how a melody becomes symbols and back.

A melody is a time series of 16th-note steps (0.25 quarter length each).  A step
holds one symbol:

* a MIDI pitch number as text (``"60"``): a note starts;
* ``r``: a rest starts;
* ``_``: the note or rest of the previous step goes on;
* ``/``: separates songs (training puts the model's ``song_gap`` of them between songs).

Training imports this module; nothing here imports training or tensorflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

STEP_QUARTER_LENGTH = 0.25
HOLD = "_"
REST = "r"
SONG_END = "/"
SPECIAL_SYMBOLS = (HOLD, REST, SONG_END)
ACCEPTABLE_DURATIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
MIDI_RANGE = range(0, 128)

# Semitones from C for each tonic name music21 might give, sharps and flats alike.
_PITCH_CLASSES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


class EncodingError(ValueError):
    """A melody or symbol sequence that cannot be encoded or decoded."""


@dataclass(frozen=True)
class Note:
    """One note (``pitch`` a MIDI number) or rest (``pitch`` None) of a melody."""

    pitch: int | None
    quarter_length: float

    @property
    def is_rest(self) -> bool:
        return self.pitch is None


def unacceptable_durations(melody: Iterable[Note]) -> list[float]:
    """Durations in ``melody`` outside ``ACCEPTABLE_DURATIONS``, in order, each once.

    The training pipeline drops songs that have any; the runtime never needs this
    because it quantises live input instead.
    """
    found: list[float] = []
    for note in melody:
        if note.quarter_length not in ACCEPTABLE_DURATIONS and note.quarter_length not in found:
            found.append(note.quarter_length)
    return found


def encode(melody: Iterable[Note]) -> list[str]:
    """Symbols for ``melody``, one per 16th-note step.

    Raises EncodingError naming the note whose duration is not a whole number of
    steps or whose pitch is outside MIDI range: nothing is silently rounded.
    """
    symbols: list[str] = []
    for index, note in enumerate(melody):
        steps = Fraction(note.quarter_length).limit_denominator(64) / Fraction(STEP_QUARTER_LENGTH)
        if steps.denominator != 1 or steps < 1:
            raise EncodingError(
                f"note {index} lasts {note.quarter_length} quarter lengths, "
                f"not a whole number of {STEP_QUARTER_LENGTH}-quarter steps"
            )
        if note.pitch is not None and note.pitch not in MIDI_RANGE:
            raise EncodingError(f"note {index} has pitch {note.pitch}, outside MIDI 0..127")
        symbols.append(REST if note.pitch is None else str(note.pitch))
        symbols.extend(HOLD * (int(steps) - 1))
    return symbols


def decode(symbols: Iterable[str]) -> list[Note]:
    """Notes and rests for ``symbols``; stops at the first ``/``.

    A leading ``_`` has nothing to continue and is an error.
    """
    notes: list[Note] = []
    pitch: int | None = None
    steps = 0
    for index, symbol in enumerate(symbols):
        if symbol == SONG_END:
            break
        if symbol == HOLD:
            if steps == 0:
                raise EncodingError(f"step {index}: '{HOLD}' with no note or rest before it")
            steps += 1
            continue
        if steps:
            notes.append(Note(pitch, steps * STEP_QUARTER_LENGTH))
        pitch = parse_symbol(symbol, index)
        steps = 1
    if steps:
        notes.append(Note(pitch, steps * STEP_QUARTER_LENGTH))
    return notes


def parse_symbol(symbol: str, index: int = 0) -> int | None:
    """The pitch a note or rest symbol starts (None for a rest); a pitch is written as ``str`` writes it (ASCII
    digits, no leading zero: ``"060"`` is refused, since it would be a second name of ``"60"``)."""
    if symbol == REST:
        return None
    if symbol.isascii() and symbol.isdigit() and str(int(symbol)) == symbol and int(symbol) in MIDI_RANGE:
        return int(symbol)
    raise EncodingError(f"step {index}: '{symbol}' is not a pitch, '{REST}', '{HOLD}' or '{SONG_END}'")


def is_pitch(symbol: str) -> bool:
    return symbol.isdigit()


# --- keys and transposition -------------------------------------------------


def tonic_pitch_class(tonic: str) -> int:
    """Pitch class of a tonic name such as ``C``, ``F#``, ``Bb`` or ``e-`` (music21's flat)."""
    name = tonic.strip()
    if not name or name[0].upper() not in _PITCH_CLASSES:
        raise EncodingError(f"'{tonic}' is not a tonic name")
    pitch_class = _PITCH_CLASSES[name[0].upper()]
    for accidental in name[1:]:
        if accidental == "#":
            pitch_class += 1
        elif accidental in "b-":
            pitch_class -= 1
        else:
            raise EncodingError(f"'{tonic}' is not a tonic name")
    return pitch_class % 12


def transposition_to_c(tonic: str, mode: str) -> int:
    """Semitones that take a melody in ``tonic`` ``mode`` to C major or A minor.

    The interval is the smallest one (-6..+5), so melodies move as little as
    possible. Modes other than major and minor are treated by their tonic's
    relative: ``minor`` goes to A, anything else to C.
    """
    target = 9 if mode.lower() == "minor" else 0
    return (target - tonic_pitch_class(tonic) + 6) % 12 - 6


def transpose(melody: Iterable[Note], semitones: int) -> list[Note]:
    """``melody`` moved by ``semitones``; transposing back is ``transpose(m, -semitones)``."""
    return [note if note.pitch is None else Note(note.pitch + semitones, note.quarter_length) for note in melody]


def fold_pitch(pitch: int, lowest: int, highest: int) -> int:
    """``pitch`` moved by octaves into ``lowest..highest``.

    The range must span at least an octave so that every pitch class has a place;
    a range narrower than that raises EncodingError.
    """
    if highest - lowest < 11:
        raise EncodingError(f"pitch range {lowest}..{highest} is narrower than an octave")
    while pitch < lowest:
        pitch += 12
    while pitch > highest:
        pitch -= 12
    return pitch


# --- vocabulary ---------------------------------------------------------------


class Vocabulary:
    """An ordered list of symbols with an index for each; saved with every model."""

    def __init__(self, symbols: Sequence[str]) -> None:
        if len(set(symbols)) != len(symbols):
            raise EncodingError("vocabulary has a symbol more than once")
        for index, symbol in enumerate(symbols):
            if symbol not in SPECIAL_SYMBOLS:
                parse_symbol(symbol, index)
        self.symbols = list(symbols)
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}
        pitches = sorted(int(s) for s in self.symbols if is_pitch(s))
        self.pitches = pitches
        self.pitch_indices = [self.index[str(p)] for p in pitches]
        self._played: dict[tuple[str, int], int] = {}  # played_index, remembered: 128 pitches a shift at most

    @classmethod
    def from_symbols(cls, symbols: Iterable[str]) -> Vocabulary:
        """A vocabulary of the special symbols followed by every pitch seen, low to high."""
        seen = {s for s in symbols if is_pitch(s)}
        return cls([*SPECIAL_SYMBOLS, *sorted(seen, key=int)])

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.symbols == other.symbols

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} symbols, pitches {self.pitches[:1]}..{self.pitches[-1:]})"

    def indices(self, symbols: Iterable[str]) -> list[int]:
        """Index of each symbol; a symbol the vocabulary lacks raises EncodingError."""
        try:
            return [self.index[s] for s in symbols]
        except KeyError as missing:
            raise EncodingError(f"symbol {missing} is not in the vocabulary") from None

    def played_index(self, symbol: str, shift: int) -> int:
        """The index of a player's ``symbol``: a pitch moved by ``shift`` semitones (into MIDI range by octaves) and
        folded into the vocabulary's range (``fold``); a symbol that is neither a pitch nor in the vocabulary raises
        KeyError."""
        key = (symbol, shift)
        if (index := self._played.get(key)) is None:
            moved = self.fold(str(fold_pitch(int(symbol) + shift, 0, 127))) if is_pitch(symbol) else symbol
            index = self._played[key] = self.index[moved]
        return index

    def fold(self, symbol: str) -> str:
        """``symbol`` with its pitch folded by octaves into the vocabulary's pitch range; in a gap of the range, or
        a range narrower than an octave, the nearest pitch of its class, else the nearest pitch."""
        if not is_pitch(symbol) or symbol in self.index:
            return symbol
        pitch, lowest, highest = int(symbol), self.pitches[0], self.pitches[-1]
        if highest - lowest >= 11:
            pitch = fold_pitch(pitch, lowest, highest)
            if str(pitch) in self.index:
                return str(pitch)
        return str(min(self.pitches, key=lambda p: (abs(p - pitch) % 12 != 0, abs(p - pitch))))
