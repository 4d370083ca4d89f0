"""The British-Isles collections of music21 as a training corpus, and their tunes by ident (as played checks)."""

from __future__ import annotations

import pytest

from improvd.offline.notation import COLLECTIONS, ScoreError, collection_files, collection_tune, essen_tune
from training.as_played import test_calls as calls_for
from training.corpus import find_files


def test_the_british_corpus_is_the_three_collections_and_nothing_else_of_music21():
    files = collection_files("british")
    assert {path.parent.name for path in files} == {"ryansMammoth", "airdsAirs", "miscFolk"}
    assert len(files) == 1059 + 6 + 2
    assert find_files(None, None, "british") == ("british", files)
    assert COLLECTIONS["essen"] == ("essenFolksong",)


def test_an_unknown_corpus_is_a_clear_error():
    with pytest.raises(ScoreError, match="no corpus 'oneills1850' \\(one of essen, british\\)"):
        collection_files("oneills1850")


def test_a_tune_of_a_book_is_found_by_its_number_written_with_zeros():
    assert collection_tune("british", "book1#2").score.metadata.title == "Quick Step. 25th Regt."
    assert collection_tune("essen", "erk5#5").score.metadata.title == essen_tune("erk5#5").score.metadata.title
    with pytest.raises(ScoreError, match="no tune 'book9#1' in corpus 'british'"):
        collection_tune("british", "book9#1")


def test_british_test_tunes_become_calls_with_their_real_bars():
    calls = calls_for(["book1#2", "LanigansBallJig", "nosuch#1"], "british")
    assert [case.ident for case in calls] == ["book1#2", "LanigansBallJig"]
    assert calls[1].meter == "6/8" and calls[1].real
