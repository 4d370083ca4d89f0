"""Corpus parsing (failures skipped and counted, cache), the split, windows and the n-gram baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from improvd.core.encoding import SONG_END, Vocabulary
from training import corpus as corpus_module
from training.corpus import load_corpus
from training.dataset import split_tunes, stream_of, windows
from training.ngram import NGram

GOOD_ABC = """X:1
T:Kept
M:4/4
L:1/8
K:G
G2 AB c2 d2 | B4 G4 |

X:2
T:Long final note
M:3/4
L:1/8
K:D
D2 F2 A2 | d12 |

X:3
T:Minor
M:4/4
L:1/8
K:Am
A2 cB A2 E2 | A8 |
"""


@pytest.fixture
def score_folder(tmp_path):
    folder = tmp_path / "scores"
    folder.mkdir()
    (folder / "good.abc").write_text(GOOD_ABC, encoding="utf-8")
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (folder / "empty.musicxml").write_text("<score-partwise><part-list/>", encoding="utf-8")
    (folder / "notes.txt").write_text("not a score", encoding="utf-8")
    return folder


def test_folder_corpus_keeps_transposes_drops_and_skips(score_folder, tmp_path):
    found = load_corpus(str(score_folder), cache_dir=tmp_path / "cache", workers=2, progress=False)
    assert sorted(found.songs) == ["good#1", "good#3"]
    assert found.dropped == {"duration 6": 1}  # d12 at L:1/8 lasts 6 quarter lengths
    assert sorted(found.failed_files) == [str(score_folder / "broken.mid"), str(score_folder / "empty.musicxml")]
    assert found.files == ["broken", "empty", "good"]  # .txt is not a score
    # G major -> C major by the smallest interval (up a fourth): G4 A4 B4 c5 becomes C5 D5 E5 F5
    assert found.songs["good#1"][:10] == ["72", "_", "_", "_", "74", "_", "76", "_", "77", "_"]
    assert found.songs["good#3"][0] == "69"  # A minor stays A minor
    summary = found.summary()
    assert summary["songs"] == 2 and summary["dropped"] == {"duration 6": 1}


def test_second_load_comes_from_cache(score_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_corpus(str(score_folder), cache_dir=cache, workers=1, progress=False)
    assert len(list(cache.glob("corpus-*.json"))) == 1

    def no_parsing(*_args):
        raise AssertionError("parsed again")

    monkeypatch.setattr(corpus_module, "parse_file", no_parsing)
    second = load_corpus(str(score_folder), cache_dir=cache, workers=1, progress=False)
    assert second.songs == first.songs and second.dropped == first.dropped
    assert second.failed_files == first.failed_files


def test_cache_key_changes_with_options_and_files(score_folder, tmp_path):
    files = sorted(score_folder.glob("*.abc"))
    key = corpus_module.cache_key("x", files, None)
    assert corpus_module.cache_key("x", files, 5) != key
    (score_folder / "good.abc").write_text(GOOD_ABC + "\n", encoding="utf-8")
    assert corpus_module.cache_key("x", files, None) != key


def test_named_essen_file_with_tune_cap(tmp_path):
    found = load_corpus(names=["kinder0"], max_tunes=5, cache_dir=tmp_path, workers=1, progress=False)
    assert len(found.songs) + sum(found.dropped.values()) == 5
    assert all(ident.startswith("kinder0#") for ident in found.songs)
    cached = json.loads(next(tmp_path.glob("corpus-*.json")).read_text(encoding="utf-8"))
    assert cached["songs"] == found.songs


def test_unknown_file_and_folder_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"no such file.*nosuchfile"):
        load_corpus(names=["nosuchfile"], cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="missing: not a folder of scores"):
        load_corpus(str(tmp_path / "missing"), cache_dir=tmp_path, progress=False)


def test_split_is_deterministic_disjoint_and_complete():
    idents = [f"t#{i}" for i in range(200)]
    split = split_tunes(idents, seed=7)
    assert split == split_tunes(list(reversed(idents)), seed=7)
    assert split != split_tunes(idents, seed=8)
    assert [len(split[p]) for p in ("train", "validation", "test")] == [180, 10, 10]
    assert sorted(split["train"] + split["validation"] + split["test"]) == sorted(idents)


def test_windows_predict_the_next_step():
    vocabulary = Vocabulary.from_symbols(["60", "62"])
    stream = stream_of([["60", "_", "62"], ["62", "r"]], vocabulary, 4)
    assert len(stream) == 4 + 3 + 4 + 2 + 4
    assert stream[:5].tolist() == [vocabulary.index[SONG_END]] * 4 + [vocabulary.index["60"]]
    x, y = windows(stream, 4, offset=1)
    assert x.shape == y.shape == (3, 4)  # (17 - 1 - 1) // 4 whole windows
    assert np.array_equal(x.ravel()[1:], y.ravel()[:-1])
    assert np.array_equal(x.ravel(), stream[1:13]) and np.array_equal(y.ravel(), stream[2:14])
    with pytest.raises(ValueError, match="song_gap must be at least 1"):
        stream_of([["60"]], vocabulary, 0)


def test_ngram_probabilities_and_order_choice():
    rng = np.random.default_rng(0)
    # a process where the next symbol is fixed by the two before it: order 3 wins
    table = rng.integers(0, 5, size=(5, 5))
    sequences = []
    for _ in range(40):
        sequence = [int(rng.integers(5)), int(rng.integers(5))]
        for _ in range(60):
            sequence.append(int(table[sequence[-2], sequence[-1]]))
        sequences.append(sequence)
    ngram = NGram(6, 6).fit(sequences[:30])
    p = ngram.distribution([1, 2, 3])
    assert p.shape == (6,) and abs(p.sum() - 1) < 1e-12 and p.min() > 0  # symbol 5 never seen, still > 0
    scores = ngram.choose_order(sequences[30:], start=2)
    assert ngram.order >= 3
    assert scores[3] < scores[2] < scores[1]
    assert ngram.distribution(sequences[30][:10]).argmax() == sequences[30][10]
