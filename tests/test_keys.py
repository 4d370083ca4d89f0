"""The numpy key estimate agrees with music21's analysis on real Essen tunes."""

from __future__ import annotations

from improvd.encoding import encode, tonic_pitch_class
from improvd.keys import estimate_key
from improvd.scores import analyse_key, essen_files, melody_of, tunes_in


def test_estimate_agrees_with_music21_on_real_tunes():
    path = next(p for p in essen_files() if p.stem == "erk5")
    same = total = 0
    for tune in tunes_in(path):
        melody = [n for n in melody_of(tune.score) if n.quarter_length % 0.25 == 0]
        tonic, mode = estimate_key(encode(melody))
        expected_tonic, expected_mode = analyse_key(tune.score)
        same += (tonic_pitch_class(tonic), mode) == (tonic_pitch_class(expected_tonic), expected_mode)
        total += 1
    assert total >= 20
    assert same / total >= 0.9, f"{same} of {total} agree"


def test_a_plain_c_major_scale_and_an_a_minor_arpeggio():
    assert estimate_key(["60", "_", "62", "64", "65", "67", "_", "_", "69", "71", "72", "_", "_", "_"]) == (
        "C",
        "major",
    )
    assert estimate_key(["57", "_", "_", "60", "64", "_", "57", "_", "_", "_", "59", "56", "57", "_"]) == ("A", "minor")


def test_no_notes_means_c_major():
    assert estimate_key(["r", "_", "_"]) == ("C", "major")
