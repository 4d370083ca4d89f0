"""Where a note or rest is written in tied pieces, by the metre: at bar lines, at the beat where it starts off
the beat, at the middle of a four-beat bar (but a half note on beat 2 of 4/4 stays whole), and in compound metres (6/8) at each dotted-quarter beat it does
not fill; a rest covers one beat (two on either half of a four-beat bar, a whole bar when the bar is empty).
Lengths are in quarter notes, positions counted from a bar line.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

# the lengths one note value writes: whole to 32nd, plain or dotted
WRITTEN = frozenset(
    base * factor for base in (Fraction(4) / 2**n for n in range(6)) for factor in (Fraction(1), Fraction(3, 2))
)


@dataclass(frozen=True)
class Metre:
    """A time signature's bar, its beat (a dotted quarter in 6/8, 9/8, 12/8) and how many beats a bar holds."""

    bar: Fraction
    beat: Fraction
    compound: bool

    @classmethod
    def of(cls, numerator: int, denominator: int) -> Metre:
        compound = numerator % 3 == 0 and numerator > 3 and denominator >= 8
        unit = Fraction(4, denominator)
        return cls(numerator * unit, unit * 3 if compound else unit, compound)

    @property
    def beats(self) -> int:
        return int(self.bar / self.beat)


def pieces(start: Fraction, length: Fraction, metre: Metre, rest: bool = False) -> list[Fraction]:
    """The lengths ``length`` from ``start`` (a position counted from any bar line) is written in, in order."""
    found, position, end = [], start, start + length
    while position < end:
        in_bar = position % metre.bar
        piece = _piece(in_bar, min(end, position - in_bar + metre.bar) - position, metre, rest)
        found.append(piece)
        position += piece
    return found


def _piece(start: Fraction, length: Fraction, metre: Metre, rest: bool) -> Fraction:
    """The first piece of ``length`` from ``start`` inside a bar (``length`` ends at the bar line at the latest)."""
    beat = metre.beat
    if start % beat:
        return min(length, beat - start % beat)  # off the beat: to the next beat, then tied
    if rest:
        if start == 0 and length == metre.bar:
            return length
        half = 2 * beat
        if not metre.compound and metre.beats == 4 and start % half == 0 and length >= half:
            return half
        return min(length, beat)
    if length <= beat:
        return length
    middle = metre.bar / 2 if metre.beats == 4 else None
    if middle is not None and not metre.compound and start == beat and length >= 2 * beat:
        return 2 * beat  # quarter, half, quarter: the one note written across the middle of a 4/4 bar
    limit = metre.bar - start if middle is None or start == 0 or start >= middle else middle - start
    held = min(length, limit)
    if held in WRITTEN and (not metre.compound or held % beat == 0):
        return held
    whole_beats = [k * beat for k in range(int(held / beat), 0, -1) if k * beat in WRITTEN]
    return whole_beats[0] if whole_beats else beat
