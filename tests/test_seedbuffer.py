"""The seed buffer: one symbol per closed 16th, top line, holds, rests, the sustain pedal, stuck keys, a rolling
window."""

from __future__ import annotations

import dataclasses

import mido

from improvd.core.engine import Engine, Settings
from improvd.core.model import load_model
from improvd.core.seedbuffer import STUCK_STEPS, SeedBuffer, usual_gap
from tests.helpers import run


def closed(buffer: SeedBuffer, steps: range) -> list[str]:
    return [buffer.close(step) for step in steps]


def test_a_note_then_silence_is_pitch_holds_rest_holds():
    buffer = SeedBuffer(32)
    buffer.note_on(60, 90, 0)
    assert closed(buffer, range(0, 2)) == ["60", "_"]
    buffer.note_off(60, 3)
    assert closed(buffer, range(2, 6)) == ["_", "r", "_", "_"]
    assert buffer.silent_steps == 3 and not buffer.held


def test_the_highest_onset_of_a_step_wins_and_lower_notes_under_a_held_one_are_holds():
    buffer = SeedBuffer(32)
    for pitch in (60, 67, 64):
        buffer.note_on(pitch, 80, 0)
    assert closed(buffer, range(0, 1)) == ["67"]
    buffer.note_on(62, 80, 1)  # under the 67 still held: not the melody
    buffer.note_on(72, 100, 2)  # above it: the melody moves up
    assert closed(buffer, range(1, 3)) == ["_", "72"]
    assert list(buffer.velocities) == [80, 100]


def test_the_pedal_holds_released_notes_until_it_is_lifted():
    buffer = SeedBuffer(32)
    buffer.pedal(True, 0)
    buffer.note_on(65, 70, 0)
    buffer.note_off(65, 1)
    assert closed(buffer, range(0, 4)) == ["65", "_", "_", "_"]
    assert buffer.held
    buffer.pedal(False, 4)
    assert closed(buffer, range(4, 6)) == ["r", "_"]
    assert not buffer.held


def test_a_note_off_for_a_key_never_pressed_changes_nothing():
    buffer = SeedBuffer(32)
    buffer.note_on(60, 90, 0)
    buffer.note_off(61, 1)
    assert closed(buffer, range(0, 3)) == ["60", "_", "_"]


def test_the_buffer_keeps_the_last_n_steps():
    buffer = SeedBuffer(4)
    for step, pitch in enumerate(range(60, 66)):
        buffer.note_on(pitch, 90, step)
        buffer.note_off(pitch, step + 1)
        buffer.close(step)
    assert list(buffer.symbols) == ["62", "63", "64", "65"]


def test_leading_holds_before_the_first_note_are_dropped_for_the_seed():
    buffer = SeedBuffer(8)
    buffer.symbols.extend(["_", "_", "62", "_", "r"])
    assert buffer.last_note_symbols() == ["62", "_", "r"]
    assert SeedBuffer(8).last_note_symbols() == []


def test_the_engine_reads_velocity_zero_as_note_off_and_the_pedal_from_cc64(tiny_model_dir):
    step = 60 / 120 / 4
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=120, phrase_end_steps=64), seed=0)
    messages = [
        (0.0, mido.Message("note_on", note=60, velocity=90)),
        (1.98 * step, mido.Message("note_on", note=60, velocity=0)),  # snaps to step 2
        (2.0 * step, mido.Message("note_on", note=62, velocity=90)),
        (2.5 * step, mido.Message("control_change", control=64, value=127)),
        (3.0 * step, mido.Message("note_off", note=62)),
        (5.9 * step, mido.Message("control_change", control=64, value=0)),  # snaps to step 6
    ]
    run(engine, messages, 9)
    assert list(engine._buffer.symbols) == ["60", "_", "62", "_", "_", "_", "r", "_", "_"]


def test_a_pitch_struck_again_under_the_pedal_is_a_new_note():
    buffer = SeedBuffer(32)
    buffer.pedal(True, 0)
    buffer.note_on(67, 80, 0)
    buffer.note_off(67, 1)
    assert closed(buffer, range(0, 2)) == ["67", "_"]
    buffer.note_on(67, 80, 2)  # the pedal still holds the first 67
    assert closed(buffer, range(2, 4)) == ["67", "_"]


def test_a_falling_line_under_the_pedal_stays_a_line():
    """Only keys physically down hide lower onsets: 72-71-69-67 with the pedal down is four notes, not one 72."""
    buffer = SeedBuffer(32)
    buffer.pedal(True, 0)
    symbols = []
    for k, pitch in enumerate((72, 71, 69, 67)):
        buffer.note_on(pitch, 80, 2 * k)
        buffer.note_off(pitch, 2 * k + 1)  # legato, each key up before the next goes down
        symbols += closed(buffer, range(2 * k, 2 * k + 2))
    assert symbols == ["72", "_", "71", "_", "69", "_", "67", "_"]
    assert buffer.held  # the pedal still holds them all


def test_a_stuck_key_is_forgotten_after_stuck_steps_without_an_onset():
    buffer = SeedBuffer(256)
    buffer.note_on(60, 90, 0)  # its note_off is lost
    symbols = closed(buffer, range(0, STUCK_STEPS + 3))
    assert symbols[:STUCK_STEPS] == ["60"] + ["_"] * (STUCK_STEPS - 1)
    assert symbols[STUCK_STEPS:] == ["r", "_", "_"] and not buffer.held and buffer.silent_steps == 3
    buffer.note_off(60, STUCK_STEPS + 3)  # the lost note_off arriving late changes nothing
    assert buffer.close(STUCK_STEPS + 3) == "_"


def test_a_stuck_key_is_forgotten_while_the_player_goes_on_playing():
    """A junk note_on whose note_off never comes, then a line played on: four bars after its onset the key is
    released, so the line's phrase can end (it held every call open while onsets kept coming)."""
    buffer = SeedBuffer(256)
    buffer.note_on(40, 80, 0)  # its note_off is lost
    for k in range(STUCK_STEPS // 4 + 2):  # a note every beat, released before the next
        buffer.note_on(60, 80, 4 * k)
        buffer.note_off(60, 4 * k + 2)
        closed(buffer, range(4 * k, 4 * k + 4))
    assert not buffer.held  # the line's own keys are up; the stuck 40 is forgotten
    assert closed(buffer, range(4 * (STUCK_STEPS // 4 + 2), 4 * (STUCK_STEPS // 4 + 2) + 2)) == ["_", "_"]
    assert buffer.silent_steps > 0


def test_a_stuck_pedal_is_forgotten_but_a_line_still_played_keeps_it():
    buffer = SeedBuffer(256)
    buffer.pedal(True, 0)  # its sustain-off is lost
    for k in range(10):  # a line played under it: onsets keep coming
        buffer.note_on(60 + k, 80, 8 * k)
        buffer.note_off(60 + k, 8 * k + 1)
        closed(buffer, range(8 * k, 8 * k + 8))
    assert buffer.held  # 8 steps since the last onset: the pedal still counts
    assert closed(buffer, range(80, 72 + STUCK_STEPS + 1))[-1] == "r"
    assert not buffer.held


def test_the_engine_answers_a_call_whose_last_note_off_was_lost(tiny_model_dir):
    step = 60 / 120 / 4
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=120, min_call_steps=4), seed=0)
    messages = [(k * 2 * step, mido.Message("note_on", note=60 + 2 * k, velocity=90)) for k in range(4)]
    messages += [(k * 2 * step + 1.5 * step, mido.Message("note_off", note=60 + 2 * k)) for k in range(3)]  # 66 stuck
    _, events = run(engine, messages, 6 + STUCK_STEPS + 10)
    phrase_end = next(e for e in events if e.name == "phrase_end")
    assert phrase_end.time == (6 + STUCK_STEPS + 8) * step  # forgotten at its 64th step without an onset, then 8 silent


def test_the_buffer_follows_buffer_steps_and_a_new_models_sequence_length(tiny_model_dir):
    model = load_model(tiny_model_dir)
    engine = Engine(model, Settings(bpm=120), seed=0)
    assert engine._buffer.symbols.maxlen == model.sequence_length
    engine.update(buffer_steps=200)
    assert engine._buffer.symbols.maxlen == 200
    engine.update(buffer_steps=None)
    engine.set_model(dataclasses.replace(model, sequence_length=96))
    assert engine._buffer.symbols.maxlen == 96


def test_a_line_played_with_the_pedal_is_answered_exactly_as_without(tiny_model_dir):
    """A falling line 72-71-69-67, legato, once with the pedal down throughout (lifted with the last key), once
    without: the same call, the same answer, note for note (the same seed)."""
    step = 60 / 120 / 4
    line = [(72, 0), (71, 4), (69, 8), (67, 12)]

    def answer(pedal: bool) -> list:
        messages = [(0.0, mido.Message("control_change", control=64, value=127))] if pedal else []
        for pitch, start in line:
            messages.append((start * step + 0.01, mido.Message("note_on", note=pitch, velocity=80)))
            messages.append(((start + 3.6) * step, mido.Message("note_off", note=pitch)))
        if pedal:
            messages.append((15.6 * step, mido.Message("control_change", control=64, value=0)))
        engine = Engine(load_model(tiny_model_dir), Settings(bpm=120, min_call_steps=4), seed=5)
        sent, _ = run(engine, messages, 80)
        return [(round(t.time, 9), t.message.bytes()) for t in sent], engine._buffer.last_note_symbols()

    (plain, plain_call), (pedalled, pedalled_call) = answer(False), answer(True)
    assert pedalled_call == plain_call and plain_call[:13:4] == ["72", "71", "69", "67"]
    assert pedalled == plain and plain


def test_the_usual_gap_scales_the_calls_articulation_to_its_last_note():
    """Legato leaves none; quarters released a 16th early leave one after a quarter and two after a half note; a
    notated rest among legato notes is no articulation (the median over the notes)."""
    assert usual_gap(["60", "_", "_", "_", "62", "_", "_", "_", "64", "r"]) == 0
    detached = ["60", "_", "_", "r", "62", "_", "_", "r"]
    assert usual_gap([*detached, "64", "_", "_", "r"]) == 1
    assert usual_gap([*detached, "64", "_", "_", "_", "_", "_", "r", "_"]) == 2
    assert usual_gap(["60", "_", "62", "_", "r", "_", "_", "_", "64", "_", "65", "_", "67", "_", "r"]) == 0
    assert usual_gap(["r", "60", "_", "r"]) == usual_gap([]) == 0
