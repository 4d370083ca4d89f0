"""The player's touch carried into the answer: accents by metric place, groove by place in the beat."""

from __future__ import annotations

import mido
import pytest

from improvd.core.engine import Engine, Settings
from improvd.core.model import load_model
from improvd.core.touch import MAX_SHIFT, Touch, beat_steps, metric_place
from tests.helpers import favouring, run

BPM = 120
STEP = 60 / BPM / 4


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.mark.parametrize(
    ("meter", "beat", "places"),
    [
        ("4/4", 4, [0, 3, 2, 3, 1, 3, 2, 3, 1]),
        ("3/4", 4, [0, 3, 2, 3, 1]),
        ("6/8", 6, [0, 3, 2, 3, 2, 3, 1]),
        ("2/2", 8, [0, 3, 2, 3, 2, 3, 2, 3, 1]),
    ],
)
def test_metric_places(meter, beat, places):
    assert beat_steps(meter) == beat
    assert [metric_place(p, meter) for p in range(len(places))] == places


def test_velocity_is_the_calls_level_with_its_accent_at_the_same_place():
    touch = Touch()
    for bar in range(2):
        for k, velocity in enumerate((110, 60, 80, 60)):  # loud downbeat, a lighter third beat, soft between
            touch.record(16 * bar + 4 * k, velocity, 0.0)
    level = (110 + 60 + 80 + 60) / 4
    assert touch.velocity(32, "4/4") == round(level + 110 - level)
    assert touch.velocity(36, "4/4") == round(level + (60 + 80 + 60) / 3 - level)
    assert touch.velocity(34, "4/4") == round(level)  # no 8th in the call: no accent
    assert Touch().velocity(0, "4/4") == 80


def test_velocity_follows_each_onset_recorded_after_it_was_asked():
    """An answer asks for each note's velocity (kept until the call's onsets change): an onset recorded since is
    heard, in the level and at its place."""
    touch = Touch()
    for step in range(0, 32, 4):
        touch.record(step, 60, 0.0)
    assert touch.velocity(0, "4/4") == touch.velocity(16, "4/4") == 60
    touch.record(32, 124, 0.0)  # a loud downbeat
    assert touch.velocity(48, "4/4") > 60 + 8 and touch.velocity(8, "4/4") < touch.velocity(48, "4/4")


def test_groove_is_the_calls_mean_deviation_in_the_beat_bounded():
    touch = Touch()
    for beat in range(4):
        touch.record(4 * beat, 90, 0.02)
        touch.record(4 * beat + 2, 70, 0.18)  # laid-back offbeat 8ths
        touch.record(4 * beat + 3, 70, 0.9)  # far too late: bounded
    assert touch.shift(20, "4/4") == pytest.approx(0.02)
    assert touch.shift(22, "4/4") == pytest.approx(0.18)
    assert touch.shift(23, "4/4") == MAX_SHIFT
    assert touch.shift(21, "4/4") == 0.0


def swung_call(velocities=(112, 64)) -> list[tuple[float, mido.Message]]:
    """Eight 8ths of C major over two beats a bar, downbeat-loud, the offbeats 0.2 of a step late."""
    messages = []
    for k, pitch in enumerate((60, 62, 64, 65, 67, 65, 64, 62)):
        start = 2 * k * STEP + (0.2 * STEP if k % 2 else 0.0)
        velocity = velocities[0] if k % 8 == 0 else velocities[1]
        messages.append((start, mido.Message("note_on", note=pitch, velocity=velocity)))
        messages.append((start + 1.5 * STEP, mido.Message("note_off", note=pitch)))
    return messages


def answer_notes(engine: Engine) -> list[tuple[float, int]]:
    sent, _ = run(engine, swung_call(), 80)
    return [(t.time / STEP, t.message.velocity) for t in sent if t.message.type == "note_on" and t.time > 2.5]


def test_the_answer_takes_the_calls_accents_and_with_groove_follow_its_swing(model):
    pitch = next(s for s in model.vocabulary.symbols if s.isdigit())
    settings = Settings(bpm=BPM, min_call_steps=4, response_bars=1, response_steps=16)
    straight = answer_notes(Engine(favouring(model, pitch), settings, seed=1, memory=False))
    assert [round(t, 9) % 1 for t, _ in straight] == [0] * 8  # on the grid, on the call's 8ths only
    by_place = {round(t) % 16: v for t, v in straight}
    assert by_place[0] > by_place[2] and by_place[0] > by_place[4]  # the downbeat accent came along
    settings.groove = "follow"
    swung = answer_notes(Engine(favouring(model, pitch), settings, seed=1, memory=False))
    shifts = {round(t) % 4: round(t - round(t), 6) for t, _ in swung}
    assert shifts == {0: 0.0, 2: 0.2}  # the offbeat 8ths late by 0.2 of a step, the beats straight
