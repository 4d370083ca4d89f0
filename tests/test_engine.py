"""The engine in simulated time, with a tiny model really trained on Essen tunes."""

from __future__ import annotations

import dataclasses
import random

import mido
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from improvd.encoding import encode
from improvd.engine import Engine, Settings
from improvd.model import load_model
from improvd.scores import essen_tune, melody_of
from tests.simulate import run, sounding_after

BPM = 120
STEP = 60 / BPM / 4


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def human_performance(melody, steps: int, seed: int = 3) -> list[tuple[float, mido.Message]]:
    """The notes of ``melody`` that start before ``steps``, played with +-20 ms jitter and varied velocities."""
    rng = random.Random(seed)
    messages, position = [], 0.0
    for note in melody:
        start, end = position / 0.25, (position + note.quarter_length) / 0.25
        position += note.quarter_length
        if start >= steps:
            break
        if note.pitch is None:
            continue
        on = start * STEP + rng.uniform(-0.02, 0.02)
        off = min(end, steps) * STEP - 0.03 + rng.uniform(-0.02, 0.02)
        messages.append((max(on, 0.0), mido.Message("note_on", note=note.pitch, velocity=rng.randint(40, 120))))
        messages.append((off, mido.Message("note_on", note=note.pitch, velocity=0)))  # velocity 0 is a note_off
    return messages


def test_human_timing_gives_the_tunes_own_encoding(model):
    melody = melody_of(essen_tune("kinder0#1").score)
    engine = Engine(model, Settings(bpm=BPM, phrase_end_steps=64, buffer_steps=256), seed=1)
    run(engine, human_performance(melody, 64), 70)
    expected = encode(melody)[:64]
    first = next(i for i, s in enumerate(expected) if s.isdigit())
    assert list(engine._buffer.symbols)[: 64 - first] == expected[first:]


def call(notes: list[tuple[int, int, int]], velocity: int = 90) -> list[tuple[float, mido.Message]]:
    """(pitch, start step, length) played exactly on the grid, released 10 ms early."""
    messages = []
    for pitch, start, length in notes:
        messages.append((start * STEP, mido.Message("note_on", note=pitch, velocity=velocity)))
        messages.append(((start + length) * STEP - 0.01, mido.Message("note_off", note=pitch)))
    return messages


PHRASE = [(67, 0, 2), (69, 2, 2), (71, 4, 2), (72, 6, 2), (74, 8, 4)]  # released at step 12


@pytest.mark.parametrize("phrase_end_steps", [1, 4, 8, 16])
def test_phrase_end_comes_exactly_after_the_release_and_the_answer_on_the_next_step(model, phrase_end_steps):
    engine = Engine(model, Settings(bpm=BPM, phrase_end_steps=phrase_end_steps, min_call_steps=4), seed=2)
    sent, events = run(engine, call(PHRASE), 80)
    phrase_end = next(e for e in events if e.name == "phrase_end")
    assert phrase_end.time == pytest.approx((12 + phrase_end_steps) * STEP)
    first = min(t.time for t in sent if t.message.type == "note_on")
    assert first == pytest.approx(phrase_end.time + STEP)
    assert all(round(t.time / STEP, 9) % 1 == 0 for t in sent if t.message.type == "note_on")  # on the grid


def test_a_short_call_is_not_answered(model):
    engine = Engine(model, Settings(bpm=BPM, min_call_steps=8), seed=2)
    _, events = run(engine, call([(60, 0, 2), (62, 2, 2)]), 40)
    assert not any(e.name == "phrase_end" for e in events)


def test_respond_now_answers_at_the_next_tick(model):
    engine = Engine(model, Settings(bpm=BPM, phrase_end_steps=64), seed=2)
    engine.start(0.0)
    for k, (time, message) in enumerate(call([(60, 0, 4)])):
        engine.feed(message, time)
        engine.tick((k + 1) * 4 * STEP)
    engine.respond_now()
    engine.tick(9 * STEP)
    assert [e.name for e in engine.drain_events()][-2:] == ["phrase_end", "response_start"]
    assert engine.next_due() == pytest.approx(10 * STEP)


def test_response_length_and_match(model):
    for response_steps, expected in [(12, 12), ("match", 12)]:
        engine = Engine(model, Settings(bpm=BPM, response_steps=response_steps, min_call_steps=4), seed=5)
        _, events = run(engine, call(PHRASE), 80)
        start = next(e for e in events if e.name == "response_start")
        assert start.data["steps"] <= expected
        end = next(e for e in events if e.name == "response_end")
        assert end.time <= start.time + (expected + 1) * STEP + 1e-9


def test_barge_in_releases_everything_at_once(model):
    engine = Engine(model, Settings(bpm=BPM, min_call_steps=4, response_steps=64, gate=1.0, velocity=77), seed=4)
    run(engine, call(PHRASE), 23, drain=False)  # phrase end at step 20: the answer is sounding at step 22
    assert engine.mode == "responding" and engine.sounding
    sounding = set(engine.sounding)
    released = engine.feed(mido.Message("note_on", note=60, velocity=100), 22.5 * STEP)
    assert {t.message.note for t in released if t.message.type == "note_off"} == sounding
    assert all(t.time == 22.5 * STEP for t in released)
    assert engine.next_due() is None and not engine.sounding and engine.mode == "listening"
    assert "barge_in" in [e.name for e in engine.drain_events()]


def test_overlap_keeps_answering(model):
    engine = Engine(model, Settings(bpm=BPM, min_call_steps=4, response_steps=64, barge_in="overlap"), seed=4)
    run(engine, call(PHRASE), 23, drain=False)
    assert engine.feed(mido.Message("note_on", note=60, velocity=100), 22.5 * STEP) == []
    assert engine.mode == "responding" and engine.next_due() is not None


def test_panic_releases_then_all_notes_off_and_sustain_off(model):
    engine = Engine(model, Settings(bpm=BPM, min_call_steps=4, gate=1.0, output_channel=5), seed=4)
    run(engine, call(PHRASE), 22, drain=False)
    sounding = set(engine.sounding)
    assert sounding
    released = [t.message for t in engine.panic(1.0)]
    assert [m.note for m in released if m.type == "note_off"] == sorted(sounding)
    assert [(m.control, m.value) for m in released if m.type == "control_change"] == [(123, 0), (64, 0)]
    assert all(m.channel == 5 for m in released)
    assert engine.next_due() is None


def test_all_notes_off_alone_leaves_an_answer_playing(model):
    engine = Engine(model, Settings(bpm=BPM, min_call_steps=4, gate=1.0, output_channel=5), seed=4)
    run(engine, call(PHRASE), 22, drain=False)
    sounding, due, mode = set(engine.sounding), engine.next_due(), engine.mode
    assert mode == "responding" and due is not None
    released = [t.message for t in engine.all_notes_off(1.0)]
    assert [(m.type, m.channel, m.control, m.value) for m in released] == [
        ("control_change", 5, 123, 0),
        ("control_change", 5, 64, 0),
    ]
    assert (engine.sounding, engine.next_due(), engine.mode) == (sounding, due, mode)


def test_disable_releases_and_goes_idle_and_enable_listens_again(model):
    engine = Engine(model, Settings(bpm=BPM, min_call_steps=4, gate=1.0), seed=4)
    run(engine, call(PHRASE), 22, drain=False)
    released = engine.update(enabled=False)
    assert any(t.message.type == "note_off" for t in released)
    assert engine.mode == "idle" and engine.next_due() is None
    engine.set_enabled(True, 2.0)
    assert engine.mode == "listening"


def test_same_seed_same_answer_other_seed_other_answer(model):
    def answer(seed):
        sent, _ = run(Engine(model, Settings(bpm=BPM, min_call_steps=4, temperature=1.5), seed=seed), call(PHRASE), 60)
        return [(round(t.time, 9), t.message.bytes()) for t in sent]

    assert answer(11) == answer(11)
    assert answer(11) != answer(12) or answer(11) != answer(13)


def test_a_call_starts_after_the_song_gap_the_model_was_trained_with(model):
    def answer(song_gap):
        engine = Engine(dataclasses.replace(model, song_gap=song_gap), Settings(bpm=BPM, min_call_steps=4), seed=5)
        sent, _ = run(engine, call(PHRASE), 60)
        return [(round(t.time, 9), t.message.bytes()) for t in sent]

    assert answer(model.song_gap) == answer(model.song_gap)
    assert answer(model.song_gap) != answer(1)  # one song end is not the start the model learnt


def test_settings_errors_name_the_field_and_what_is_allowed(model):
    engine = Engine(model, Settings(), seed=0)
    with pytest.raises(ValueError, match=r"temperature = 3.0 is not allowed: use a number from 0.05 to 2.0"):
        engine.update(temperature=3.0)
    with pytest.raises(ValueError, match="unknown setting"):
        engine.update(tempo=100)
    with pytest.raises(ValueError, match="response_steps"):
        engine.update(temperature=1.5, response_steps=0)
    assert engine.settings.temperature == 1.0  # all or nothing


def test_a_new_model_waits_for_the_end_of_the_answer(model, tiny_model_dir):
    engine = Engine(model, Settings(bpm=BPM, min_call_steps=4), seed=4)
    run(engine, call(PHRASE), 22, drain=False)
    other = load_model(tiny_model_dir)
    engine.set_model(other)
    assert engine.model is model
    engine.tick(200 * STEP)
    assert engine.model is other and engine.mode == "listening"


player_messages = st.lists(
    st.tuples(
        st.floats(0, 6.0),
        st.one_of(
            st.builds(
                mido.Message,
                st.just("note_on"),
                note=st.integers(0, 127),
                velocity=st.integers(0, 127),
                channel=st.integers(0, 15),
            ),
            st.builds(mido.Message, st.just("note_off"), note=st.integers(0, 127), channel=st.integers(0, 15)),
            st.builds(mido.Message, st.just("control_change"), control=st.just(64), value=st.integers(0, 127)),
        ),
    ),
    max_size=60,
)
engine_settings = st.builds(
    Settings,
    temperature=st.floats(0.05, 2.0),
    bpm=st.floats(60, 300),
    phrase_end_steps=st.integers(1, 8),
    min_call_steps=st.integers(1, 8),
    response_steps=st.one_of(st.integers(1, 32), st.just("match")),
    barge_in=st.sampled_from(["stop", "overlap"]),
    gate=st.floats(0.05, 1.0),
    output_channel=st.integers(0, 15),
    max_call_steps=st.integers(0, 16),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    messages=player_messages,
    chosen=engine_settings,
    seed=st.integers(0, 2**32 - 1),
    panic_at=st.none() | st.floats(0, 6),
)
def test_no_note_is_ever_left_sounding(model, messages, chosen, seed, panic_at):
    engine = Engine(model, chosen, seed=seed)
    steps = int(8.0 / engine.step_seconds())
    if panic_at is not None:
        sent, _ = run(engine, [m for m in messages if m[0] < panic_at], int(panic_at / engine.step_seconds()))
        sent += engine.panic(panic_at)
    else:
        sent, _ = run(engine, messages, steps)
    assert not sounding_after(sent)
    assert not engine.sounding
    for timed in sent:
        assert timed.message.channel == chosen.output_channel
        if timed.message.type in ("note_on", "note_off"):
            assert 0 <= timed.message.note <= 127


def test_a_panic_after_the_output_channel_changed_releases_on_the_channel_the_notes_sound_on(model):
    engine = Engine(model, Settings(bpm=BPM, min_call_steps=4, gate=1.0, output_channel=2), seed=4)
    run(engine, call(PHRASE), 22, drain=False)
    assert engine.sounding
    engine.update(output_channel=9)
    released = [t.message for t in engine.panic(1.0)]
    assert {m.channel for m in released if m.type == "note_off"} == {2}
    assert {m.channel for m in released if m.type == "control_change"} == {9}


def test_the_song_cache_lets_an_answer_take_up_the_players_motif(model, monkeypatch):
    """With the cache trusted fully, an answer cut into a repeated motif continues it from the call."""
    monkeypatch.setattr("improvd.songcache.ALPHA", 1e-9)
    motif = [60, 64, 67, 72, 71, 67]  # C major: no transposition
    notes = [(pitch, 2 * k, 2) for k, pitch in enumerate(motif + motif[:3])]  # the motif, then its first three notes
    engine = Engine(model, Settings(bpm=BPM, max_call_steps=18, response_steps=6), seed=4)
    sent, events = run(engine, call(notes), 60)
    assert next(e for e in events if e.name == "response_start").data["transposition"] == 0
    answer = [t.message.note for t in sent if t.message.type == "note_on" and t.message.velocity > 0]
    assert answer == motif[3:]
