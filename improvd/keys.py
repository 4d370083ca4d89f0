"""Key of a melody from its pitch classes weighted by duration (the Aarden-Essen profiles).

This is the estimate music21's ``analyze('key')`` makes, in numpy, so it can
run at a phrase end in well under a millisecond; tests/test_keys.py checks the
two agree on real Essen tunes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from improvd.encoding import HOLD, SONG_END, parse_symbol

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


def pitch_class_weights(symbols: Sequence[str]) -> np.ndarray:
    """Steps each pitch class sounds for in ``symbols`` (holds count for the note they continue)."""
    weights = np.zeros(12)
    current: int | None = None
    for index, symbol in enumerate(symbols):
        if symbol == SONG_END:
            current = None
        elif symbol != HOLD:
            current = parse_symbol(symbol, index)
        if current is not None:
            weights[current % 12] += 1
    return weights


def estimate_key(symbols: Sequence[str]) -> tuple[str, str]:
    """(tonic, mode) of the melody in ``symbols``; C major when there are no notes."""
    weights = pitch_class_weights(symbols)
    if not weights.any():
        return "C", "major"
    centred = weights - weights.mean()
    scores = _KEYS @ centred / (np.linalg.norm(_KEYS, axis=1) * (np.linalg.norm(centred) or 1.0))
    best = int(np.argmax(scores))
    return TONIC_NAMES[best % 12], "major" if best < 12 else "minor"
