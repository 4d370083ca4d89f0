"""The song cache: counts of what followed each context earlier in the song, mixed over the LSTM."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from improvd.core import songcache
from improvd.core.songcache import ALPHA, MAX_ORDER, MIN_ORDER, NOTE_MAX, WINDOW, SongCache

V = 12
END = 0
BASE = np.full(V, 1.0 / V)
ONSETS = np.arange(V) != END  # every symbol but the song end starts a note
PHRASE = [3, 4, 5, 4, 3, 6, 7, 8, 9, 10]  # longer than MIN_ORDER, no context repeats inside it


def fed(symbols: list[int], count: bool = True, onsets: np.ndarray = ONSETS) -> SongCache:
    cache = SongCache(END, onsets)
    for index in symbols:
        cache.add(index, count)
    return cache


def test_nothing_repeated_leaves_the_lstm_alone():
    assert np.array_equal(SongCache(END, ONSETS).mix(BASE), BASE)
    assert np.allclose(fed(PHRASE).mix(BASE), BASE)  # the last context was never followed by anything


def test_a_repeated_context_pulls_towards_what_followed_it():
    steps = np.zeros(V, bool)  # no symbol starts a note: the contexts of steps alone
    cache = fed([*PHRASE, 1, 2, *PHRASE[:MIN_ORDER]], onsets=steps)
    mixed = cache.mix(BASE)
    weight = 1 / (1 + ALPHA)  # the context was seen once, with one continuation (Witten-Bell)
    assert mixed[PHRASE[MIN_ORDER]] == pytest.approx(BASE[0] * (1 - weight) + weight)
    assert mixed.sum() == pytest.approx(1.0) and mixed.argmax() == PHRASE[MIN_ORDER]
    longer = fed([*PHRASE, 1, 2, *PHRASE[: MIN_ORDER + 2]], onsets=steps).mix(BASE)  # two nested contexts now agree
    assert longer[PHRASE[MIN_ORDER + 2]] > mixed[PHRASE[MIN_ORDER]]


def test_own_symbols_move_the_context_but_are_not_counted():
    cache = fed(PHRASE)
    for index in [1, 2, *PHRASE[:MIN_ORDER]]:
        cache.add(index, count=False)
    assert cache.mix(BASE)[PHRASE[MIN_ORDER]] > 0.1  # the player's phrase is found from generated context
    generated = fed([1, 2, *PHRASE], count=False)
    for index in PHRASE[:MIN_ORDER]:
        generated.add(index, count=False)
    assert np.allclose(generated.mix(BASE), BASE)  # nothing generated was learnt


def test_a_context_that_does_not_reach_back_to_the_last_note_says_when_a_note_comes_not_which():
    """Six holds after note 3 were followed by note 4. Six holds after note 9 match them, but the note that
    followed there is a leap from 9 the song never made: the part the cache gives that match goes to all the
    notes in proportion (a note comes now), not to 4. Held after 3 again, the context reaches back to the note
    and 4 is proposed."""
    hold = 1
    onsets = np.arange(V) > hold  # the song end and the hold start no note
    song = [3, *[hold] * MIN_ORDER, 4, 5, 6, 7, 8]

    def mixed(last: int) -> np.ndarray:
        cache = SongCache(END, onsets)
        for index in [*song, last, *[hold] * MIN_ORDER]:
            cache.add(index)
        return cache.mix(BASE)

    blind = mixed(9)
    assert blind[4] == pytest.approx(blind[5]) and blind[onsets].sum() > BASE[onsets].sum()
    assert blind.sum() == pytest.approx(1.0) and blind[hold] < BASE[hold]
    again = mixed(3)
    assert again[4] > 2 * again[5]


def test_a_song_end_starts_a_new_song():
    cache = fed([*PHRASE, END, *PHRASE[:MIN_ORDER]])
    assert np.allclose(cache.mix(BASE), BASE)


def test_only_the_last_window_counts_and_the_table_stays_bounded():
    rng = np.random.default_rng(0)
    cache = fed(PHRASE)
    for index in rng.integers(1, 3, WINDOW + MAX_ORDER):  # symbols 1 and 2 only: PHRASE's contexts never recur
        cache.add(int(index))
    for index in PHRASE[:MIN_ORDER]:
        cache.add(index)
    assert cache.mix(BASE)[PHRASE[MIN_ORDER]] == pytest.approx(BASE[0])  # the phrase has left the window
    tracemalloc.start()
    try:
        full = fed([int(index) for index in rng.integers(1, V, 5 * WINDOW)])
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert size < 1_000_000, size  # a table of every context up to MAX_ORDER would take about 8 MB
    assert len(full._history) <= 2 * (WINDOW + MAX_ORDER)
    assert len(full._notes) <= 2 * (WINDOW + NOTE_MAX)


HOLD = 1
NOTES = np.arange(V) > HOLD  # the song end and the hold start no note
LINE = [3, 5, 7, 8, 6, 4]  # a line of notes, no note twice


def played(rhythm: list[int], notes: list[int] = LINE) -> list[int]:
    """``notes`` each held the steps of ``rhythm`` (1: a note, no hold)."""
    return [symbol for note, steps in zip(notes, rhythm, strict=False) for symbol in [note, *[HOLD] * (steps - 1)]]


def pitch_odds(cache: SongCache) -> np.ndarray:
    mixed = cache.mix(BASE)
    return mixed / mixed[NOTES].sum()


def test_a_line_repeated_in_another_rhythm_proposes_its_next_note(monkeypatch):
    """The line played in even 8ths, then again dotted: no context of steps repeats, but after its first four
    notes the fifth gets more of the odds of which note starts; the odds of whether one starts stay the LSTM's."""
    song = [*played([2] * 6), *[HOLD] * 4, *played([3, 1, 3, 1])]
    with monkeypatch.context() as patch:
        patch.setattr(songcache, "NOTE_TRUST", 0.0)
        steps_alone = fed(song, onsets=NOTES).mix(BASE)
    cache = fed(song, onsets=NOTES)
    mixed = cache.mix(BASE)
    assert np.allclose(steps_alone, BASE)  # the steps' contexts did not find the repeat
    assert mixed[NOTES].sum() == pytest.approx(BASE[NOTES].sum()) and mixed.sum() == pytest.approx(1.0)
    assert pitch_odds(cache)[6] > 3 * pitch_odds(cache)[9]


def test_a_longer_run_of_notes_is_trusted_more():
    def odds(shared: int) -> float:
        return pitch_odds(fed([*played([2] * 6), 9, 10, *played([1] * shared, LINE[:shared])], onsets=NOTES))[
            LINE[shared]
        ]

    assert odds(1) < odds(2) < odds(4) < 1


def test_own_notes_move_the_note_context_but_are_not_counted():
    generated = fed(played([2] * 6), count=False, onsets=NOTES)
    for index in played([1] * 3):
        generated.add(index, count=False)
    assert np.allclose(generated.mix(BASE), BASE)
    cache = fed(played([2] * 6), onsets=NOTES)
    for index in played([1] * 3):
        cache.add(index, count=False)
    assert pitch_odds(cache)[LINE[3]] > 2 * pitch_odds(cache)[9]


def test_the_notes_restored_from_a_snapshot():
    cache = fed(played([2] * 6), onsets=NOTES)
    snapshot = cache.snapshot()
    before = cache.mix(BASE)
    for index in played([1] * 3):
        cache.add(index)
    assert not np.allclose(cache.mix(BASE), before)
    cache.restore(snapshot)
    assert np.allclose(cache.mix(BASE), before)


def test_notes_older_than_the_window_are_forgotten():
    cache = fed(played([2] * 6), onsets=NOTES)
    for _ in range(WINDOW):
        cache.add(HOLD)
    for index in played([1] * 3):
        cache.add(index)
    assert np.allclose(cache.mix(BASE), BASE)


def test_the_note_runs_fall_silent_in_the_cadence_bar():
    """While ``quiet`` (the answer's last bar) the call's line does not lead the answer on past its cadence."""
    cache = fed([*played([2] * 6), *[HOLD] * 4, *played([3, 1, 3, 1])], onsets=NOTES)
    cache.quiet = True
    assert np.allclose(cache.mix(BASE), BASE)
    cache.quiet = False
    assert pitch_odds(cache)[6] > 3 * pitch_odds(cache)[9]


def test_a_context_of_steps_counts_only_where_what_followed_fell_at_the_same_place_in_the_beat():
    """A note held 7 steps from the beat's second 16th, then the next (index 5) on the beat: after a note held as
    long from a beat, the same holds say "a note now" a 16th before the next beat, which moved answers off it.
    Given the beat (4 steps), what followed counts only a whole number of beats back."""
    earlier = [HOLD, 3, *[HOLD] * 6, 5, HOLD, HOLD, HOLD]  # 3 at step 1, 5 at step 8
    from_the_beat = fed([*earlier, 4, *[HOLD] * 6], onsets=NOTES)  # 4 at step 12: the next step is 19
    from_its_second_16th = fed([*earlier, HOLD, 4, *[HOLD] * 6], onsets=NOTES)  # 4 at step 13: the next is 20
    assert from_the_beat.mix(BASE)[NOTES].sum() > BASE[NOTES].sum()  # without the beat: a note, wherever
    assert np.allclose(from_the_beat.mix(BASE, 19, 4), BASE)  # 11 steps after the place that followed: not there
    assert from_its_second_16th.mix(BASE, 20, 4)[NOTES].sum() > BASE[NOTES].sum()  # 12 after it: there
