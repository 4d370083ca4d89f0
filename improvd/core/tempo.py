"""The player's tempo and beat phase from the onsets of a call, with no click to play along to.

Each candidate tempo from ``MIN_BPM`` to ``MAX_BPM`` lays an 8th-note grid over the onsets; how well the onsets
sit on it is the length R of the mean of ``exp(2*pi*i*t/eighth)`` (1: every onset on the grid, near 0: spread
over it). A tempo and its double fit alike (every 8th of a tempo is an 8th of its double), so R is weighed by
a log-normal prior centred on the tempo the player was last heard at (Ellis's tempo prior, as in beat
trackers): the estimate is the candidate with the best weighted fit, refined on a finer grid around it. The
octave stays ambiguous where the notes do not decide it (quarters at 60 are 8ths at 120): a call far from the
last tempo may be heard at its double or half, its rhythm intact. The phase is the mean's angle: the
8th-note grid point nearest the first onset is taken as a beat (the call starts on one), where the grid is
anchored. A tempo error of 1% drifts by a third of an 8th over a 4-bar call, so the fit is sharp: the
search steps are 0.3% and then 0.01%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_BPM, MAX_BPM = 40.0, 240.0
MIN_ONSETS = 6  # fewer onsets say too little: the last tempo is kept
MAX_ONSETS = 64  # the last onsets fitted: the fit costs onsets x 701 complex exponentials (under a millisecond)
PRIOR_BPM = 100.0
PRIOR_OCTAVES = 0.6  # the prior's width (standard deviation, in octaves of tempo), chosen on Essen calls at 72-160 BPM
COARSE = np.geomspace(MIN_BPM, MAX_BPM, 600)  # 0.3% apart


@dataclass(frozen=True)
class Beat:
    """A tempo in quarter notes a minute and the time of a beat (the one nearest the call's first onset)."""

    bpm: float
    origin: float
    fit: float  # R at that tempo: 1 when every onset is on its 8th grid


def _fit(onsets: np.ndarray, bpm: np.ndarray) -> np.ndarray:
    """R for each tempo in ``bpm``: how closely the onsets sit on its 8th-note grid."""
    eighth = 30.0 / bpm
    angles = 2 * np.pi * onsets[None, :] / eighth[:, None]
    return np.abs(np.exp(1j * angles).mean(axis=1))


def _prior(bpm: np.ndarray, centre: float) -> np.ndarray:
    return np.exp(-0.5 * (np.log2(bpm / centre) / PRIOR_OCTAVES) ** 2)


def estimate(onsets: Sequence[float], prior_bpm: float = PRIOR_BPM) -> Beat | None:
    """The beat of the last MAX_ONSETS distinct ``onsets`` (seconds, any order), or None with fewer than
    MIN_ONSETS. ``prior_bpm`` centres the prior: the tempo the player was last heard at (or was set)."""
    times = np.unique(np.round(np.asarray(onsets, float), 4))[-MAX_ONSETS:]
    if len(times) < MIN_ONSETS:
        return None
    start = float(times[0])
    times = times - start  # the fit does not depend on where time starts; large times lose precision
    coarse = COARSE[int(np.argmax(_fit(times, COARSE) * _prior(COARSE, prior_bpm)))]
    fine = np.geomspace(coarse * 0.995, coarse * 1.005, 101)
    weighed = _fit(times, fine) * _prior(fine, prior_bpm)
    bpm = float(fine[int(np.argmax(weighed))])
    eighth = 30.0 / bpm
    mean = np.exp(2j * np.pi * times / eighth).mean()
    offset = float(np.angle(mean)) / (2 * np.pi) * eighth  # grid points at offset + k * eighth
    first = offset + round(-offset / eighth) * eighth  # the grid point nearest the first onset (time 0)
    return Beat(bpm, start + first, float(np.abs(mean)))
