"""The answer's shape: silence held to the bar line, transposition back, velocity, gate and retrigger.

The tiny model's output bias is pushed towards one symbol so the model proposes it at every step.
"""

from __future__ import annotations

import itertools

import pytest

from improvd.core.engine import Engine, Settings
from improvd.core.keys import diatonic_shift
from improvd.core.model import load_model
from improvd.core.notes import PlayedNote
from improvd.core.simulate import perform
from tests.helpers import PHRASE, RUNNING, call, favouring, run

BPM = 120
STEP = 60 / BPM / 4


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def test_a_hold_of_the_silence_lasts_to_the_bar_line_where_a_note_enters_and_later_holds_lengthen_it(model):
    settings = Settings(bpm=BPM, min_call_steps=4, response_steps=16, gate=0.75, phrase_end="silence")
    engine = Engine(favouring(model, "_"), settings, seed=1, memory=False)
    sent, events = run(engine, call(PHRASE), 60)
    assert next(e for e in events if e.name == "response_start").data["entry"] == 32  # answer steps 21 to 36
    answer = [t for t in sent if t.time >= 21 * STEP - 1e-9]
    assert [t.message.type for t in answer] == ["note_on", "note_off"]
    assert answer[0].time == pytest.approx(32 * STEP)
    assert answer[1].time == pytest.approx((32 + 0.75 * 5) * STEP)


def test_repeated_pitches_retrigger_each_note_off_before_the_next_onset(model):
    pitch = next(s for s in model.vocabulary.symbols if s.isdigit())
    settings = Settings(bpm=BPM, min_call_steps=4, response_steps=8, gate=0.9)
    engine = Engine(favouring(model, pitch), settings, seed=1, memory=False)
    sent, _ = run(engine, call(RUNNING), 60)
    answer = [(t.time, t.message.type) for t in sent if t.time >= 21 * STEP - 1e-9]
    assert len(answer) == 16
    for k in range(8):
        on, off = answer[2 * k], answer[2 * k + 1]
        assert on == (pytest.approx((21 + k) * STEP), "note_on")
        assert off == (pytest.approx((21 + k + 0.9) * STEP), "note_off")


def test_the_answer_is_transposed_back_into_the_calls_key(model):
    pitch = next(s for s in model.vocabulary.symbols if s.isdigit())
    engine = Engine(
        favouring(model, pitch), Settings(bpm=BPM, min_call_steps=4, response_steps=4), seed=1, memory=False
    )
    e_minor = [(64, 0, 2), (67, 2, 2), (71, 4, 2), (66, 6, 2), (64, 8, 4)]
    sent, events = run(engine, call(e_minor), 40)
    shift = next(e for e in events if e.name == "response_start").data["transposition"]
    call_symbols = ["64", "_", "67", "_", "71", "_", "66", "_", "64", "_", "_", "_"]
    assert shift == diatonic_shift(call_symbols) == 5  # E minor's diatonic collection (G major's) onto the white keys
    answer_notes = {t.message.note for t in sent if t.message.type == "note_on" and t.time > 20 * STEP}
    assert answer_notes == {int(pitch) - shift}


@pytest.mark.parametrize(("setting", "expected"), [(None, 50), (101, 101)])
def test_velocity_follows_the_call_or_the_setting(model, setting, expected):
    engine = Engine(model, Settings(bpm=BPM, min_call_steps=4, velocity=setting, output_channel=3), seed=1)
    sent, _ = run(engine, call(PHRASE, velocity=50), 60)
    answer = [t.message for t in sent if t.message.type == "note_on"]
    assert answer and {m.velocity for m in answer} == {expected}
    assert {m.channel for m in answer} == {3}


@pytest.mark.parametrize("bpm", [97, 113.3, 131])
def test_at_gate_one_each_note_off_comes_before_the_next_onset_of_its_pitch(model, bpm):
    """Times computed two ways differed by a rounding error: a note_off after the next note_on cut that note."""
    pitch = next(s for s in model.vocabulary.symbols if s.isdigit())
    settings = Settings(bpm=bpm, min_call_steps=4, response_steps=32, gate=1.0)
    engine = Engine(favouring(model, pitch), settings, seed=1, memory=False)
    step = engine.step_seconds()
    messages = [(t / STEP * step, m) for t, m in call(RUNNING)]
    sent, _ = run(engine, messages, 80)
    answer = [t for t in sent if t.time >= 20.5 * step and t.message.type in ("note_on", "note_off")]
    assert len(answer) == 64
    for before, after in itertools.pairwise(answer):
        assert before.message.type != after.message.type  # on, off, on, off ... in the order sent
        assert before.time <= after.time


def test_the_answer_keeps_to_the_calls_places_in_the_beat(model):
    """A call in 8ths gets no note on a 16th off the 8ths, however much the model wants one; a call in 16ths may."""
    pitch = next(s for s in model.vocabulary.symbols if s.isdigit())

    def onsets(phrase) -> list[int]:
        settings = Settings(bpm=BPM, min_call_steps=4, response_steps=8)
        sent, _ = run(Engine(favouring(model, pitch), settings, seed=1, memory=False), call(phrase), 60)
        return [round(t.time / STEP) for t in sent if t.message.type == "note_on" and t.time > 20.5 * STEP]

    assert onsets(PHRASE) == [22, 24, 26, 28]
    assert onsets(RUNNING) == list(range(21, 29))


def test_a_rest_inside_a_call_played_from_a_file_is_not_its_end(model):
    """Three quarters of rest (more than the phrase end's 8 steps) inside a call read from a file: the engine answers
    8 steps after the call's last note, not at the rest (where the call's next note then barged in and left no
    answer at all)."""
    step = 60 / 120 / 4
    notes = [PlayedNote(60 + 2 * k, k * 4 * step, (k + 1) * 4 * step) for k in range(4)]
    notes += [PlayedNote(67 - 2 * k, (28 + k * 4) * step, (32 + k * 4) * step) for k in range(4)]  # after 12 silent
    performance = perform(Engine(model, Settings(bpm=120, response_bars=1), seed=3), notes)
    ends = [e.time for e in performance.events if e.name == "phrase_end"]
    assert ends == [pytest.approx((44 + 8) * step)] and "barge_in" not in [e.name for e in performance.events]
    assert performance.response and min(n.start for n in performance.response) >= notes[-1].end
