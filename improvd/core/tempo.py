"""The player's tempo, beat phase and tempo drift from the onsets of a call, with no click to play along to.

A hypothesis is a tempo T (quarter notes a minute, ``MIN_BPM`` to ``MAX_BPM``) and a division of its beat into
d grid points (``DIVISIONS``: quarters, 8ths, triplets, 16ths). Three things weigh it:

* the fit R: the length of the mean of ``exp(2*pi*i*t/g)`` over the onsets, g the grid's spacing (1: every
  onset on the grid, near 0: spread over it);
* the prior: log-normal in T, centred on the tempo the player was last heard at (Ellis's tempo prior, as in beat
  trackers), which decides where the notes do not (quarters at 60 are 8ths at 120, a 16th run at 110 is an 8th
  run at 220), times a weight of the division (``TRIPLETS``: straight 8ths at 100 are triplets at 67 too);
* the pattern's cost: with the first onset's grid point a beat, each of the d places in the beat is filled in
  some share q of the beats the call spans; the bits an onset costs (the binary entropy of each place's q,
  summed over the beats, per onset) are low when the call does the same thing in every beat (swung 8ths fill
  the first and third triplet of each beat at 92; heard at 138 the same onsets fall in a three-against-two
  pattern that costs over a bit an onset), so ``exp(-PATTERN_WEIGHT * bits)`` weighs the hypothesis.

The best weighted hypothesis is refined on a finer grid of tempi (steps of 0.3% and then 0.01%: a tempo error
of 1% drifts by a third of an 8th over a 4-bar call). Then each onset is given its grid point, following the
tempo as it moves, and a parabola through (grid point, time) by least squares tells an accelerando or ritardando
(where it explains the onsets better than a straight line by more than jitter would, an F test, with and without the
onset furthest off it: one note off the grid is no accelerando). A drift heard is
then fitted as a tempo ramp, the tempo moving in a straight line over the beats (Gauss-Newton from the parabola,
whose beat period moves in a straight line instead: its tempo at the call's end was 0.05% off a 5% ramp's, which
an answer as long as a 4-bar call carries 5 ms off the player's grid), and the tempo reported is the one at the
call's last onset, where the answer goes on (straight on at that tempo: ``Beat.time``). Only the last MAX_ONSETS
onsets are heard.

Cost. R at every tempo is screened in float32 (``_screen``: its cosines and sines are some 20 times cheaper than
complex128 exponentials), within SCREEN_ERROR of the exact R; every comparison that picks a hypothesis or a tempo
is then made on exact R, computed at the few tempi the screen cannot rule out. So the result is bit for bit that
of computing every R exactly (as before: 256 onsets took about 10 ms, now under 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_BPM, MAX_BPM = 40.0, 240.0
MIN_ONSETS = 6  # fewer onsets say too little: the last tempo is kept
MAX_ONSETS = 256  # the call's last onsets that are heard (16 bars of 16ths): the phrase end's work stays short
PRIOR_BPM = 100.0
PRIOR_OCTAVES = 0.6  # the prior's width (standard deviation, in octaves of tempo), chosen on Essen calls at 72-160 BPM
TRIPLETS = 0.8  # how likely a triplet division is beside a straight one, before the notes are heard
DIVISIONS = {1: 1.0, 2: 1.0, 3: TRIPLETS, 4: 1.0}  # grid points a beat (quarters, 8ths, triplets, 16ths): weight
COMPOUND_BEAT = 1.5  # quarters in a compound metre's beat (a dotted quarter)
COMPOUND_DIVISIONS = {1: 1.0, 3: 1.0, 6: 1.0}  # grid points a dotted quarter: itself, 8ths, 16ths
PATTERN_WEIGHT = 1.0  # how much a bit an onset of pattern cost counts against a hypothesis
CANDIDATES = 3  # the best hypotheses of each division whose pattern is weighed
MAX_DRIFT = 0.25  # a tempo change within a call beyond this fraction is not believed: the straight line is kept
MIN_DRIFT_ONSETS = 8  # fewer onsets fit a straight line only
DRIFT_F = 12.0  # the F statistic a drift must reach to be heard (a steady tempo's reaches it once in about 1000)
OFF_GRID = 0.3  # of a grid spacing: an onset further off its grid point is off the grid (out of the drift's fit)
RAMP_STEPS = 4  # Gauss-Newton steps from the parabola to the tempo ramp (it is close: one or two suffice)
OFF_GRID_BITS = 2.0  # what an onset off the grid costs the pattern (as if on a grid twice as fine)
COARSE = np.geomspace(MIN_BPM, MAX_BPM, 600)  # 0.3% apart
SCREEN_ERROR = 1e-4  # how far the float32 screen of a fit may be from the exact one, at most (errors of about 1e-6)
SCREEN_SPAN = 1e9  # seconds x beats a minute: past it float64 places in the beat lose the screen's precision
SCREEN_ROWS = 100  # tempi screened at a time
FINE = 101  # tempi of the finer grid, 0.5% either side of the coarse one found (0.01% apart)


@dataclass(frozen=True)
class Beat:
    """The call's beat: ``time(u)`` is when beat ``u`` (counted from the call's first, at ``origin``) falls. From
    the origin to ``until`` (the call's last onset, in beats) the tempo moves in a straight line over the beats from
    ``start_bpm`` to ``bpm``, the tempo at the call's end (quarter notes a minute); straight on at ``bpm`` after it,
    and at ``start_bpm`` before the origin. ``fit`` is R at the tempo found."""

    bpm: float
    origin: float
    fit: float
    start_bpm: float = 0.0  # the tempo at the origin (0: ``bpm``, a steady tempo)
    until: float = 0.0  # the beat (from the origin) where the ramp goes on as a straight line

    def _ramp(self) -> tuple[float, float]:
        """(the tempo at the origin, its change a beat) in beats a minute."""
        start = self.start_bpm or self.bpm
        return start, (self.bpm - start) / self.until if self.until > 0 else 0.0

    def time(self, beats: float) -> float:
        """When beat ``beats`` (from the origin, fractional) falls."""
        start, slope = self._ramp()
        if beats <= 0:
            return self.origin + beats * 60.0 / start
        within = min(beats, self.until)
        return self.origin + 60.0 * _ramp_minute(within, start, slope) + (beats - within) * 60.0 / self.bpm

    def beats(self, time: float) -> float:
        """The beat (from the origin, fractional) at ``time``: the inverse of ``time``."""
        start, slope = self._ramp()
        if time <= self.origin:
            return (time - self.origin) * start / 60.0
        end = self.time(self.until)
        if time >= end:
            return self.until + (time - end) * self.bpm / 60.0
        minutes = (time - self.origin) / 60.0
        growth = slope * minutes
        # u = start / slope * (exp(slope * minutes) - 1), the inverse of the ramp
        return start * minutes if abs(growth) < 1e-12 else start * math.expm1(growth) / slope


def _ramp_minute(beats: float, start: float, slope: float) -> float:
    """``_ramp_minutes`` of one beat, in plain floats (the same arithmetic, some 30 times cheaper)."""
    x = slope * beats / start
    ratio = 1 - x / 2 + x * x / 3 if abs(x) < 1e-3 else float(np.log1p(x)) / x  # numpy's: math's differs now and then
    return beats / start * ratio


def _ramp_minutes(beats: np.ndarray, start: float, slope: float) -> np.ndarray:
    """Minutes from the origin to each of ``beats`` on a tempo ramp: ``start`` beats a minute at the origin, changing
    by ``slope`` a beat (``log(1 + x) / slope`` with x = slope * beats / start, on the series where x is small)."""
    x = slope * beats / start
    small = np.abs(x) < 1e-3
    safe = np.where(small, 1.0, x)
    ratio = np.where(small, 1 - x / 2 + x * x / 3, np.log1p(safe) / safe)  # log(1 + x) / x
    return beats / start * ratio


def _fit(onsets: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """R for each grid spacing in ``spacing`` (seconds): how closely the onsets sit on its grid."""
    angles = 2 * np.pi * onsets[None, :] / spacing[:, None]
    return np.abs(np.exp(1j * angles).mean(axis=1))


def _prior(bpm: np.ndarray, centre: float) -> np.ndarray:
    return np.exp(-0.5 * (np.log2(bpm / centre) / PRIOR_OCTAVES) ** 2)


def _entropy(q: float) -> float:
    """Bits of a yes/no that is yes in a share ``q`` of cases."""
    return 0.0 if q <= 0 or q >= 1 else -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def _points(times: np.ndarray, spacing: float, residuals: bool = False) -> Any:
    """Each onset's grid point, the first onset's nearest grid point being 0 (the grid's phase from the fit);
    with ``residuals``, also how far off it each onset is (in spacings)."""
    mean = np.exp(2j * np.pi * times / spacing).mean()
    offset = float(np.angle(mean)) / (2 * np.pi) * spacing  # grid points at offset + k * spacing
    first = offset + round((times[0] - offset) / spacing) * spacing
    heard = (times - first) / spacing
    points = np.round(heard).astype(int)
    return (points, heard - points) if residuals else points


def _pattern_bits(times: np.ndarray, bpm: float, division: int) -> float:
    """Bits an onset of the call costs on the grid of ``division`` points a beat at ``bpm``: each place in the
    beat filled in a share q of the beats the call spans, the binary entropy of q summed over those beats."""
    spacing = 60.0 / bpm / division
    heard, off = _points(times, spacing, residuals=True)
    points = np.unique(heard[np.abs(off) <= OFF_GRID])
    if not len(points):
        return OFF_GRID_BITS
    last = int(points[-1])
    bits = OFF_GRID_BITS * (len(times) - len(points))  # an onset off the grid, or a second on one point
    for place in range(division):
        beats = (last - place) // division + 1 if last >= place else 0
        if beats:
            bits += beats * _entropy(np.count_nonzero(points % division == place) / beats)
    return bits / len(times)


def _hypothesis(times: np.ndarray, prior_bpm: float, divisions: dict[int, float], unit: float) -> tuple[float, int]:
    """(beats a minute, division) of the best weighed hypothesis on the coarse grid of tempi; ``prior_bpm`` and
    the result count beats of ``unit`` quarters. The fits are screened cheaply (``_screen``), and every comparison
    that decides the result is made on exact ones (``_Exact``): the result is that of computing them all exactly."""
    tempi = COARSE / unit
    prior = _prior(tempi, prior_bpm)
    exact = _Exact(times, tempi)
    screened = _screen(times, tempi, divisions) if times[-1] * tempi[-1] < SCREEN_SPAN else None
    best, best_score = (float(tempi[0]), 2), -1.0
    for division, weight in divisions.items():

        def weighed(rows: np.ndarray, division: int = division, weight: float = weight) -> np.ndarray:
            return exact.fit(rows, division) * prior[rows] * weight

        approximate = None if screened is None else screened[division] * prior * weight
        for index, value in _top_peaks(approximate, weighed, len(tempi)):
            if value <= best_score:
                continue  # its pattern costs bits or none: it cannot score more than its fit
            bpm = float(tempi[index])
            score = value * math.exp(-PATTERN_WEIGHT * _pattern_bits(times, bpm, division))
            if score > best_score:
                best, best_score = (bpm, division), score
    return best


class _Exact:
    """R on the grid of d points a beat at each of ``tempi`` (beats a minute), exactly, computed only at the tempi
    asked for (each onset's place in the beat once a tempo)."""

    def __init__(self, times: np.ndarray, tempi: np.ndarray) -> None:
        self._times, self._tempi = times, tempi
        self._beats = np.empty((len(tempi), len(times)), complex)
        self._known = np.zeros(len(tempi), bool)

    def fit(self, rows: np.ndarray, division: int) -> np.ndarray:
        new = rows[~self._known[rows]]
        if len(new):
            self._beats[new] = np.exp(2j * np.pi * self._times[None, :] * self._tempi[new, None] / 60.0)
            self._known[new] = True
        beats = self._beats[rows]
        power = np.ones_like(beats)  # the onsets' places on the grid (products: cheaper than **)
        for _ in range(division):
            power = power * beats
        return np.abs(power.mean(axis=1))


def _screen(times: np.ndarray, tempi: np.ndarray, divisions: Iterable[int]) -> dict[int, np.ndarray]:
    """R on each of ``divisions``' grids at each of ``tempi``, within SCREEN_ERROR of ``_Exact``'s and several times
    cheaper: the onsets' places in the beat reduced in float64, their cosines and sines (and powers) in float32,
    SCREEN_ROWS tempi at a time (kept in the cache)."""
    wanted = set(divisions)
    fits: dict[int, list[np.ndarray]] = {division: [] for division in wanted}
    for first in range(0, len(tempi), SCREEN_ROWS):
        cycles = times[None, :] * (tempi[first : first + SCREEN_ROWS] / 60.0)[:, None]
        cycles -= np.rint(cycles)
        angles = cycles.astype(np.float32)
        angles *= np.float32(2 * np.pi)
        beats = np.empty(angles.shape, np.complex64)
        beats.real, beats.imag = np.cos(angles), np.sin(angles)
        power = beats
        for division in range(1, max(wanted) + 1):
            if division > 1:
                power = power * beats
            if division in wanted:
                fits[division].append(np.abs(power.sum(axis=1)))
    return {division: np.concatenate(parts).astype(float) / len(times) for division, parts in fits.items()}


def _refine(times: np.ndarray, coarse: float, division: int, centre: float) -> float:
    """The tempo of the best weighed fit on the grid of ``division`` points a beat among FINE tempi 0.5% either side
    of ``coarse``: screened, then the tempi the screen cannot rule out weighed exactly (``_fit``; of equal ones the
    first, as ``argmax``)."""
    fine = np.geomspace(coarse * 0.995, coarse * 1.005, FINE)
    prior = _prior(fine, centre)
    if times[-1] * fine[-1] * division < SCREEN_SPAN:
        approximate = _screen(times, fine * division, [1])[1] * prior
        rows = np.flatnonzero(approximate >= approximate.max() - 2 * SCREEN_ERROR)
    else:
        rows = np.arange(FINE)
    weighed = _fit(times, 60.0 / fine[rows] / division) * prior[rows]
    return float(fine[rows[int(np.argmax(weighed))]])


def _top_peaks(
    approximate: np.ndarray | None, weighed: Callable[[np.ndarray], np.ndarray], size: int
) -> list[tuple[int, float]]:
    """(index, value) of the CANDIDATES highest local maxima (each at least its two neighbours, around the ends) of
    the weighed fit ``weighed(indices)`` over ``size`` tempi, highest first: from ``approximate`` (within
    SCREEN_ERROR of it; None: every tempo exactly) the tempi that may be among them, then exactly, those and their
    neighbours only, widening until the rest cannot beat them."""
    if approximate is None:
        return _peaks_of(weighed(np.arange(size)), np.arange(size))
    margin = 2 * SCREEN_ERROR
    maybe = np.flatnonzero(
        (approximate >= np.roll(approximate, 1) - margin) & (approximate >= np.roll(approximate, -1) - margin)
    )
    order = maybe[np.argsort(approximate[maybe])[::-1]]
    for count in (CANDIDATES, 4 * CANDIDATES, 16 * CANDIDATES, len(order)):
        head = order[:count]
        rows = np.unique(np.concatenate([head, (head - 1) % size, (head + 1) % size]))
        known = np.full(size, np.nan)  # NaN compares false: never a neighbour of a head tempo
        known[rows] = weighed(rows)
        peaks = _peaks_of(known, head)
        if count >= len(order):
            return peaks
        if len(peaks) == CANDIDATES and peaks[-1][1] > approximate[order[count]] + SCREEN_ERROR:
            return peaks  # every tempo not asked is below the last of them
    raise AssertionError("unreachable: the last round asks every tempo that may be a peak")


def _peaks_of(weighed: np.ndarray, indices: np.ndarray) -> list[tuple[int, float]]:
    """(index, value) of the CANDIDATES highest local maxima of ``weighed`` among ``indices``, highest first (of
    equal ones the later, as ``argsort`` reversed)."""
    size = len(weighed)
    peaks = [
        (int(i), float(weighed[i]))
        for i in indices
        if weighed[i] >= weighed[(i - 1) % size] and weighed[i] >= weighed[(i + 1) % size]
    ]
    return sorted(peaks, key=lambda peak: (-peak[1], -peak[0]))[:CANDIDATES]


def _drift(times: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each onset's grid point, following the tempo as it moves (the points of the straight grid, then of the
    parabola through them, refitted), which of them lie on the grid (an 8th between quarters does not), and the
    parabola's coefficients (time = c0 + c1 * point + c2 * point**2; a straight line where the call is too short or
    the parabola not believable; the grid itself, at ``spacing`` through the first onset, where the onsets do not
    give a line that rises at most MAX_DRIFT off it)."""
    points = _points(times, spacing).astype(float)
    grid = np.array([times[0] - points[0] * spacing, spacing, 0.0])
    on = np.ones(len(times), bool)
    for _ in range(3):
        if len(np.unique(points[on])) < 2:
            return points, on, grid  # a smear of onsets on one grid point: no line through them
        coefficients = _line(points[on], times[on])
        if abs(coefficients[1] / spacing - 1) > MAX_DRIFT:
            return points, on, grid
        if np.count_nonzero(on) >= MIN_DRIFT_ONSETS and len(np.unique(points[on])) >= MIN_DRIFT_ONSETS:
            curved = np.polynomial.polynomial.polyfit(points[on], times[on], 2)
            if _believable(curved, float(points[-1])) and _bends_without_outlier(
                points[on], times[on], coefficients, curved
            ):
                coefficients = curved
        heard = _inverse(coefficients, times)
        points = np.round(heard)
        on = np.abs(heard - points) <= OFF_GRID
        if np.count_nonzero(on) < 2:
            on[:] = True
    return points, on, coefficients


def _ramp(beats: np.ndarray, times: np.ndarray, guess: tuple[float, float, float]) -> tuple[float, float, float]:
    """(origin, tempo at the origin, tempo at the last of ``beats``) of the tempo ramp through (``beats``, ``times``)
    by least squares: Gauss-Newton from ``guess`` (the parabola's), each step kept only where it stays a ramp the
    call can believe (rising all through, changing by at most MAX_DRIFT)."""
    last = float(beats[-1])
    origin, start, end = guess
    for _ in range(RAMP_STEPS):
        slope = (end - start) / last
        x = slope * beats / start
        small = np.abs(x) < 1e-3
        safe = np.where(small, 1.0, x)
        phi = np.where(small, -0.5 + 2 * x / 3 - 0.75 * x * x, (safe / (1 + safe) - np.log1p(safe)) / safe**2)
        residual = times - origin - 60.0 * _ramp_minutes(beats, start, slope)
        # the derivatives of the ramp's times by the origin, the start tempo and the slope, then by the end tempo
        by_start = -60.0 * beats / (start * (start + slope * beats))
        by_slope = 60.0 * (beats / start) ** 2 * phi
        jacobian = np.column_stack([np.ones_like(beats), by_start - by_slope / last, by_slope / last])
        step = np.linalg.lstsq(jacobian, residual, rcond=None)[0]
        candidate = (origin + step[0], start + step[1], end + step[2])
        if not (all(map(math.isfinite, candidate)) and candidate[1] > 0 and candidate[2] > 0):
            break
        if abs(candidate[2] / candidate[1] - 1) > MAX_DRIFT:
            break
        origin, start, end = (float(value) for value in candidate)
    return origin, start, end


def _line(points: np.ndarray, times: np.ndarray) -> np.ndarray:
    return np.pad(np.polynomial.polynomial.polyfit(points, times, 1), (0, 1))


def _inverse(coefficients: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The grid point (fractional) where the parabola reaches each of ``times``."""
    c0, c1, c2 = coefficients
    if abs(c2) < 1e-12:
        return (times - c0) / c1
    return (-c1 + np.sqrt(np.maximum(0.0, c1 * c1 + 4 * c2 * (times - c0)))) / (2 * c2)


def _bends(points: np.ndarray, times: np.ndarray, line: np.ndarray, curve: np.ndarray) -> bool:
    """The parabola explains the onsets better than the line by more than their jitter would (an F test):
    a steady tempo played unevenly keeps the line, whose slope is several times surer at the call's end."""
    rest = [float(np.sum((times - np.polynomial.polynomial.polyval(points, c)) ** 2)) for c in (line, curve)]
    freedom = len(times) - 3
    return rest[0] - rest[1] > DRIFT_F * max(rest[1], 1e-12) / freedom


def _bends_without_outlier(points: np.ndarray, times: np.ndarray, line: np.ndarray, curve: np.ndarray) -> bool:
    """A drift is heard where ``curve``, the parabola through the onsets, bends past ``line`` (``_bends``) with and
    without the onset furthest off the parabola: one note off the grid (a pickup placed late, at the call's end
    where a parabola is freest) is no accelerando."""
    if not _bends(points, times, line, curve):
        return False
    keep = np.ones(len(times), bool)
    keep[np.argmax(np.abs(times - np.polynomial.polynomial.polyval(points, curve)))] = False
    if len(np.unique(points[keep])) < MIN_DRIFT_ONSETS:
        return False
    rest, kept = points[keep], times[keep]
    return _bends(rest, kept, _line(rest, kept), np.polynomial.polynomial.polyfit(rest, kept, 2))


def _believable(coefficients: np.ndarray, last: float) -> bool:
    """The parabola rises all through the call and its tempo changes by at most MAX_DRIFT."""
    start, end = coefficients[1], coefficients[1] + 2 * coefficients[2] * last
    return bool(start > 0 and end > 0 and abs(end / start - 1) <= MAX_DRIFT)


def estimate(onsets: Sequence[float], prior_bpm: float = PRIOR_BPM, compound: bool = False) -> Beat | None:
    """The beat of ``onsets`` (seconds, any order), or None with fewer than MIN_ONSETS distinct onsets.
    ``prior_bpm`` centres the prior: the tempo the player was last heard at (or was set). In a ``compound``
    metre (6/8) the beat is a dotted quarter divided in COMPOUND_DIVISIONS (8ths, 16ths), and the tempo is still
    reported (and the prior given) in quarter notes."""
    unit = COMPOUND_BEAT if compound else 1.0  # quarters a beat
    times = np.unique(np.round(np.asarray(onsets, float), 4))[-MAX_ONSETS:]
    if len(times) < MIN_ONSETS:
        return None
    start = float(times[0])
    times = times - start  # the fit does not depend on where time starts; large times lose precision
    centre = prior_bpm / unit
    coarse, division = _hypothesis(times, centre, COMPOUND_DIVISIONS if compound else DIVISIONS, unit)
    bpm = _refine(times, coarse, division, centre)
    fit = float(np.max(_fit(times, np.array([60.0 / bpm / division]))))
    points, on, (c0, c1, c2) = _drift(times, 60.0 / bpm / division)
    per_quarter = division / unit  # grid points a quarter note
    last = float(points[-1]) / per_quarter
    period, bend = float(c1) * per_quarter, float(c2) * per_quarter * per_quarter
    origin, start_bpm, end = float(c0), 60.0 / period, 60.0 / (period + 2 * bend * last)
    if bend:
        origin, start_bpm, end = _ramp(points[on] / per_quarter, times[on], (origin, start_bpm, end))
    if not MIN_BPM <= end <= MAX_BPM:  # a drift past the tempi heard: the tempo found, straight on
        straight = min(max(bpm * unit, MIN_BPM), MAX_BPM)
        return Beat(straight, start + float(c0), fit, 0.0, last)
    return Beat(end, start + origin, fit, start_bpm if bend else 0.0, last)
