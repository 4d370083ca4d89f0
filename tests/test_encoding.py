"""The melody encoding: symbols, round trips, transposition, folding, vocabulary."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from improvd.core.encoding import (
    ACCEPTABLE_DURATIONS,
    HOLD,
    REST,
    SONG_END,
    EncodingError,
    Note,
    Vocabulary,
    decode,
    encode,
    fold_pitch,
    transpose,
    transposition_to_c,
    unacceptable_durations,
)

notes = st.builds(
    Note,
    pitch=st.one_of(st.none(), st.integers(0, 127)),
    quarter_length=st.sampled_from(ACCEPTABLE_DURATIONS),
)
melodies = st.lists(notes, min_size=1, max_size=60)


def test_encode_follows_the_tutorial_symbols():
    melody = [Note(60, 1.0), Note(None, 0.5), Note(62, 0.25), Note(64, 0.75)]
    assert encode(melody) == ["60", "_", "_", "_", "r", "_", "62", "64", "_", "_"]


@given(melodies)
def test_decode_inverts_encode(melody):
    assert decode(encode(melody)) == melody


@given(melodies)
def test_one_symbol_per_sixteenth(melody):
    assert len(encode(melody)) == round(sum(n.quarter_length for n in melody) / 0.25)


def test_decode_stops_at_song_end():
    assert decode(["60", "_", SONG_END, "62"]) == [Note(60, 0.5)]


@pytest.mark.parametrize(
    "symbols, message",
    [([HOLD, "60"], "'_' with no note or rest before it"), (["60", "x"], "'x' is not a pitch"), (["128"], "'128'")],
)
def test_decode_rejects_bad_symbols_by_step(symbols, message):
    with pytest.raises(EncodingError, match=message):
        decode(symbols)


def test_durations_off_the_grid_are_reported_not_rounded():
    melody = [Note(60, 1.0), Note(62, 1 / 3), Note(64, 6.0), Note(65, 1 / 3)]
    assert unacceptable_durations(melody) == [1 / 3, 6.0]
    with pytest.raises(EncodingError, match=r"note 1 lasts 0\.333"):
        encode(melody)


@pytest.mark.parametrize(
    "tonic, mode, semitones",
    [
        ("C", "major", 0),
        ("G", "major", 5),
        ("D", "minor", -5),
        ("A", "minor", 0),
        ("F#", "major", 6 - 12),
        ("B-", "major", 2),
        ("Eb", "minor", -6),
        ("E", "minor", 5),
    ],
)
def test_transposition_to_c_major_or_a_minor(tonic, mode, semitones):
    assert transposition_to_c(tonic, mode) == semitones


@given(melodies, st.integers(-11, 11))
def test_transpose_and_back(melody, semitones):
    moved = transpose(melody, semitones)
    assert [n.quarter_length for n in moved] == [n.quarter_length for n in melody]
    assert transpose(moved, -semitones) == melody


@given(st.integers(-40, 170), st.integers(40, 70), st.integers(11, 40))
def test_fold_keeps_pitch_class_and_lands_in_range(pitch, lowest, width):
    folded = fold_pitch(pitch, lowest, lowest + width)
    assert lowest <= folded <= lowest + width
    assert folded % 12 == pitch % 12


def test_vocabulary_orders_symbols_and_folds_pitches():
    vocabulary = Vocabulary.from_symbols(["67", "60", "_", "r", "72", "60"])
    assert vocabulary.symbols == [HOLD, REST, SONG_END, "60", "67", "72"]
    assert vocabulary.indices(["60", "_"]) == [3, 0]
    assert vocabulary.fold("84") == "72"
    assert vocabulary.fold("55") == "67"
    with pytest.raises(EncodingError, match="'61'"):
        vocabulary.indices(["61"])
    with pytest.raises(EncodingError, match="more than once"):
        Vocabulary(["_", "_"])
