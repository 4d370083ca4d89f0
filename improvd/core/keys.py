"""Key of a melody from its pitch classes weighted by duration (the Aarden-Essen profiles), and its key
signature (the diatonic collection it is written in).

``estimate_key`` is the estimate music21's ``analyze('key')`` makes, in numpy, so it can run at a phrase
end in well under a millisecond; tests/test_keys.py checks the two agree on real Essen tunes.
``diatonic_shift`` is what the engine transposes a call by: training moved every tune by its written key
signature, so the model knows each diatonic collection on the white keys, modes (Dorian, Mixolydian)
included; a major/minor estimate would move a D Dorian call (no sharps) to A with an F sharp.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from operator import itemgetter

import numpy as np

from improvd.core.encoding import HOLD, SONG_END, EncodingError, parse_symbol, tonic_pitch_class

# Aarden-Essen key profiles (as in music21.analysis.discrete.AardenEssen), index 0 = tonic.
MAJOR_PROFILE = np.array(
    [17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624, 8.15494, 0.232998, 4.95122]
)
MINOR_PROFILE = np.array(
    [18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621, 1.93186, 7.37619, 1.75623]
)
TONIC_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")


def _rotations(profile: np.ndarray) -> np.ndarray:
    """12 x 12: row t is the profile for tonic t, centred for a correlation."""
    rows = np.stack([np.roll(profile, tonic) for tonic in range(12)])
    return rows - rows.mean(axis=1, keepdims=True)


_KEYS = np.concatenate([_rotations(MAJOR_PROFILE), _rotations(MINOR_PROFILE)])  # 24 x 12: majors then minors
_KEY_NORMS = np.linalg.norm(_KEYS, axis=1)
_UNIT_KEYS = [[float(x) for x in row / norm] for row, norm in zip(_KEYS, _KEY_NORMS, strict=True)]  # for _best_fitting


_CLASSES: dict[str, int | None] = {HOLD: -1, SONG_END: None}  # symbol -> pitch class (a rest: None), once parsed


def pitch_class_weights(symbols: Sequence[str]) -> np.ndarray:
    """Steps each pitch class sounds for in ``symbols`` (holds count for the note they continue)."""
    counts = [0] * 12
    _count(symbols, counts, None)
    return np.array(counts, float)


def _count(symbols: Sequence[str], counts: list[int], current: int | None, first: int = 0) -> int | None:
    """Add the steps of ``symbols`` (the first at index ``first`` of its melody) to ``counts``, holds before the
    first note or rest to ``current`` (the pitch class sounding before them, None for none); returns the one
    sounding at their end."""
    classes = _CLASSES  # the engine asks at every step of a call: each symbol is parsed once (a few dozen in all)
    for index, symbol in enumerate(symbols, first):
        found = classes.get(symbol, -2)
        if found == -2:  # never seen: parsed (an EncodingError naming it if it is none)
            pitch = parse_symbol(symbol, index)
            found = classes[symbol] = None if pitch is None else pitch % 12
        if found != -1:  # not a hold: the note (or rest, or song end) it continues
            current = found
        if current is not None:
            counts[current] += 1
    return current


def _key_scores(weights: np.ndarray) -> np.ndarray:
    """Correlation of ``weights`` with each of the 24 key profiles (12 majors, then 12 minors)."""
    centred = weights - weights.mean()
    return _KEYS @ centred / (_KEY_NORMS * (math.sqrt(centred @ centred) or 1.0))  # np.linalg.norm's own sum


def estimate_key(symbols: Sequence[str]) -> tuple[str, str]:
    """(tonic, mode) of the melody in ``symbols``; C major when there are no notes."""
    return key_of_weights(pitch_class_weights(symbols))


TONIC_HINT = 0.1  # added to the score of the keys on the call's first downbeat note (see call_key)
LEADING_HINT = 0.1  # added to the minor key of a downbeat note reached by a semitone up from the note before


def call_key(symbols: Sequence[str], bar_line: int, bar_steps: int = 16) -> tuple[str, str]:
    """(tonic, mode) a musician hears in a call: ``estimate_key``'s correlations, with TONIC_HINT added to the two
    keys whose tonic is the first note that starts at or after index ``bar_line`` of ``symbols`` (the call's first
    downbeat; a pickup is often the dominant), and LEADING_HINT to the minor key of each note on a bar line (every
    ``bar_steps`` from ``bar_line``) that the note before it leads up to by a semitone (harmonic minor's raised
    seventh: Essen's key profiles, learned mostly from major and natural minor, weigh it little). Chosen on 306
    calls of Essen tunes outside the shipped model's test split, against music21's analysis of each whole tune:
    its tonic agreed with 0.794 of them with neither hint, 0.810 with the first, 0.820 with both (the test
    split's 293 calls: 0.768, 0.792, 0.792)."""
    weights = pitch_class_weights(symbols)
    if not weights.any():
        return "C", "major"
    scores = _key_scores(weights)
    onsets = [(index, int(s)) for index, s in enumerate(symbols) if s.isdigit()]
    first = next((pitch for index, pitch in onsets if index >= max(bar_line, 0)), None)
    if first is not None:
        scores[[first % 12, 12 + first % 12]] += TONIC_HINT
    for (_, before), (index, pitch) in itertools.pairwise(onsets):
        if pitch - before == 1 and index >= bar_line and (index - bar_line) % bar_steps == 0:
            scores[12 + pitch % 12] += LEADING_HINT
    best = int(np.argmax(scores))
    return TONIC_NAMES[best % 12], "major" if best < 12 else "minor"


def key_of_weights(weights: np.ndarray) -> tuple[str, str]:
    """(tonic, mode) that best fits ``weights`` (time per pitch class, C first); C major when all are 0."""
    if not np.any(weights):
        return "C", "major"
    best = int(np.argmax(_key_scores(np.asarray(weights, float))))
    return TONIC_NAMES[best % 12], "major" if best < 12 else "minor"


_MAJOR_BY_SHARPS = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")  # -7 .. 7
_MINOR_BY_SHARPS = ("Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#", "G#", "D#", "A#")  # -7 .. 7
_LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}


def signature_sharps(tonic: str, mode: str) -> int:
    """Sharps (negative: flats) of the key signature of ``tonic`` ``mode`` (major or minor) as the tonic is
    spelled: C-sharp major has 7 sharps, D-flat major 5 flats; a spelling past 7 (G-sharp major) takes its
    enharmonic. EncodingError for a name that is not a tonic."""
    tonic_pitch_class(tonic)  # checks the name
    name = tonic.strip()
    fifths = _LETTER_FIFTHS[name[0].upper()] + 7 * (name.count("#") - name[1:].count("b") - name.count("-"))
    fifths -= 3 if mode == "minor" else 0
    return (fifths + 7) % 12 - 7 if abs(fifths) > 7 else fifths


def simplest(tonic: str, mode: str) -> tuple[str, str]:
    """The key spelled with at most 6 accidentals (an estimate's C-sharp major is written D-flat major)."""
    fifths = signature_sharps(tonic, mode)
    if abs(fifths) > 6:
        fifths -= 12 if fifths > 0 else -12
    names = _MINOR_BY_SHARPS if mode == "minor" else _MAJOR_BY_SHARPS
    return names[fifths + 7], mode


def midi_key_name(tonic: str, mode: str) -> str:
    """The key as a MIDI key_signature meta message names it, as spelled (mido: ``"Bb"``, ``"F#m"``, ``"C#"``)."""
    names = _MINOR_BY_SHARPS if mode == "minor" else _MAJOR_BY_SHARPS
    return names[signature_sharps(tonic, mode) + 7] + ("m" if mode == "minor" else "")


WHITE_KEYS = frozenset({0, 2, 4, 5, 7, 9, 11})  # C major's diatonic collection
_INSIDE = [itemgetter(*(p for p in range(12) if (p + t) % 12 in WHITE_KEYS)) for t in range(12)]  # shift t: the
# pitch classes it moves onto the white keys


def diatonic_shift(symbols: Sequence[str]) -> int:
    """Semitones (-6..5) that move the melody onto the white keys: the diatonic collection that holds the most
    of its sounding time; among collections that hold as much, the one of the best-fitting major or minor key.
    0 when there are no notes."""
    counts = [0] * 12
    _count(symbols, counts, None)
    return _diatonic_shift_of(counts)


class DiatonicTally:
    """``diatonic_shift`` of a call asked again at each of its steps: what it shares at its start with the call
    last asked about is not counted again (a call cut at its front, or another call, is counted afresh)."""

    def __init__(self) -> None:
        self._symbols: list[str] = []
        self._counts = [0] * 12
        self._current: int | None = None
        self._shift = 0  # the answer for _counts

    def shift(self, symbols: Sequence[str]) -> int:
        known = len(self._symbols)
        if len(symbols) < known or list(symbols[:known]) != self._symbols:
            known, self._counts, self._current = 0, [0] * 12, None
        before = list(self._counts)
        self._current = _count(symbols[known:], self._counts, self._current, known)
        self._symbols = list(symbols)
        if self._counts != before or not known:  # (a call's silence adds nothing)
            self._shift = _diatonic_shift_of(self._counts)
        return self._shift


def _diatonic_shift_of(counts: list[int]) -> int:
    """``diatonic_shift`` of a melody whose pitch classes sound for ``counts`` steps (``pitch_class_weights``):
    plain Python on 12 whole numbers, quicker than numpy's calls on them (the engine asks at every step of a call)."""
    held = [pitch_class for pitch_class in range(12) if counts[pitch_class]]
    if len(held) <= 1:  # no notes, or one pitch class (a call's first note: every call's first step asks)
        return _ONE_CLASS[held[0]] if held else 0
    return _most_held(counts)


def _most_held(counts: list[int]) -> int:
    """``_diatonic_shift_of`` a melody that sounds some pitch class."""
    inside = [sum(members(counts)) for members in _INSIDE]
    top = max(inside)
    tied = [shift for shift, held in enumerate(inside) if held == top]
    best = tied[0] if len(tied) == 1 else _best_fitting(counts, tied)  # one holds the most: most often
    return (best + 6) % 12 - 6


def _best_fitting(counts: list[int], tied: list[int]) -> int:
    """The shift among ``tied`` (the first of equals: a tritone's two keys fit alike) whose major or minor key fits
    ``counts`` best by ``_key_scores``'s correlations: each key's centred profile sums to 0, so its product with
    ``counts`` is that with them centred, whose norm is the same for every key. In plain Python on the pitch classes
    held: a call's first steps (one note, two) tie, and numpy's calls on 12 numbers took tens of microseconds."""
    held = [(pitch_class, count) for pitch_class, count in enumerate(counts) if count]

    def fit(key: int) -> float:
        profile = _UNIT_KEYS[key]
        return sum(profile[pitch_class] * count for pitch_class, count in held)

    # shift t takes major tonic -t (and its relative minor, 9 above) to C (and A)
    return max(tied, key=lambda t: max(fit((-t) % 12), fit(12 + (9 - t) % 12)))


_ONE_CLASS = [_most_held([int(p == q) for q in range(12)]) for p in range(12)]  # the shift of each pitch class alone


MODE_DEGREES = {  # a mode's tonic, in semitones above the major tonic of its diatonic collection
    "major": 0,
    "ionian": 0,
    "dorian": 2,
    "phrygian": 4,
    "lydian": 5,
    "mixolydian": 7,
    "minor": 9,
    "aeolian": 9,
    "locrian": 11,
}
KEY_TEXT = 'a tonic and a mode such as "G minor", "D dorian", "Bb major" or "F# mixolydian"'


def parse_key(text: str) -> tuple[int, str] | None:
    """(tonic pitch class, mode) of a key named as "G minor", "Bb major", "f# Dorian", "E-" (major); None if it
    names none. A flat is ``b`` or ``-``, a sharp ``#``."""
    words = text.strip().lower().split()
    mode = words[1] if len(words) == 2 else "major"
    if not 1 <= len(words) <= 2 or len(words[0]) > 2 or mode not in MODE_DEGREES:
        return None
    try:
        return tonic_pitch_class(words[0]), mode
    except EncodingError:
        return None


def key_name(tonic: int, mode: str) -> str:
    """The key's name as ``parse_key`` reads it back: "G minor", "Bb major"."""
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    return f"{names[tonic % 12]} {mode}"


def key_shift(tonic: int, mode: str) -> int:
    """Semitones (-6..5) that move the key's diatonic collection onto the white keys (G minor, two flats: +2)."""
    major = (tonic - MODE_DEGREES[mode]) % 12
    return (-major + 6) % 12 - 6
