"""The numpy key estimate agrees with music21's analysis on real Essen tunes."""

from __future__ import annotations

import pytest

from improvd.core.encoding import encode, tonic_pitch_class
from improvd.core.keys import diatonic_shift, estimate_key
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
