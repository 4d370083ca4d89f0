"""The numpy key estimate agrees with music21's analysis on real Essen tunes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from improvd.core.encoding import encode, tonic_pitch_class
from improvd.core.keys import (
    MAJOR_PROFILE,
    MINOR_PROFILE,
    WHITE_KEYS,
    DiatonicTally,
    call_key,
    diatonic_shift,
    estimate_key,
    pitch_class_weights,
)
from improvd.offline.notation import analyse_key, essen_files, melody_of, tunes_in


def test_estimate_agrees_with_music21_on_real_tunes():
    path = next(p for p in essen_files() if p.stem == "erk5")
    total, disagree = 0, []
    for tune in tunes_in(path):
        melody = [n for n in melody_of(tune.score) if n.quarter_length % 0.25 == 0]
        tonic, mode = estimate_key(encode(melody))
        expected_tonic, expected_mode = analyse_key(tune.score)
        if (tonic_pitch_class(tonic), mode) != (tonic_pitch_class(expected_tonic), expected_mode):
            disagree.append((tune.ident, (tonic, mode), (expected_tonic, expected_mode)))
        total += 1
    assert total == 27  # every tune of erk5
    assert disagree == []  # improvd.core.keys: the estimate music21's analyze('key') makes, on every tune


def test_a_plain_c_major_scale_and_an_a_minor_arpeggio():
    assert estimate_key(["60", "_", "62", "64", "65", "67", "_", "_", "69", "71", "72", "_", "_", "_"]) == (
        "C",
        "major",
    )
    assert estimate_key(["57", "_", "_", "60", "64", "_", "57", "_", "_", "_", "59", "56", "57", "_"]) == ("A", "minor")


def test_no_notes_means_c_major():
    assert estimate_key(["r", "_", "_"]) == ("C", "major")


@pytest.mark.parametrize(
    ("symbols", "shift"),
    [
        (["62", "_", "64", "65", "67", "_", "69", "_", "72", "71", "69", "_", "62", "_", "_", "_"], 0),  # D Dorian
        (["67", "_", "71", "74", "65", "_", "67", "_", "69", "71", "72", "_", "67", "_", "_", "_"], 0),  # G Mixolydian
        (["62", "_", "66", "69", "61", "_", "62", "_", "64", "66", "67", "_", "62", "_", "_", "_"], -2),  # D major
        (["64", "_", "67", "71", "66", "_", "64", "_", "72", "_", "71", "_", "64", "_", "_", "_"], 5),  # E minor
    ],
)
def test_a_call_moves_by_its_diatonic_collection_modes_included(symbols, shift):
    """Training moved each tune by its key signature, so a mode keeps its notes on the white keys."""
    assert diatonic_shift(symbols) == shift
    assert all((int(s) + shift) % 12 in (0, 2, 4, 5, 7, 9, 11) for s in symbols if s.isdigit())


def test_a_dorian_call_is_not_moved_as_its_minor_relative_would_be():
    dorian = ["62", "_", "64", "65", "67", "_", "69", "_", "72", "71", "69", "_", "62", "_", "_", "_"]
    assert estimate_key(dorian) == ("D", "minor")  # a major/minor estimate would move it to A, B natural to F sharp
    assert diatonic_shift(dorian) == 0


DEMO_CALL = [(67, 12, 4), (74, 16, 4), (74, 20, 4), (74, 24, 4), (70, 28, 4), (77, 32, 4), (78, 36, 4), (75, 40, 2)]
DEMO_CALL += [(74, 42, 2), (78, 44, 4), (79, 48, 4), (74, 52, 4), (72, 56, 4), (70, 60, 4), (72, 64, 4), (74, 68, 8)]
DEMO_CALL += [(77, 76, 2), (75, 78, 2)]  # erk10#112's bars 1-4 (pitch, step, steps): the demo's call


def _symbols(notes: list[tuple[int, int, int]]) -> list[str]:
    symbols: list[str] = []
    for pitch, step, steps in notes:
        symbols += ["r"] * (step - len(symbols)) + [str(pitch)] + ["_"] * (steps - 1)
    return symbols


def test_a_leading_tone_to_a_downbeat_is_heard_as_minor():
    """erk10#112 (music21: G minor, it ends on G): F sharp leads up to the G of bar 3's downbeat; without that hint
    the call's pitch classes fit B-flat major a little better."""
    symbols = _symbols(DEMO_CALL)
    assert call_key(symbols, 16, 16) == ("G", "minor")
    assert call_key(symbols, 16, 12) == ("B-", "major")  # in 3/4 the G falls on no bar line


def test_the_tally_answers_as_diatonic_shift_for_a_call_that_grows_is_cut_at_its_front_or_changes():
    """The engine asks at every step of a call (``DiatonicTally``): counting only what was added must give what
    counting the whole call gives, also once the buffer drops the call's front, a hold leads it, or another call
    begins."""
    rng = random.Random(3)
    tally = DiatonicTally()
    call: list[str] = []
    for step in range(600):
        roll = rng.random()
        if roll < 0.02:
            call = []  # another call
        elif roll < 0.10 and call:
            call = call[rng.randint(1, min(8, len(call))) :]  # the front dropped (perhaps leaving a hold first)
        call.append(rng.choice(["_", "_", "r", *map(str, rng.sample(range(55, 80), 3))]))
        assert tally.shift(call) == diatonic_shift(call), (step, call)


def _by_correlation(call: list[str]) -> int:
    """diatonic_shift's contract, computed plainly: among the collections holding the most of the call's time, the
    one whose major (tonic -t) or relative minor (9 - t) key profile correlates best with it; the first of equals."""
    weights = pitch_class_weights(call)
    inside = [sum(weights[p] for p in range(12) if (p + t) % 12 in WHITE_KEYS) for t in range(12)]
    tied = [t for t in range(12) if inside[t] == max(inside)]

    def fit(t: int) -> float:
        major = np.corrcoef(weights, np.roll(MAJOR_PROFILE, -t % 12))[0, 1]
        return max(major, np.corrcoef(weights, np.roll(MINOR_PROFILE, (9 - t) % 12))[0, 1])

    fits = [fit(t) for t in tied]
    best = next(t for t, f in zip(tied, fits, strict=True) if f >= max(fits) - 1e-9)
    return (best + 6) % 12 - 6


def test_a_call_of_a_few_notes_takes_the_collection_of_the_key_that_fits_it_best():
    """A call's first steps hold one or two pitch classes, which many collections hold: each pitch class alone (a
    table), a few of them, and a tritone's two (whose keys fit equally: the first collection) as the contract says."""
    rng = random.Random(5)
    calls = [[str(pitch), "_"] for pitch in range(60, 72)]
    calls += [[str(p), *"_" * held, str(p + 6), *"_" * held] for p in range(60, 66) for held in range(8)]  # tritones
    for _ in range(300):
        calls.append(
            [s for p in rng.sample(range(55, 80), rng.randint(2, 3)) for s in [str(p)] + ["_"] * rng.randint(0, 4)]
        )
    for call in calls:
        assert diatonic_shift(call) == _by_correlation(call), call
