"""Style auto: every candidate follows the call and the one that predicted it best answers (improvd.core.styles)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import re
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest

from improvd.core import styles as styles_module
from improvd.core.encoding import SONG_END
from improvd.core.engine import Engine, Settings
from improvd.core.lookback import Place
from improvd.core.model import load_model
from improvd.core.runtime import LSTMRuntime
from improvd.core.simulate import drive
from improvd.core.styles import Styles
from tests.helpers import ABC, PHRASE, STEP, AsideSteps, call, run

ANSWER = 120  # boundaries: the phrase ends at 20, the answer is over well before this


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    return load_model(tiny_model_dir)


def flat(model, name: str):
    """The model with its output weights zeroed: every symbol equally likely at every step, whatever it heard."""
    weights = {**model.weights, "dense_kernel": np.zeros_like(model.weights["dense_kernel"])}
    weights["dense_bias"] = np.zeros_like(model.weights["dense_bias"])
    return dataclasses.replace(model, weights=weights, path=Path(name), card={**model.card, "name": name})


def named(model, name: str):
    return dataclasses.replace(model, path=Path(name), card={**model.card, "name": name})


def answer(engine: Engine) -> tuple[list, list]:
    return run(engine, call(PHRASE), ANSWER)


def notes(sent: list) -> list[tuple[float, int]]:
    return [(round(t.time, 9), t.message.note) for t in sent if t.message.type == "note_on"]


def hear(styles: Styles, symbols: list[str], slice_steps: int = 1) -> None:
    """The candidates hear ``symbols`` as a call, a few steps a tick."""
    styles.restart(0, symbols[:1], Place(0, 16))
    for symbol in symbols[1:]:
        styles.feed(symbol)
        styles.advance(slice_steps)


def pitch_count(model) -> int:
    return sum(symbol.isdigit() for symbol in model.vocabulary.symbols)


CALL = ["67", "_", "69", "_", "71", "_", "72", "_", "74", "_", "_", "_"] * 4


def test_the_flat_model_spends_log2_of_its_vocabulary_a_step_and_the_trained_one_less(trained):
    styles = Styles({"tiny": named(trained, "tiny"), "flat": flat(trained, "flat")})
    hear(styles, CALL)
    assert not styles.caught_up  # 1 step a tick for 2 candidates: behind
    handover = styles.choose()  # hears the rest
    assert styles.caught_up
    scores = styles.scores()
    assert scores["flat"] == pytest.approx(len(CALL) * math.log2(len(trained.vocabulary)), rel=1e-5)
    assert scores["tiny"] < scores["flat"]
    assert handover.model.name == "tiny"
    pitches = styles.bits()["flat"][1]  # bits per onset pitch: among the pitches
    assert len(pitches) == 20 and pitches == pytest.approx([math.log2(pitch_count(trained))] * 20, rel=1e-5)


def test_the_call_s_closing_silence_is_not_scored_but_its_rests_and_held_notes_are(trained):
    """The silence the player leaves at the phrase end (from the first rest after the last onset) is the player
    stopping, not the style: every model pays for it, so it only blurs the choice."""
    bits = math.log2(len(trained.vocabulary))
    for call_symbols, scored in [
        (CALL + ["r"] + ["_"] * 7, len(CALL)),  # the held last note counts, the silence after it not
        (["67", "r", "_", "69"] + ["_"] * 3 + ["r", "_", "r", "_"], 7),  # the rest inside the call counts
        (["67", "r", "_", "69"], 4),  # a call that ends on an onset: all of it
    ]:
        styles = Styles({"flat": flat(trained, "flat")})
        hear(styles, call_symbols)
        styles.choose()
        assert len(styles.bits()["flat"][0]) == scored
        assert styles.scores()["flat"] == pytest.approx(scored * bits, rel=1e-5)


def test_a_card_s_prior_moves_the_choice(trained):
    """style_prior_bits is added to the model's bits over the call: a prior that outweighs the difference wins."""
    styles = Styles({"tiny": named(trained, "tiny"), "flat": flat(trained, "flat")})
    hear(styles, CALL)
    styles.choose()
    margin = styles.scores()["flat"] - styles.scores()["tiny"]
    favoured = dataclasses.replace(flat(trained, "flat"), card={"name": "flat", "style_prior_bits": -margin - 0.01})
    styles = Styles({"tiny": named(trained, "tiny"), "flat": favoured})
    hear(styles, CALL)
    assert styles.choose().model.name == "flat"
    expected = len(CALL) * math.log2(len(trained.vocabulary)) - margin - 0.01
    assert styles.scores()["flat"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("prior", ["5", None, float("nan"), float("inf"), True, [1]])
def test_a_prior_that_is_no_finite_number_is_a_clear_error(trained, prior):
    from improvd.core.model import ModelError

    broken = dataclasses.replace(flat(trained, "flat"), card={"name": "flat", "style_prior_bits": prior})
    with pytest.raises(ModelError, match=r"model.json: style_prior_bits must be a finite number of bits, got "):
        Styles({"tiny": named(trained, "tiny"), "flat": broken})


def test_the_shipped_cards_carry_the_priors_chosen_on_the_validation_calls():
    """models/README.md: improvd-train compare --calibrate chose them (british 0, the first by name; essen +0.5 with
    the British model started from the Essen one)."""
    from improvd.core.model import DEFAULT_MODEL_DIR

    assert load_model(DEFAULT_MODEL_DIR.parent / "essen").card["style_prior_bits"] == 0.5
    assert load_model(DEFAULT_MODEL_DIR.parent / "british").card["style_prior_bits"] == 0.0


def test_a_call_that_goes_on_and_on_is_scored_on_its_last_steps(trained):
    """The phrase end's scoring costs the same whatever the call's length: its last SCORED_STEPS steps count."""
    styles = Styles({"flat": flat(trained, "flat")})
    hear(styles, CALL * 7, slice_steps=2)  # 336 steps
    styles.choose()
    assert len(styles.bits()["flat"][0]) == styles_module.SCORED_STEPS == 256


def test_every_candidate_hears_the_call_moved_and_folded_into_its_own_vocabulary(trained):
    """The handed-over runtime is in the state of one that heard a song end and the call moved by the shift."""
    styles = Styles({"tiny": named(trained, "tiny")})
    styles.restart(
        -3, ["70", "_", "72", "_", "99"], Place(0, 16)
    )  # B-flat major moved onto the white keys; 99 folded down
    handover = styles.choose()
    alone = LSTMRuntime(trained)
    vocabulary = trained.vocabulary
    song_end = vocabulary.index[SONG_END]
    expected = alone.prime([song_end] * trained.song_gap + [song_end])
    for symbol in ["67", "_", "69", "_", vocabulary.fold("96")]:
        expected = alone.step(vocabulary.index[symbol])
    np.testing.assert_array_equal(handover.logits, expected)


def test_auto_switches_to_the_model_that_predicted_the_call_and_answers_as_that_model_alone(trained):
    """The switch hands over the candidate's primed state: the answer is note for note the one the trained model
    gives when it is the only model (same seed), and response_start names it."""
    alone, alone_events = answer(Engine(named(trained, "tiny"), Settings(), seed=5))
    engine = Engine(flat(trained, "flat"), Settings(), seed=5)
    engine.set_styles(Styles({"tiny": named(trained, "tiny"), "flat": flat(trained, "flat")}))
    sent, events = answer(engine)
    start = next(e for e in events if e.name == "response_start")
    assert start.data["model"] == "tiny"
    assert next(e for e in alone_events if e.name == "response_start").data["model"] == "tiny"
    assert notes(sent) and notes(sent) == notes(alone)
    assert engine.model.name == "tiny"


# a 4-bar call in B-flat major (its collection moves the LSTM's transposition once it falls silent), in 8ths
B_FLAT = [(70 + (0, 2, 4, 5, 7, 5, 4, 2)[k % 8], 2 * k, 2) for k in range(32)]
LATE_MOVE = [(60 + 7 * (k % 2), 2 * k, 2) for k in range(31)] + [(66, 62, 2)]  # C and G, then an F sharp


def test_a_call_that_moves_the_key_is_answered_as_the_chosen_model_alone_answers_it(trained):
    """The candidates hear the call again on the new white keys while its silence passes, as the engine's spare
    LSTM does: the answer is note for note the chosen model's alone (one that moved the key through its spare)."""
    alone, alone_events = run(Engine(named(trained, "tiny"), Settings(), seed=7), call(B_FLAT), 200)
    engine = Engine(flat(trained, "flat"), Settings(), seed=7)
    unlikely = dataclasses.replace(flat(trained, "flat"), card={"name": "flat", "style_prior_bits": 100})
    engine.set_styles(Styles({"tiny": named(trained, "tiny"), "flat": unlikely}))
    sent, events = run(engine, call(B_FLAT), 200)
    start = next(e for e in events if e.name == "response_start")
    assert start.data["model"] == "tiny" and start.data["transposition"] != 0
    assert start.data == next(e for e in alone_events if e.name == "response_start").data
    assert notes(sent) and notes(sent) == notes(alone)


def test_no_tick_hears_more_than_a_slice_of_candidate_steps_and_the_phrase_end_none(trained, monkeypatch):
    """The key's move is heard again by every candidate (the call's steps so far each) a slice a tick, from the step
    it moves (while the call is played): no tick before the phrase end steps the candidates more than STYLE_STEPS
    times, and they have heard everything before it, so the phrase end only chooses (the silence rule's several
    ticks of silence; with "music" the phrase end waits for ``caught_up``: the key test above)."""
    steps: list[int] = []

    class Counting(LSTMRuntime):
        def step(self, index: int) -> np.ndarray:
            steps.append(index)
            return super().step(index)

    monkeypatch.setattr(styles_module, "LSTMRuntime", Counting)
    styles = Styles({"tiny": named(trained, "tiny"), "flat": flat(trained, "flat")})
    engine = Engine(named(trained, "tiny"), Settings(phrase_end="silence"), seed=7)
    engine.set_styles(styles)
    steps.clear()  # the candidates' song starts
    per_tick, caught_up = [], []
    for boundary in drive(engine, call(B_FLAT), 200):
        if any(e.name == "phrase_end" for e in boundary.events):
            break
        per_tick.append(len(steps))
        caught_up.append(styles.caught_up)
    heard = np.diff([0, *per_tick])
    assert heard.max() <= styles_module.STYLE_STEPS
    assert styles.shift == 2  # they hear the call moved from B-flat major onto the white keys
    assert caught_up[-1]


def test_a_listening_tick_steps_each_candidate_once_and_the_engine_s_own_lstm_not_at_all(trained, monkeypatch):
    """Under style auto a tick of the call costs one LSTM step per candidate, the call's first tick too: the song
    end each call opens with is heard once, when the candidates are made (for a model that does not hear the place
    in the bar), and the engine's own LSTM, which the chosen candidate replaces at the phrase end, rests."""
    assert trained.input != "lookback"
    candidate_steps: list[int] = []
    own_steps: list[int] = []

    def counting(into: list[int]) -> type[LSTMRuntime]:
        class Counting(LSTMRuntime):
            def step(self, index: int) -> np.ndarray:
                into.append(index)
                return super().step(index)

        return Counting

    monkeypatch.setattr(styles_module, "LSTMRuntime", counting(candidate_steps))
    styles = Styles({"tiny": named(trained, "tiny"), "flat": flat(trained, "flat")})
    engine = Engine(named(trained, "tiny"), Settings(), seed=7, predictor=counting(own_steps))
    engine.set_styles(styles)
    second = [(time + ANSWER * STEP, message) for time, message in call(PHRASE)]  # after the first's answer
    candidate_steps.clear()
    own_steps.clear()
    listening, heard, own, moved = False, [], [], []
    shift, behind = styles.shift, False
    for boundary in drive(engine, call(PHRASE) + second, 2 * ANSWER):
        listening = listening or any(abs(boundary.time - start) < STEP / 2 for start in (STEP, (ANSWER + 1) * STEP))
        if any(e.name == "phrase_end" for e in boundary.events):
            listening = False
        if listening:
            heard.append(len(candidate_steps))
            own.append(len(own_steps))
            # a moved key is heard again, a slice a tick (the test above), till the candidates have caught up
            moved.append(styles.shift != shift or behind)
        shift, behind = styles.shift, not styles.caught_up
        candidate_steps.clear()
        own_steps.clear()
    assert len(heard) == 2 * 19  # each call's ticks before its phrase end's
    assert heard[0] == heard[19] == 2  # the first tick of each call too
    steady = [count for tick, count in enumerate(heard) if tick % 19 < 12 and not moved[tick]]
    assert steady and set(steady) == {2}
    assert sum(own) == 0


def nudged(model, name: str, seed: int):
    """The model with its output weights moved a little: another model of the same vocabulary, as good as it."""
    rng = np.random.default_rng(seed)
    kernel = model.weights["dense_kernel"] * rng.uniform(0.97, 1.03, model.weights["dense_kernel"].shape)
    weights = {**model.weights, "dense_kernel": kernel.astype(np.float32)}
    return dataclasses.replace(model, weights=weights, path=Path(name), card={**model.card, "name": name})


def heard_but(styles: Styles, symbols: list[str], left: int) -> None:
    """The candidates given ``symbols`` as a call and hearing all but about ``left`` steps of it each."""
    styles.restart(0, symbols[:1], Place(0, 16))
    for symbol in symbols[1:]:
        styles.feed(symbol)
    while styles.behind > left * styles.hearings:
        styles.advance(1)  # the candidate furthest behind first


def test_the_phrase_end_hears_the_rest_of_the_call_only_for_the_candidates_that_may_lead(trained, monkeypatch):
    """A candidate that has spent more bits on the call heard so far than the leader on the whole call cannot lead
    (bits are never negative): the phrase end does not hear the rest of the call for it."""
    stepped: list[str] = []

    class Counting(LSTMRuntime):
        def step(self, index: int) -> np.ndarray:
            stepped.append("tiny" if self._dense_kernel.any() else "flat")
            return super().step(index)

    monkeypatch.setattr(styles_module, "LSTMRuntime", Counting)
    styles = Styles({"flat": flat(trained, "flat"), "tiny": named(trained, "tiny")})
    heard_but(styles, CALL, left=3)
    stepped.clear()
    assert styles.choose().model.name == "tiny"
    assert stepped == ["tiny"] * 3


@pytest.mark.parametrize("seed", range(12))
def test_the_phrase_end_s_choice_is_the_one_every_candidate_heard_to_the_end_would_make(trained, seed):
    """Models of the same vocabulary, as good as each other, each call ending in a closing silence (unscored) of
    up to 9 steps or going on past the scored window, a few steps left to hear: no candidate's ``bound`` is above
    the score it reaches, and the choice and the handed-over logits are those of candidates that heard everything."""
    rng = np.random.default_rng(seed)
    models = {name: nudged(trained, name, seed * 3 + k) for k, name in enumerate(("a", "b", "c"))}
    notes = [str(int(n)) for n in rng.integers(60, 73, 40)]
    symbols = [s for n in notes for s in [n, *["_"] * int(rng.integers(0, 3))]]
    symbols = symbols * (8 if seed % 3 == 0 else 1) + ["r", *["_"] * int(rng.integers(0, 9))][: seed % 4 * 3]
    everything = Styles(models)
    hear(everything, symbols, slice_steps=len(models))
    expected = everything.scores()
    chosen = everything.choose()
    for left in (1, 4, 9):
        styles = Styles(models)
        heard_but(styles, symbols, left)
        assert all(c.bound() <= expected[c.name] for c in styles._candidates)
        handover = styles.choose()
        assert handover.model is chosen.model
        np.testing.assert_array_equal(handover.logits, chosen.logits)
        assert styles.scores() == expected


@pytest.mark.parametrize("way", ["never", "at once", "a slice a tick"])
def test_what_the_aside_thread_did_or_did_not_do_the_choice_is_the_same(trained, way):
    """Jobs handed aside and never run, run at once, or run a slice a tick (some finished, some not when the phrase
    end comes, steps queued meanwhile): the scores and the handed-over logits are those heard without ``aside``."""
    models = {"tiny": named(trained, "tiny"), "flat": flat(trained, "flat")}
    alone = Styles(models)
    hear(alone, CALL)
    expected = alone.choose().logits, alone.scores()
    styles = Styles(models)
    running: list = []
    styles.aside = {
        "never": lambda job: None,
        "at once": lambda job: [None for _ in job.slices()],
        "a slice a tick": lambda job: running.append(job.slices()),
    }[way]
    styles.restart(0, CALL[:1], Place(0, 16))
    for symbol in CALL[1:]:
        styles.feed(symbol)
        styles.advance(1)
        for slices in running:
            next(slices, None)
    handover = styles.choose()
    np.testing.assert_array_equal(handover.logits, expected[0])
    assert styles.scores() == expected[1] and styles.caught_up and not styles.busy_aside


def test_the_steps_heard_of_the_last_call_are_let_go_on_the_aside_thread(trained):
    """A call's first tick restarts every candidate: what each heard of the last call (an array a step) is freed by
    the first job handed aside after it, not on the timing thread (50 microseconds of that tick, three candidates)."""
    styles = Styles({"tiny": named(trained, "tiny"), "flat": flat(trained, "flat")})
    handed: list = []
    styles.aside = handed.append
    hear(styles, CALL)
    for job in handed:
        for _ in job.slices():
            pass
    styles.choose()
    last_calls = [weakref.ref(candidate._heard) for candidate in styles._candidates]
    handed.clear()
    styles.restart(0, CALL[:1], Place(0, 16))
    styles.feed(CALL[1])
    styles.advance(2 * styles.hearings)
    assert len(handed) == styles.hearings
    assert all(ref() is not None for ref in last_calls)  # kept by the jobs handed, not freed here
    for job in handed:
        next(job.slices())
    assert all(ref() is None for ref in last_calls)


@pytest.mark.parametrize("way", ["never", "at once", "between ticks", "thread"])
@pytest.mark.parametrize("played", ["b flat", "late move"])
def test_with_an_aside_thread_the_candidates_hear_the_call_there_and_the_answer_is_the_same(
    trained, monkeypatch, way, played
):
    """In the daemon the candidates' steps are handed to its aside thread: whether that thread does none of them
    (choose hears them), all at once, between ticks, or as a real thread gets to them, the phrase end falls on the
    same tick and the answer is note for note the one heard on the timing thread alone; here the call moves the key,
    heard again, moved. Done between ticks, no tick of the call steps a candidate on the timing thread (before, the
    one its key moved at heard the call so far again there, and the silence its rest)."""
    from improvd.daemon.aside import Aside

    steps = AsideSteps()
    monkeypatch.setattr(styles_module, "LSTMRuntime", steps.runtime)

    def answered(aside) -> tuple[list, list, list[int]]:
        engine = Engine(flat(trained, "flat"), Settings(), seed=7, aside=aside)
        engine.set_styles(Styles({"tiny": named(trained, "tiny"), "flat": flat(trained, "flat")}))
        steps.take()  # their song starts
        sent, ends, per_tick = [], [], []
        for boundary in drive(engine, call({"b flat": B_FLAT, "late move": LATE_MOVE}[played]), 200):
            sent += boundary.sent
            ends += [boundary.time for e in boundary.events if e.name == "phrase_end"]
            per_tick.append(steps.take())
            steps.between_ticks()
        return notes(sent), ends, per_tick

    expected, expected_ends, _ = answered(None)
    ways = {
        "never": lambda work: None,
        "at once": lambda work: [None for _ in work.slices()],
        "between ticks": steps.handed.append,
        "thread": Aside(),
    }
    got, ends, per_tick = answered(ways[way])
    assert expected and got == expected and ends == expected_ends
    if way == "between ticks" and played == "b flat":
        played = B_FLAT[-1][1] + B_FLAT[-1][2]  # the call's last step
        stepped = [count for count in per_tick[:played] if count]
        phrase_end = round(ends[0] / STEP)  # the boundary's index (whose tick draws the answer's first steps)
        assert not stepped and not sum(per_tick[:phrase_end])  # its silence too: all on the thread aside


def test_a_key_moved_in_the_call_s_last_16ths_is_heard_aside_by_the_phrase_end(trained, monkeypatch):
    """With the aside thread each candidate's whole queue is handed over at once (the leave, ``behind``, keeps its
    pace): a 4-bar call whose key moves two 16ths before its phrase end (the F sharp) is heard again aside by then,
    and choosing steps no candidate on the timing thread (handed over at the leave's pace, what was left was heard in
    ``choose``: up to 11 ms with the shipped models)."""
    steps = AsideSteps()
    monkeypatch.setattr(styles_module, "LSTMRuntime", steps.runtime)
    engine = Engine(flat(trained, "flat"), Settings(), seed=7, aside=steps.handed.append)
    engine.set_styles(Styles({"tiny": named(trained, "tiny"), "twin": named(trained, "twin")}))  # both may lead
    restarts, choosing, ticks = [], [], [0]
    restart, choose = Styles.restart, Styles.choose

    def restarting(self, shift, symbols, place):
        restarts.append(ticks[0])
        restart(self, shift, symbols, place)

    def counting(self):
        steps.take()
        handover = choose(self)
        choosing.append(steps.take())
        return handover

    monkeypatch.setattr(Styles, "restart", restarting)
    monkeypatch.setattr(Styles, "choose", counting)
    for _ in drive(engine, call(LATE_MOVE), 80):
        steps.between_ticks()
        ticks[0] += 1
    assert restarts[-1] >= 62  # heard again from the F sharp on
    assert choosing == [0]


def test_calls_in_every_key_are_answered_the_same_with_the_aside_thread_or_without(trained):
    """What the engine sends and tells hangs on the call alone, not on whether the candidates' steps went aside (the
    daemon) or not (``improvd continue``, evaluate): 24 seeded calls of 4 bars whose last note moves the key, the
    jobs handed aside run between ticks."""

    def played(aside, seed: int) -> tuple[list, list]:
        rng = np.random.default_rng(seed)
        engine = Engine(named(trained, "tiny"), Settings(meter=("4/4", "3/4", "6/8")[seed % 3]), seed=seed, aside=aside)
        engine.set_styles(Styles({"tiny": named(trained, "tiny"), "twin": named(trained, "twin")}))
        bars = 4 * (16, 12, 12)[seed % 3]  # a call of 4 bars whose last note moves the key: heard again late
        tonic, last = int(rng.integers(55, 67)), int(rng.integers(1, 12))  # a tonic and its fifth tie many keys
        notes = [(tonic + 7 * (k % 2) + (last if k == bars // 2 - 1 else 0), 2 * k, 2) for k in range(bars // 2)]
        sent, events = [], []
        for boundary in drive(engine, call(notes), 160):
            sent += [(round(t.time, 9), str(t.message)) for t in boundary.sent]
            events += [(round(e.time, 9), e.name, sorted(e.data.items())) for e in boundary.events]
            for job in handed:
                for _ in job.slices():
                    pass
            handed.clear()
        return sent, events

    handed: list = []
    for seed in range(24):
        assert played(handed.append, seed) == played(None, seed), seed


def test_a_switch_to_a_model_of_another_vocabulary_keeps_the_session_memory(trained, tmp_path):
    """The earlier calls are kept as played: the model auto switches to hears them in its own vocabulary."""
    from tests.helpers import write_model

    other = load_model(write_model(tmp_path / "other"))
    assert other.vocabulary.symbols != trained.vocabulary.symbols
    engine = Engine(named(trained, "tiny"), Settings(), seed=3)
    second = [(time + ANSWER * STEP, message) for time, message in call(PHRASE)]  # after the first's answer
    switched = []
    for boundary in drive(engine, call(PHRASE) + second, 2 * ANSWER):
        if any(e.name == "response_end" for e in boundary.events) and not switched:
            engine.set_styles(Styles({"other": other}))
            switched.append(boundary.time)
    assert engine.model is other and len(engine._recall) == 2  # both calls, the first heard by tiny


def test_a_call_played_over_the_answer_in_another_key_is_answered_as_the_chosen_model_alone(trained):
    """barge_in = overlap: the next call starts while the answer plays (the spare LSTM hears it after the answer,
    then its key moves); auto answers both calls note for note as the chosen model alone does."""
    second = [(time + 40 * STEP, message) for time, message in call(B_FLAT)]
    played = call(PHRASE) + second
    settings = {"barge_in": "overlap", "response_bars": 1}
    alone, alone_events = run(Engine(named(trained, "tiny"), Settings(**settings), seed=7), played, 260)
    engine = Engine(flat(trained, "flat"), Settings(**settings), seed=7)
    unlikely = dataclasses.replace(flat(trained, "flat"), card={"name": "flat", "style_prior_bits": 100})
    engine.set_styles(Styles({"tiny": named(trained, "tiny"), "flat": unlikely}))
    sent, events = run(engine, played, 260)
    starts = [e.data for e in events if e.name == "response_start"]
    assert len(starts) == 2 and starts == [e.data for e in alone_events if e.name == "response_start"]
    assert starts[1]["transposition"] != starts[0]["transposition"]
    assert notes(sent) == notes(alone)


def test_auto_turned_off_in_the_middle_of_a_call_answers_as_the_model_alone(trained):
    """While auto listens the engine's own LSTM rests; turned off mid-call, it hears the call so far at once and
    answers note for note as it would have alone."""
    alone, _ = run(Engine(named(trained, "tiny"), Settings(), seed=7), call(B_FLAT), 200)
    engine = Engine(named(trained, "tiny"), Settings(), seed=7)
    engine.set_styles(Styles({"tiny": named(trained, "tiny"), "flat": flat(trained, "flat")}))
    sent = []
    for boundary in drive(engine, call(B_FLAT), 200):
        sent += boundary.sent
        if round(boundary.time / STEP) == 30:
            engine.set_styles(None)
    sent += engine.pop_due(math.inf)
    assert notes(sent) and notes(sent) == notes(alone)


def test_without_styles_the_model_answers_whatever_predicts_better(trained):
    engine = Engine(flat(trained, "flat"), Settings(), seed=5)
    _, events = answer(engine)
    assert next(e for e in events if e.name == "response_start").data["model"] == "flat"


def test_styles_set_during_an_answer_take_effect_after_it(trained):
    engine = Engine(flat(trained, "flat"), Settings(response_bars=1), seed=5)
    styles = Styles({"tiny": named(trained, "tiny"), "flat": flat(trained, "flat")})
    second = [(time + 64 * STEP, message) for time, message in call(PHRASE)]  # after the first answer (32-48)
    events = []
    for boundary in drive(engine, call(PHRASE) + second, 140):
        events += boundary.events
        if any(e.name == "response_start" for e in boundary.events):
            engine.set_styles(styles)  # while responding: for the next call
            assert engine.mode == "responding"
    assert [e.data["model"] for e in events if e.name == "response_start"] == ["flat", "tiny"]


def test_a_style_with_no_models_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one model"):
        Styles({})


@pytest.fixture(scope="module")
def models_path(tiny_model_dir, tmp_path_factory) -> Path:
    """A models path with the tiny trained model and a flat copy of it (no TensorFlow: the weights are copied)."""
    root = tmp_path_factory.mktemp("styles")
    shutil.copytree(tiny_model_dir, root / "tiny")
    shutil.copytree(tiny_model_dir, root / "flat")
    weights = dict(np.load(root / "flat" / "weights.npz"))
    weights["dense_kernel"][:] = 0
    weights["dense_bias"][:] = 0
    np.savez(root / "flat" / "weights.npz", **weights)
    for name in ("tiny", "flat"):
        card = json.loads((root / name / "model.json").read_text())
        (root / name / "model.json").write_text(json.dumps({**card, "name": name}))
    return root


def continue_with(*argv) -> int:
    from improvd.offline import continue_command

    parser = argparse.ArgumentParser(prog="improvd continue")
    continue_command.add_arguments(parser)
    return continue_command.main(parser.parse_args([str(a) for a in argv]))


@pytest.mark.parametrize(("style", "answers"), [("auto", "tiny"), ("flat", "flat"), ("tiny", "tiny")])
def test_continue_with_a_style(models_path, tmp_path, capsys, style, answers):
    call_file = tmp_path / "call.abc"
    call_file.write_text(ABC)
    flags = ["--models-path", models_path, "--model", models_path / "flat", "--seed", 3]
    assert continue_with(call_file, "-o", tmp_path / "out.mid", "--style", style, *flags) == 0
    assert f"notes by {answers} (seed 3)" in capsys.readouterr().out


@pytest.mark.parametrize("style", ["nosuch", "../tiny", ""])
def test_continue_with_an_unknown_style_says_so(models_path, tmp_path, capsys, style):
    call_file = tmp_path / "call.abc"
    call_file.write_text(ABC)
    assert continue_with(call_file, "-o", tmp_path / "out.mid", "--style", style, "--models-path", models_path) == 1
    assert f"style {style!r}: no such model under {models_path}" in capsys.readouterr().err
    assert not (tmp_path / "out.mid").exists()


def test_auto_over_a_folder_without_models_says_so(tmp_path, capsys, tiny_model_dir):
    call_file = tmp_path / "call.abc"
    call_file.write_text(ABC)
    argv = ["-o", tmp_path / "out.mid", "--style", "auto", "--models-path", tmp_path, "--model", tiny_model_dir]
    assert continue_with(call_file, *argv) == 1
    assert "no model directories" in capsys.readouterr().err


def test_demo_with_style_auto_names_the_model_that_answered(models_path, tmp_path, capsys):
    from improvd.offline import demo

    parser = argparse.ArgumentParser(prog="improvd demo")
    demo.add_arguments(parser)
    args = ["--out", tmp_path, "--style", "auto", "--models-path", models_path, "--model", models_path / "flat"]
    assert demo.main(parser.parse_args([str(a) for a in [*args, "--tune", "kinder0#1"]])) == 0
    assert "by model tiny" in capsys.readouterr().out


# --- the daemon's doors: the file and flags, MQTT, Home Assistant, a CC -------------------------------------------


def test_the_style_door_of_the_file_and_of_mqtt_refuse_what_is_no_model_name():
    from improvd.daemon import config as configuration
    from improvd.daemon.control import ControlError, parse

    assert configuration.from_table({"style": "auto"}, argparse.Namespace(no_mqtt=True, config=None)).style == "auto"
    with pytest.raises(
        configuration.ConfigError, match=re.escape('style = "../essen": must be auto or a model\'s folder name')
    ):
        configuration.from_table({"style": "../essen"}, argparse.Namespace(no_mqtt=True, config=None))
    assert parse("set/style", b"auto").changes == {"style": "auto"}
    assert parse("set", b'{"style": "essen"}').changes == {"style": "essen"}
    with pytest.raises(ControlError, match="style must be auto or a model's folder name"):
        parse("set/style", b"../essen")


def test_home_assistant_gets_a_style_select_of_auto_and_the_models():
    from improvd.daemon.mqtt import MqttConfig, discovery

    found = discovery(MqttConfig(), "1", {"style": "", "model": "essen"}, ["british", "essen"])
    select = next(entity for topic, entity in found.items() if "select" in topic and "style" in topic)
    assert select["options"] == ["auto", "british", "essen"]
    assert select["command_topic"].endswith("set/style")


def test_set_style_auto_primes_every_model_under_the_models_path_and_hands_them_to_the_engine(models_path, caplog):
    from tests.inprocess import make_daemon

    daemon = make_daemon({"models_path": str(models_path)})
    controller = daemon.controller

    async def scenario() -> None:
        daemon._loop = asyncio.get_running_loop()
        with pytest.raises(ValueError, match=r"^style 'nosuch': no such model under the models path$"):
            controller.apply({"style": "nosuch"})  # a play test: it said "model", and the log "set/model"
        assert "style 'nosuch': no model directory" in caplog.text
        controller.apply({"style": "auto"})
        await asyncio.sleep(0)  # the task is spawned from the loop
        while daemon._background:  # the task that primes the candidates
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    while not daemon.timing._inbox.empty():  # what the timing thread would run next
        _, action = daemon.timing._inbox.get_nowait()
        action(0.0)
    assert daemon.engine._styles is not None and daemon.engine._styles.names == ["flat", "tiny"]
    assert controller.state()["style"] == "auto"


@pytest.mark.parametrize(("value", "style"), [(0, "auto"), (63, "flat"), (127, "tiny")])
def test_a_style_cc_picks_across_auto_and_the_models_in_name_order(models_path, value, style):
    import mido

    from improvd.daemon.input_filter import Change, InputFilter
    from tests.inprocess import make_daemon

    daemon = make_daemon({"models_path": str(models_path), "cc": {"style": 20}})
    decision = InputFilter().decide(
        mido.Message("control_change", control=20, value=value).bytes(), daemon.controller.config, False
    )
    assert isinstance(decision, Change) and decision.name == "style"
    chosen = []
    daemon.controller.set_style = chosen.append
    daemon.controller.change({"style": decision.value})
    assert chosen == [style]


def test_the_priors_are_fitted_so_that_each_collection_gets_its_own_model():
    """training/compare.py --calibrate: the smallest prior that gives the most calls their own model, on the mean
    over collections. Model 0 (british) predicts its own calls 3 bits worse than model 1 (essen) does; essen its
    own 10 bits better: essen's prior must reach 3 bits (a tie goes to the first by name, as style auto breaks it)."""
    from training.compare import fit_priors, own_shares

    by_collection = {
        "british": (0, np.array([[13.0, 10.0]] * 5)),
        "essen": (1, np.array([[20.0, 10.0]] * 5)),
    }
    assert own_shares(by_collection, np.zeros(2)).tolist() == [0.0, 1.0]
    priors = fit_priors(by_collection, 2)
    assert priors.tolist() == [0.0, 3.0]
    assert own_shares(by_collection, priors).tolist() == [1.0, 1.0]


def test_the_priors_serve_the_collection_auto_serves_worst_first():
    """The goal is a share for each collection: 0.8 and 0.8 beat 0.7 and 1.0, though their mean is lower. Essen's
    bits less british's: 7 british calls +1 (british's whatever the prior), 1 at -2, 2 at -20; 2 essen calls at -1,
    8 at -10. A prior of 2 bits (a tie goes to british) gives british 8 of its 10 and essen 8 of its 10 (its -1
    calls go british)."""
    from training.compare import fit_priors, own_shares

    def calls(differences: list[float]) -> np.ndarray:
        return np.array([[50.0, 50.0 + d] for d in differences])

    by_collection = {
        "british": (0, calls([1.0] * 7 + [-2.0] + [-20.0] * 2)),
        "essen": (1, calls([-1.0] * 2 + [-10.0] * 8)),
    }
    assert own_shares(by_collection, np.zeros(2)).tolist() == [0.7, 1.0]  # the best mean (0.85)
    priors = fit_priors(by_collection, 2)
    assert priors.tolist() == [0.0, 2.0]
    assert own_shares(by_collection, priors).tolist() == [0.8, 0.8]


@pytest.fixture
def broken_models_path(tiny_model_dir, tmp_path) -> Path:
    """A models path with the tiny model and ``bad``, whose card's echo_odds is out of range."""
    shutil.copytree(tiny_model_dir, tmp_path / "tiny")
    shutil.copytree(tiny_model_dir, tmp_path / "bad")
    card = json.loads((tmp_path / "bad" / "model.json").read_text())
    (tmp_path / "bad" / "model.json").write_text(json.dumps({**card, "echo_odds": -1}))
    return tmp_path


@pytest.mark.parametrize(
    ("style", "reason"),
    [
        ("bad", "style 'bad': model.json: echo_odds must be a number from 0 to 1000, got -1"),
        ("auto", "style 'auto': bad/model.json: echo_odds must be a number from 0 to 1000, got -1"),
    ],
)
def test_a_refused_style_keeps_the_one_that_plays_and_names_no_folder_of_the_machine(broken_models_path, style, reason):
    """A play test: the state said the refused style at once (a model's name) or at its next publish (auto) while
    the earlier one kept answering, and auto's error event named the models path's folder on the machine."""
    from tests.inprocess import make_daemon

    daemon = make_daemon({"models_path": str(broken_models_path), "style": "tiny"})
    controller = daemon.controller
    errors = []
    controller.event = lambda name, data: errors.append(data["reason"]) if name == "error" else None

    async def scenario() -> None:
        daemon._loop = asyncio.get_running_loop()
        controller.apply({"style": style})
        await asyncio.sleep(0)
        while daemon._background or controller._model_loading:
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert errors == [reason]
    assert controller.state()["style"] == "tiny"
    assert daemon.timing._inbox.empty()  # nothing for the timing thread to change: the earlier style plays on
