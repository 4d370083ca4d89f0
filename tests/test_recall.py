"""Session memory: the player's earlier calls, in the model's transposition, mixed in under the present call."""

from __future__ import annotations

import numpy as np
import pytest

from improvd.core.engine import Engine, Settings
from improvd.core.model import load_model
from improvd.core.recall import ALPHA, CALL_STEPS, FADE, MATCHES, MIN_ORDER, SessionMemory
from improvd.core.songcache import SongCache
from tests.helpers import call, run

V = 12
BASE = np.full(V, 1.0 / V)
SYMBOLS = [str(n) for n in range(V)]  # symbol "k" is index k
MOTIF = ["3", "4", "5", "6", "7", "8"]
INDEX = {"_": 0, "r": 1, **{str(n): n for n in range(2, V)}}  # a hold is index 0, a rest 1


def memory(*calls: list[str], phrases: int = 8) -> SessionMemory:
    kept = SessionMemory(phrases)
    for symbols in calls:
        kept.remember(symbols, 0)
    kept.attune(0, lambda symbol, _shift: INDEX[symbol])
    return kept


def test_an_earlier_call_pulls_towards_what_followed_the_same_context():
    kept = memory(MOTIF)
    mixed = kept.mix(BASE, [1, 2, *map(int, MOTIF[:MIN_ORDER])])
    weight = 1 / (1 + ALPHA)  # seen once, one continuation (Witten-Bell)
    assert mixed[int(MOTIF[MIN_ORDER])] == pytest.approx(BASE[0] * (1 - weight) + weight)
    assert mixed.sum() == pytest.approx(1.0)
    assert np.array_equal(kept.mix(BASE, [9, 9, 9, 9]), BASE)  # a context no call held leaves the LSTM alone
    kept.quiet = True  # the answer's last bar
    assert np.array_equal(kept.mix(BASE, [1, 2, *map(int, MOTIF[:MIN_ORDER])]), BASE)


def test_older_calls_fade():
    continuation = [*MOTIF[:MIN_ORDER], "10"]
    other = [*MOTIF[:MIN_ORDER], "11"]
    context = [int(s) for s in MOTIF[:MIN_ORDER]]
    mixed = memory(continuation, other).mix(BASE, context)  # "11" was played last, "10" a phrase before
    assert mixed[10] < mixed[11]
    assert (mixed[10] - mixed[0]) / (mixed[11] - mixed[0]) == pytest.approx(FADE)  # 0: what neither proposes


def test_the_closing_silence_is_not_remembered_and_off_keeps_nothing():
    kept = memory(["3", "_", "4", "_", "5", "r", "_", "_"])
    assert np.array_equal(kept.mix(BASE, [3, 0, 4, 0, 5]), BASE)  # nothing followed 5 in the call
    assert len(memory(MOTIF, phrases=0)) == 0


def test_it_holds_the_last_phrases_and_its_cost_stays_bounded():
    rng = np.random.default_rng(0)
    kept = SessionMemory(4)
    for _ in range(1000):  # a long session of long calls
        kept.remember([str(s) for s in rng.integers(0, V, 4 * CALL_STEPS)], 0)
    kept.attune(0, lambda symbol, _shift: int(symbol))
    assert len(kept) == 4
    assert sum(len(c.indices) for c in kept._calls) == 4 * CALL_STEPS
    riff = [str(s) for s in rng.integers(0, V, 8)]
    for _ in range(4):  # a riff played over and over: each context recurs hundreds of times
        kept.remember(riff * (CALL_STEPS // len(riff)), 0)
    kept.attune(0, lambda symbol, _shift: int(symbol))
    assert len(kept._match_lengths([int(s) for s in riff])) == MATCHES  # a step follows MATCHES at most
    kept.keep(2)
    assert len(kept) == 2
    kept.keep(0)
    assert len(kept) == 0


def test_a_call_whose_notes_lie_in_the_present_key_comes_back_as_played_else_moved_by_its_own():
    """F A G A B-flat C, answered in F major (moved by -5 onto the white keys), then heard by an answer in B-flat
    major (+2), whose collection holds all its notes: at the pitches played. By an answer in B major (+1), which
    does not hold F: moved by its own transposition, as C E D E F G."""
    base = np.full(128, 1.0 / 128)
    kept = SessionMemory(8)
    kept.remember(["65", "69", "67", "69", "70", "72"], -5)
    kept.attune(2, lambda symbol, shift: int(symbol) + shift)
    assert kept.mix(base, [67, 71, 69]).argmax() == 71  # F A G then A, in B-flat's transposition
    assert np.array_equal(kept.mix(base, [60, 64, 62]), base)
    kept.attune(1, lambda symbol, shift: int(symbol) + shift)
    assert kept.mix(base, [60, 64, 62]).argmax() == 64
    assert np.array_equal(kept.mix(base, [67, 71, 69]), base)


def test_another_vocabulary_starts_empty_and_the_same_one_keeps_the_calls():
    kept = memory(MOTIF)
    kept.bind(SYMBOLS)
    kept.remember(MOTIF, 0)
    kept.bind(list(SYMBOLS))
    assert len(kept) == 1
    kept.bind([*SYMBOLS, "x"])
    assert len(kept) == 0


def test_the_song_cache_mixes_the_memory_under_the_present_song():
    kept = memory([*MOTIF, "10"])
    cache = SongCache(0, kept)
    for index in map(int, MOTIF):
        cache.add(index)
    assert cache.mix(BASE).argmax() == 10
    assert np.allclose(SongCache(0).mix(BASE), BASE)


# --- through the engine ----------------------------------------------------------------------------------------

STEP = 60 / 120 / 4
D_MAJOR = [(62, 0, 2), (66, 2, 2), (69, 4, 2), (74, 6, 2), (73, 8, 2), (69, 10, 2), (67, 12, 1)]  # to white: -2
C_MAJOR = [(72, 0, 2), (71, 2, 2), (65, 4, 2), (62, 6, 2), (60, 8, 2), (64, 10, 2), (67, 12, 2)]  # B, F: C only
LATER = 128  # the second call starts here, the first one's answer long over


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def session(model, memory_on: bool, forget: bool = False) -> tuple[list[tuple[int, int]], Engine]:
    """The first call in D, then one in C that stops inside the first one's motif (C E G of D F# A moved onto
    the white keys): the second answer's notes (pitch, step) and the engine."""
    settings = Settings(bpm=120, max_call_steps=13, response_steps=22, session_memory=memory_on)
    engine = Engine(model, settings, seed=4)
    first = call(D_MAJOR)
    second = [(t + LATER * STEP, m) for t, m in call(C_MAJOR)]
    if forget:
        run(engine, first, LATER - 8)
        engine.forget(0.0)
        assert engine.remembered == 0
        first = []
    sent, _ = run(engine, first + second, LATER + 40)
    answer = [(t.message.note, round(t.time / STEP)) for t in sent if t.message.type == "note_on"]
    return [(p, s - LATER) for p, s in answer if s > LATER], engine


def test_an_answer_continues_the_motif_of_an_earlier_call_in_another_key(model, monkeypatch):
    """Trusted fully (and the echo silent), the memory continues the first call's motif from the second call's
    C E G: the first call was in D, both moved onto the white keys meet there, and the answer is in C."""
    monkeypatch.setattr("improvd.core.recall.ALPHA", 1e-9)
    monkeypatch.setattr("improvd.core.echo.WEIGHT", 0.0)
    answer, engine = session(model, memory_on=True)
    assert answer[:3] == [(72, 14), (71, 16), (67, 18)]  # the last bar (steps 20-35) is the cadence's
    assert engine.remembered == 2
    assert session(model, memory_on=False)[0][:3] != answer[:3]
    assert session(model, memory_on=False)[1].remembered == 0
    assert session(model, memory_on=True, forget=True)[0][:3] != answer[:3]


def test_turning_it_off_forgets_and_a_change_of_size_keeps_the_last(model):
    _, engine = session(model, memory_on=True)
    engine.update(temperature=0.5)  # what a reload (SIGHUP) does: the running memory is kept
    assert engine.remembered == 2
    engine.update(memory_phrases=1)
    assert engine.remembered == 1
    engine.update(session_memory=False)
    assert engine.remembered == 0
    with pytest.raises(ValueError, match="memory_phrases = 0 is not allowed"):
        engine.update(memory_phrases=0)


F_MAJOR = [(65, 0, 2), (69, 2, 2), (67, 4, 2), (69, 6, 2), (70, 8, 2), (72, 10, 2), (77, 12, 1)]  # to white: -5
B_FLAT = [(70, 0, 2), (75, 2, 2), (74, 4, 2), (72, 6, 2), (65, 8, 2), (69, 10, 2), (67, 12, 2)]  # to white: +2


def test_an_earlier_call_in_the_present_calls_collection_comes_back_at_the_pitches_played(model, monkeypatch):
    """A call in F, then one in B-flat that stops on the first one's F A G: trusted fully (the echo silent), the
    memory continues at the pitches played (A B-flat C). Moved by its own transposition the first call met the
    second as C E D, not G B A, and the memory had nothing to continue."""
    monkeypatch.setattr("improvd.core.recall.ALPHA", 1e-9)
    monkeypatch.setattr("improvd.core.echo.WEIGHT", 0.0)
    settings = Settings(bpm=120, max_call_steps=13, response_steps=22, session_memory=True)
    engine = Engine(model, settings, seed=4)
    second = [(t + LATER * STEP, m) for t, m in call(B_FLAT)]
    sent, _ = run(engine, call(F_MAJOR) + second, LATER + 40)
    answer = [(t.message.note, round(t.time / STEP) - LATER) for t in sent if t.message.type == "note_on"]
    assert [(p, s) for p, s in answer if s > 0][:3] == [(69, 14), (70, 16), (72, 18)]
