"""Style auto hears a model in the tonic its minor tunes were trained in too (the card's ``minor_tonic``): Essen's
abc keys name only a tonic, so its minor tunes sit in C minor while a minor call moved onto the white keys is in A
minor (improvd.core.styles.transpositions)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from improvd.core.answer import collection_mask
from improvd.core.engine import Engine, Settings
from improvd.core.keys import WHITE_KEYS
from improvd.core.lookback import Place
from improvd.core.model import ModelError, load_model
from improvd.core.recall import _Call
from improvd.core.simulate import drive
from improvd.core.styles import Styles, transpositions
from tests.helpers import STEP, AsideSteps, call, run

FLATS = {3, 8, 10}  # E-flat, A-flat, B-flat: C minor's notes outside the white keys
# an A-minor call on the white keys (no E-flat, A-flat or B-flat), in 8ths; it ends at step 32
A_MINOR = [
    (pitch, 2 * k, 2) for k, pitch in enumerate([69, 71, 72, 74, 76, 74, 72, 71, 69, 72, 76, 74, 72, 71, 69, 69])
]
SYMBOLS = [symbol for pitch, _, _ in A_MINOR for symbol in (str(pitch), "_")]


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    return load_model(tiny_model_dir)


def flat_on(model, name: str, minor_tonic: str | None, favoured: set[int] = FLATS):
    """The model with its output weights zeroed and its bias 4 nats up on the pitches of ``favoured`` classes: the
    same prediction whatever it heard, which spends fewer bits on a call the more of those notes it holds."""
    symbols = model.vocabulary.symbols
    bias = np.array([4.0 if s.isdigit() and int(s) % 12 in favoured else 0.0 for s in symbols], np.float32)
    weights = {**model.weights, "dense_kernel": np.zeros_like(model.weights["dense_kernel"]), "dense_bias": bias}
    card = {**model.card, "name": name, "style_prior_bits": 0.0}
    card.pop("minor_tonic", None)
    if minor_tonic is not None:
        card["minor_tonic"] = minor_tonic
    return dataclasses.replace(model, weights=weights, path=Path(name), card=card)


@pytest.mark.parametrize(
    ("tonic", "expected"), [(None, (0,)), ("A", (0,)), ("C", (0, 3)), ("E-", (0, -6)), ("Bb", (0, 1)), ("g", (0, -2))]
)
def test_a_card_s_minor_tonic_adds_the_transposition_that_takes_the_white_keys_a_there(trained, tonic, expected):
    assert transpositions(flat_on(trained, "m", tonic)) == expected


@pytest.mark.parametrize("tonic", ["H", "", 3, None, ["C"], "C minor"])
def test_a_minor_tonic_that_names_no_tonic_is_a_clear_error(trained, tonic):
    broken = dataclasses.replace(trained, path=Path("m"), card={**trained.card, "minor_tonic": tonic})
    with pytest.raises(ModelError, match=r"m/model.json: minor_tonic must name a tonic \(C, E-, F#\), got "):
        Styles({"m": broken})


def test_the_shipped_cards_say_where_their_minor_tunes_were_trained():
    """models/README.md: Essen's minor training tunes end on C (580 of those music21 calls minor and that end on
    their tonic, 128 on A); the British ones on A (155 of 159)."""
    from improvd.core.model import DEFAULT_MODEL_DIR

    assert load_model(DEFAULT_MODEL_DIR.parent / "essen").card["minor_tonic"] == "C"
    assert load_model(DEFAULT_MODEL_DIR.parent / "british").card["minor_tonic"] == "A"


def heard(styles: Styles, shift: int) -> None:
    styles.restart(shift, SYMBOLS[:1], Place(0, 16))
    for symbol in SYMBOLS[1:]:
        styles.feed(symbol)


def test_a_model_is_scored_in_its_better_transposition_and_handed_over_there(trained):
    """A model whose minor tunes sit on C hears an A-minor call in A minor and in C minor (its E-flats, A-flats and
    B-flats are what the model favours): its score is the better one's, the transposition the handover's."""
    c_minor = Styles({"m": flat_on(trained, "m", "C")})
    heard(c_minor, 0)
    in_a = Styles({"m": flat_on(trained, "m", None)})
    heard(in_a, 0)
    moved = Styles({"m": flat_on(trained, "m", None)})
    heard(moved, 3)  # the call moved as the second transposition hears it
    handover = c_minor.choose()
    in_a.choose(), moved.choose()
    assert moved.scores()["m"] < in_a.scores()["m"] - 10  # C minor's flats are what it favours
    assert c_minor.scores()["m"] == pytest.approx(moved.scores()["m"], rel=1e-6)
    assert handover.offset == 3 and c_minor.names == ["m"]
    np.testing.assert_array_equal(c_minor.bits()["m"][0], moved.bits()["m"][0])


def test_the_model_that_fits_the_call_in_its_own_key_keeps_the_first_transposition(trained):
    """Favouring the white keys' own notes, the model's first transposition (the white keys) scores better."""
    styles = Styles({"m": flat_on(trained, "m", "C", favoured={9, 11, 4})})
    heard(styles, 0)
    assert styles.choose().offset == 0


def test_auto_answers_in_the_chosen_transposition_and_moves_the_answer_back_into_the_call_s_key(trained):
    """The C-minor model wins the A-minor call in C minor: response_start says the answer's transposition (+3), the
    answer, drawn among C minor's notes, sounds in the call's own collection (the white keys), its favoured
    E-flats, A-flats and B-flats moved back to C, F and G."""
    engine = Engine(flat_on(trained, "m", None), Settings(), seed=3)
    loser = flat_on(trained, "sharps", None, favoured={1, 6, 8})  # favours what the call never plays
    engine.set_styles(Styles({"m": flat_on(trained, "m", "C"), "sharps": loser}))
    sent, events = run(engine, call(A_MINOR), 200)
    start = next(e for e in events if e.name == "response_start")
    assert start.data["model"] == "m" and start.data["transposition"] == 3 and start.data["offset"] == 3
    answer = [t.message.note for t in sent if t.message.type == "note_on"]
    assert len(answer) > 8
    assert all(note % 12 in WHITE_KEYS for note in answer)
    assert sum(note % 12 in {0, 5, 7} for note in answer) > 0.6 * len(answer)  # what it favours, moved back


def test_the_answer_s_collection_is_the_white_keys_moved_with_the_model_s_transposition(trained):
    """In C minor (offset 3) the answer may draw E-flat, A-flat and B-flat, not E, A or B (the white keys would let
    those through, which moved back are C-sharp, F-sharp and G-sharp)."""
    symbols = [str(p) for p in range(48, 84)]
    mask = collection_mask(symbols, np.ones(len(symbols), bool), ["69", "_", "72"], 3, (0, 127), 3)
    allowed = {int(s) % 12 for s, ok in zip(symbols, mask, strict=True) if ok}
    assert allowed == {0, 2, 3, 5, 7, 8, 10}


def test_an_earlier_call_in_the_same_collection_is_heard_in_the_model_s_transposition():
    """Session memory: an earlier A-minor call (heard at shift 0) is indexed for an answer in C minor (shift 3,
    offset 3) as the present call is, at +3, not by its own shift."""
    earlier = _Call(["69", "_", "72", "_", "76", "_", "74"], 0, 0, 16)
    earlier.attune(3, lambda symbol, used: used, 3)
    assert set(earlier.indices) == {3}


def test_training_records_the_tonic_most_minor_tunes_end_on():
    """training.train.minor_tonic: C minor songs that end on C outnumber A minor ones that end on A; a tie, or no
    minor song ending on its tonic, is A."""
    from training.train import minor_tonic

    c_minor = ["60", "_", "63", "_", "67", "_", "65", "_", "63", "_", "62", "_", "60", "_", "_", "_"]
    a_minor = [str(int(s) + 9) if s.isdigit() else s for s in c_minor]
    c_major = ["60", "_", "64", "_", "67", "_", "65", "_", "64", "_", "62", "_", "60", "_", "_", "_"]
    assert minor_tonic([c_minor, c_minor, a_minor, c_major]) == "C"
    assert minor_tonic([c_minor, a_minor]) == "A"
    assert minor_tonic([c_major]) == "A"


# --- a model answering alone (any style but auto) is its own candidates: itself in each transposition ---------------


def test_a_model_answering_alone_answers_a_minor_call_in_its_minor_transposition(trained):
    """No style auto: the model whose minor tunes sit on C hears the A-minor call in A minor and in C minor too, and
    answers in C minor (its favoured flats, moved back); response_start and the engine say the offset."""
    engine = Engine(flat_on(trained, "m", "C"), Settings(), seed=3)
    sent, events = run(engine, call(A_MINOR), 200)
    start = next(e for e in events if e.name == "response_start")
    assert start.data["model"] == "m" and start.data["transposition"] == 3 and start.data["offset"] == 3
    assert engine.offset == 3
    answer = [t.message.note for t in sent if t.message.type == "note_on"]
    assert len(answer) > 8 and all(note % 12 in WHITE_KEYS for note in answer)
    assert sum(note % 12 in {0, 5, 7} for note in answer) > 0.6 * len(answer)


def test_a_model_alone_answers_in_the_transposition_auto_would_choose_for_it(trained):
    """The same choice as style auto's for that model (one code path): the same answer, note for note."""
    alone, alone_events = run(Engine(flat_on(trained, "m", "C"), Settings(), seed=3), call(A_MINOR), 200)
    engine = Engine(flat_on(trained, "m", None), Settings(), seed=3)
    engine.set_styles(Styles({"m": flat_on(trained, "m", "C")}))
    sent, events = run(engine, call(A_MINOR), 200)
    starts = [e.data for e in events if e.name == "response_start"]
    assert starts == [e.data for e in alone_events if e.name == "response_start"]
    assert [t.message.note for t in sent] == [t.message.note for t in alone]


def named_on(model, minor_tonic: str | None):
    """The trained model itself, its card's minor_tonic set (or removed)."""
    card = {k: v for k, v in model.card.items() if k != "minor_tonic"}
    return dataclasses.replace(model, card=card if minor_tonic is None else {**card, "minor_tonic": minor_tonic})


# a 4-bar call in B-flat major, in 8ths (its collection moves the key once it falls silent)
B_FLAT = [(70 + (0, 2, 4, 5, 7, 5, 4, 2)[k % 8], 2 * k, 2) for k in range(32)]


@pytest.mark.parametrize("played", [A_MINOR, B_FLAT], ids=["a minor", "b-flat major"])
def test_where_the_white_keys_win_the_answer_is_note_for_note_the_one_transposition_s(trained, played):
    """The trained model (its LSTM state handed over, not only its bias) with minor_tonic C, on calls its white keys
    predict better: the answer of the one-transposition model, note for note, a moved key too."""
    assert trained.input != "lookback"
    alone, alone_events = run(Engine(named_on(trained, None), Settings(), seed=7), call(played), 200)
    engine = Engine(named_on(trained, "C"), Settings(), seed=7)
    sent, events = run(engine, call(played), 200)
    start = next(e.data for e in events if e.name == "response_start")
    assert start["offset"] == 0 and engine._styles is not None and engine._styles.hearings == 2
    assert start == next(e.data for e in alone_events if e.name == "response_start")
    assert [(t.time, t.message.note) for t in sent] == [(t.time, t.message.note) for t in alone]


def test_a_model_alone_hears_the_call_on_the_aside_thread_and_answers_as_on_the_timing_thread(trained, monkeypatch):
    """With the daemon's thread for work aside, run between ticks: no tick of the call or its silence steps an LSTM
    on the timing thread (the engine's own rests, its candidates hear aside), the phrase end's at most 8, and the
    answer is the same."""
    from improvd.core import styles as styles_module
    from improvd.core.simulate import drive

    steps = AsideSteps()
    monkeypatch.setattr(styles_module, "LSTMRuntime", steps.runtime)

    def answered(aside) -> tuple[list, list, list[int]]:
        engine = Engine(flat_on(trained, "m", "C"), Settings(), seed=3, predictor=steps.runtime, aside=aside)
        steps.take()  # the song starts
        sent, ends, per_tick = [], [], []
        for boundary in drive(engine, call(A_MINOR), 200):
            sent += boundary.sent
            ends += [boundary.time for e in boundary.events if e.name == "phrase_end"]
            per_tick.append(steps.take())
            steps.between_ticks()
        engine_offsets.append(engine.offset)
        return [(t.time, t.message.note) for t in sent], ends, per_tick

    engine_offsets: list[int] = []
    expected, expected_ends, inline = answered(None)
    got, ends, per_tick = answered(steps.handed.append)
    assert expected and got == expected and ends == expected_ends
    phrase_end = round(ends[0] / STEP)
    assert sum(inline[:phrase_end]) > 0 and sum(per_tick[:phrase_end]) == 0 and per_tick[phrase_end] <= 8
    assert engine_offsets == [3, 3]


def test_a_predictor_other_than_the_lstm_hears_the_call_once(trained):
    """evaluate's n-gram answers as itself: a predictor that is no LSTM runtime gets no candidates (they would hand
    over an LSTM), so the call is heard in the one transposition, by that predictor."""
    from improvd.core.runtime import LSTMRuntime

    steps: list[int] = []

    class Wrapped:
        def __init__(self, model) -> None:
            self._runtime = LSTMRuntime(model)

        def step(self, index: int) -> np.ndarray:
            steps.append(index)
            return self._runtime.step(index)

        def __getattr__(self, name: str):
            return getattr(self._runtime, name)

    engine = Engine(flat_on(trained, "m", "C"), Settings(), seed=3, predictor=Wrapped)
    _, events = run(engine, call(A_MINOR), 200)
    assert next(e for e in events if e.name == "response_start").data["offset"] == 0
    assert engine._styles is None and len(steps) > len(SYMBOLS)


def test_auto_turned_off_gives_the_model_its_own_candidates_back_and_set_model_its_own(trained):
    """set_styles(None) hands the model alone its own candidates again; set_model to a model heard in one
    transposition leaves the engine's own LSTM to hear the call (none), and back to one in two, its candidates."""
    model = flat_on(trained, "m", "C")
    engine = Engine(model, Settings(), seed=3)
    own = engine._styles
    assert own is not None and own.hearings == 2
    engine.set_styles(Styles({"m": model, "x": flat_on(trained, "x", None)}))
    assert engine._styles is not own
    engine.set_styles(None)
    assert engine._styles is own
    engine.set_model(flat_on(trained, "one", None))
    assert engine._styles is None
    _, events = run(engine, call(A_MINOR), 200)
    assert next(e for e in events if e.name == "response_start").data["offset"] == 0
    engine.set_model(model)
    assert engine._styles is not None and engine._styles.names == ["m"]


def test_a_card_whose_minor_tonic_names_no_tonic_is_refused_at_load(tiny_model_dir, tmp_path):
    import json
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps({**card, "minor_tonic": "H"}))
    with pytest.raises(ModelError, match=r"m/model.json: minor_tonic must name a tonic \(C, E-, F#\), got 'H'"):
        load_model(tmp_path / "m")


def test_the_daemon_prepares_a_model_s_own_candidates_off_the_timing_thread(tiny_model_dir, tmp_path, monkeypatch):
    """The shipped model (minor_tonic C) answers in its better transposition in the daemon too, and the state says
    the last answer's offset; a model set later gets its candidates made in the loader thread with its runtime, the
    timing thread only swaps them in."""
    import json
    import shutil

    import improvd.daemon.models as daemon_models
    from tests.inprocess import make_daemon

    daemon = make_daemon()
    assert daemon.engine._styles is not None and daemon.engine._styles.names == ["essen"]
    assert daemon.engine._styles.hearings == 2 and daemon.controller.state()["offset"] == 0
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps({**card, "minor_tonic": "C"}))
    model = daemon.controller._prepare_model(tmp_path / "m")

    def made_on_the_timing_thread(model):
        raise AssertionError("own candidates made on the timing thread")

    monkeypatch.setattr(daemon_models, "own_styles", made_on_the_timing_thread)
    daemon.engine.set_model(model)
    assert daemon.engine._styles is not None and daemon.engine._styles.hearings == 2


def test_with_clock_follow_a_model_alone_hears_the_call_in_one_transposition(trained):
    """``clock = "follow"``: the phrase end hears the call again on the player's grid (aside, in one transposition);
    a second transposition would be heard there at once, so the model alone answers on the white keys, note for
    note as its card without ``minor_tonic`` does; turned on during a call, the engine's LSTM hears that call."""
    alone, alone_events = run(
        Engine(flat_on(trained, "m", None), Settings(follow_tempo=True), seed=3), call(A_MINOR), 200
    )
    engine = Engine(flat_on(trained, "m", "C"), Settings(follow_tempo=True), seed=3)
    sent, events = run(engine, call(A_MINOR), 200)
    assert next(e.data for e in events if e.name == "response_start")["offset"] == 0
    assert [(t.time, t.message.note) for t in sent] == [(t.time, t.message.note) for t in alone]
    assert [e for e in events if e.name != "response_start"] == [e for e in alone_events if e.name != "response_start"]

    def switched(minor_tonic: str | None) -> tuple[Engine, list]:
        engine = Engine(flat_on(trained, "m", minor_tonic), Settings(), seed=3)
        sent = []
        for boundary in drive(engine, call(A_MINOR), 200):
            sent += boundary.sent
            if round(boundary.time / STEP) == 16:
                engine.update(follow_tempo=True)
        return engine, [(t.time, t.message.note) for t in sent + engine.pop_due(math.inf)]

    turned, notes = switched("C")
    assert turned.offset == 0 and notes and notes == switched(None)[1]
