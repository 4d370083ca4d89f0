"""The metronome and the count-in, in simulated time: clicks on the beats, the bar's first distinct, stopping."""

from __future__ import annotations

import mido
import pytest

from improvd.core.engine import Engine, Settings
from improvd.core.grid import bar_steps
from improvd.core.metronome import ACCENT_VELOCITY, BEAT_VELOCITY, COUNT_IN_NOTE, click
from improvd.core.model import load_model
from improvd.core.touch import beat_steps
from tests.helpers import run, sounding_after

BPM = 120
STEP = 60 / BPM / 4


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def clicks(sent, channel: int = 9) -> list[tuple[int, int, int]]:
    """(step, note, velocity) of each click sent on ``channel``."""
    return [
        (round(t.time / STEP, 9), t.message.note, t.message.velocity)
        for t in sent
        if t.message.type == "note_on" and t.message.velocity and t.message.channel == channel
    ]


@pytest.mark.parametrize(("meter", "beat", "bar"), [("4/4", 4, 16), ("3/4", 4, 12), ("6/8", 6, 12), ("2/2", 8, 16)])
def test_clicks_fall_on_every_beat_and_the_bars_first_is_distinct(model, meter, beat, bar):
    engine = Engine(model, Settings(bpm=BPM, meter=meter, metronome=True), seed=0)
    sent, _ = run(engine, [], 23)  # the tick at step 23 queues the click of step 24
    beats = range(0, 25, beat)
    expected = [(b, 76, ACCENT_VELOCITY) if b % bar == 0 else (b, 77, BEAT_VELOCITY) for b in beats]
    assert clicks(sent) == expected
    assert not sounding_after(sent)
    assert click(1, meter, (76, 77)) is None


def test_a_click_is_queued_a_step_ahead_of_its_beat(model):
    engine = Engine(model, Settings(bpm=BPM, metronome=True), seed=0)
    engine.start(0.0)
    for k in range(1, 4):
        engine.pop_due(k * STEP)
        engine.tick(k * STEP)  # the tick that opens step 3 queues the click of step 4
    assert engine.next_due() == pytest.approx(4 * STEP)


def test_a_count_in_clicks_two_bars_then_listens(model):
    settings = Settings(bpm=BPM, count_in_bars=2, min_call_steps=4, metronome_channel=15)
    engine = Engine(model, settings, seed=0)
    early = [(1.0 * STEP, mido.Message("note_on", note=60, velocity=90)), (3 * STEP, mido.Message("note_off", note=60))]
    phrase = [(32 * STEP + k * 2 * STEP, mido.Message("note_on", note=60 + k, velocity=90)) for k in range(4)]
    phrase += [(33.5 * STEP + k * 2 * STEP, mido.Message("note_off", note=60 + k)) for k in range(4)]
    sent, events = run(engine, early + phrase, 60)
    assert [step for step, _, _ in clicks(sent, 15)] == list(range(0, 32, 4))  # two bars, then no metronome
    assert events[0].name == "count_in" and events[0].data == {"listen_at_step": 32}
    phrase_end = next(e for e in events if e.name == "phrase_end")
    assert phrase_end.data["call_steps"] == 8 + 8  # the notes during the count-in were not heard
    ignored = [e for e in events if e.name == "notes_ignored"]  # but they were reported, once, as listening began
    assert [(e.time, e.data) for e in ignored] == [(28 * STEP, {"reason": "count-in", "notes": 1})]


def test_the_count_ins_last_bar_clicks_its_own_note_and_the_metronome_goes_on_after_it(model):
    engine = Engine(model, Settings(bpm=BPM, count_in_bars=2, metronome=True, meter="3/4"), seed=0)
    sent, _ = run(engine, [], 36)
    assert clicks(sent) == [
        *[(0, 76, ACCENT_VELOCITY), (4, 77, BEAT_VELOCITY), (8, 77, BEAT_VELOCITY)],  # the metronome's bar
        *[(12, COUNT_IN_NOTE, ACCENT_VELOCITY), (16, COUNT_IN_NOTE, BEAT_VELOCITY), (20, COUNT_IN_NOTE, BEAT_VELOCITY)],
        *[(24, 76, ACCENT_VELOCITY), (28, 77, BEAT_VELOCITY), (32, 77, BEAT_VELOCITY), (36, 76, ACCENT_VELOCITY)],
    ]


def test_a_pickup_in_the_count_ins_last_beat_starts_the_call(model):
    settings = Settings(bpm=BPM, count_in_bars=1, min_call_steps=4, phrase_end_steps=8)
    engine = Engine(model, settings, seed=0)
    pickup = [
        (12 * STEP, mido.Message("note_on", note=67, velocity=90)),
        (13.5 * STEP, mido.Message("note_off", note=67)),
    ]
    phrase = [(16 * STEP + k * 2 * STEP, mido.Message("note_on", note=60 + k, velocity=90)) for k in range(4)]
    phrase += [(17.5 * STEP + k * 2 * STEP, mido.Message("note_off", note=60 + k)) for k in range(4)]
    _, events = run(engine, pickup + phrase, 40)
    phrase_end = next(e for e in events if e.name == "phrase_end")
    assert phrase_end.data["call_steps"] == 4 + 8 + 8  # the pickup beat, four 8ths, the closing silence
    assert not [e for e in events if e.name == "notes_ignored"]


@pytest.mark.parametrize("meter", ["4/4", "3/4", "6/8"])
@pytest.mark.parametrize("into_the_step", [0.05, 0.5, 0.95])
def test_a_count_in_starts_on_a_downbeat_whenever_it_is_enabled(model, meter, into_the_step):
    bar, beat = bar_steps(meter), beat_steps(meter)
    for step in range(bar, 2 * bar):  # enabled in each 16th of bar 2, early, half-way or late in it
        engine = Engine(model, Settings(bpm=BPM, meter=meter, count_in_bars=1, enabled=False), seed=0)
        engine.start(0.0)
        for k in range(1, step + 1):
            engine.tick(k * STEP)
        engine.set_enabled(True, (step + into_the_step) * STEP)
        sent = []
        for k in range(step + 1, 4 * bar):
            sent += engine.pop_due(k * STEP)
            engine.tick(k * STEP)
        downbeat = 2 * bar  # the next bar line
        expected = [(downbeat, COUNT_IN_NOTE, ACCENT_VELOCITY)]
        expected += [(b, COUNT_IN_NOTE, BEAT_VELOCITY) for b in range(downbeat + beat, downbeat + bar, beat)]
        assert clicks(sent) == expected, f"enabled in step {step}"


def test_enabling_counts_in_from_the_next_bar_line(model):
    engine = Engine(model, Settings(bpm=BPM, count_in_bars=1, enabled=False), seed=0)
    engine.start(0.0)
    for k in range(1, 6):
        engine.tick(k * STEP)
    engine.set_enabled(True, 5 * STEP)
    assert engine.mode == "counting_in"
    sent = []
    for k in range(6, 40):
        sent += engine.pop_due(k * STEP)
        engine.tick(k * STEP)
    assert [step for step, _, _ in clicks(sent)] == [16, 20, 24, 28] and engine.mode == "listening"


def test_panic_and_disable_stop_the_clicks_and_release_them(model):
    engine = Engine(model, Settings(bpm=BPM, metronome=True), seed=0)
    run(engine, [], 4, drain=False)
    engine.pop_due(4 * STEP)  # the click of step 4 sounds
    assert engine.sounding == {(9, 77)}
    released = engine.panic(4.2 * STEP)
    first = released[0].message
    assert (first.type, first.channel, first.note) == ("note_off", 9, 77)
    assert not engine.sounding and not engine.settings.metronome
    for k in range(5, 40):
        engine.tick(k * STEP)
    assert engine.next_due() is None
    engine.update(metronome=True)
    for k in range(40, 44):
        engine.tick(k * STEP)
    assert engine.next_due() == pytest.approx(44 * STEP)
    assert engine.update(enabled=False)[-2].message.control == 123
    for k in range(44, 60):
        engine.tick(k * STEP)
    assert engine.next_due() is None


def test_disabling_silences_the_clicks_and_enabling_brings_them_back(model):
    engine = Engine(model, Settings(bpm=BPM, metronome=True), seed=0)
    run(engine, [], 4, drain=False)
    engine.update(enabled=False)
    for k in range(5, 20):
        engine.tick(k * STEP)
    assert engine.next_due() is None and engine.settings.metronome  # idle: no clicks, the setting kept
    engine.set_enabled(True, 19.5 * STEP)
    for k in range(20, 24):
        engine.tick(k * STEP)
    assert engine.next_due() == pytest.approx(20 * STEP)  # the beat right after the enable clicks too
