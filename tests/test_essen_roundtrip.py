"""Every acceptable Essen tune from music21's corpus survives encode -> decode unchanged."""

from __future__ import annotations

import random

import pytest

from improvd.core.encoding import decode, encode, transpose, transposition_to_c, unacceptable_durations
from improvd.offline.notation import ESSEN_DIR, essen_files, essen_tune, key_of, melody_of, tunes_in

SAMPLE_FILES = ("erk5", "boehme10", "kinder0")  # fixed: German, Bohemian and children's songs, 640 acceptable tunes


def roundtrip(files) -> tuple[int, int]:
    checked = skipped = 0
    for path in files:
        for tune in tunes_in(path):
            melody = melody_of(tune.score, tune.ident)
            if unacceptable_durations(melody):
                skipped += 1
                continue
            tonic, mode = key_of(tune.score)
            shift = transposition_to_c(tonic, mode)
            moved = transpose(melody, shift)
            assert decode(encode(moved)) == moved, tune.ident
            assert transpose(decode(encode(moved)), -shift) == melody, tune.ident
            checked += 1
    return checked, skipped


def test_fixed_sample_of_essen_tunes_roundtrips():
    files = [p for p in essen_files() if p.stem in SAMPLE_FILES]
    assert len(files) == len(SAMPLE_FILES)
    checked, skipped = roundtrip(files)
    assert (checked, skipped) == (640, 15)  # every acceptable tune checked, the 15 with other durations skipped


def test_random_tune_from_each_file_has_notes():
    rng = random.Random(7)
    for path in rng.sample(essen_files(), 3):
        tunes = list(tunes_in(path))
        assert tunes, path
        assert any(n.pitch is not None for n in melody_of(rng.choice(tunes).score))


@pytest.mark.corpus
def test_whole_essen_collection_roundtrips():
    checked, skipped = roundtrip(essen_files())
    assert checked > 3000, (checked, skipped)


def test_one_tune_read_alone_equals_the_collections():
    """essen_tune parses only the tune's own lines; the melody and key are those of the whole file's parse."""
    for stem in ("erk5", "kinder0"):
        for tune in list(tunes_in(ESSEN_DIR / f"{stem}.abc"))[::25]:
            alone = essen_tune(tune.ident).score
            assert melody_of(alone) == melody_of(tune.score), tune.ident
            assert key_of(alone) == key_of(tune.score), tune.ident
