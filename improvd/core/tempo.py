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
(where it explains the onsets better than a straight line by more than jitter would, an F test). A drift heard is
then fitted as a tempo ramp, the tempo moving in a straight line over the beats (Gauss-Newton from the parabola,
whose beat period moves in a straight line instead: its tempo at the call's end was 0.05% off a 5% ramp's, which
an answer as long as a 4-bar call carries 5 ms off the player's grid), and the tempo reported is the one at the
call's last onset, where the answer goes on (straight on at that tempo: ``Beat.time``). Only the last MAX_ONSETS
onsets are heard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
        return (
            self.origin
            + 60.0 * float(_ramp_minutes(np.array(within), start, slope))
            + (beats - within) * 60.0 / self.bpm
        )

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
    """(beats a minute, division) of the best weighted hypothesis on the coarse grid of tempi; ``prior_bpm`` and
    the result count beats of ``unit`` quarters."""
    tempi = COARSE / unit
    prior = _prior(tempi, prior_bpm)
    beats = np.exp(2j * np.pi * times[None, :] * tempi[:, None] / 60.0)  # each onset's place in each beat
    powers = [np.ones_like(beats)]  # the onsets' places on the grid of k points a beat (products: cheaper than **)
    for _ in range(max(divisions)):
        powers.append(powers[-1] * beats)
    best, best_score = (float(tempi[0]), 2), -1.0
    for division, weight in divisions.items():
        weighed = np.abs(powers[division].mean(axis=1)) * prior * weight  # the fit on ``division`` points a beat
        peaks = np.flatnonzero((weighed >= np.roll(weighed, 1)) & (weighed >= np.roll(weighed, -1)))
        for index in peaks[np.argsort(weighed[peaks])[::-1][:CANDIDATES]]:
            bpm = float(tempi[index])
            score = float(weighed[index]) * math.exp(-PATTERN_WEIGHT * _pattern_bits(times, bpm, division))
            if score > best_score:
                best, best_score = (bpm, division), score
    return best


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
            if _believable(curved, float(points[-1])) and _bends(points[on], times[on], coefficients, curved):
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
    fine = np.geomspace(coarse * 0.995, coarse * 1.005, 101)
    weighed = _fit(times, 60.0 / fine / division) * _prior(fine, centre)
    bpm = float(fine[int(np.argmax(weighed))])
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
