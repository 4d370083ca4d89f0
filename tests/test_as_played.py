"""The as-played figures on hand-made continuations, and a real Essen call through the engine."""

from __future__ import annotations

import pytest

from improvd.core.engine import Engine
from improvd.core.model import load_model
from improvd.core.notes import PlayedNote
from improvd.offline.call_reader import Call
from training import as_played
from training.as_played import CallCase, Continuation

STEP = 60 / 120 / 4
C_MAJOR = frozenset({0, 2, 4, 5, 7, 9, 11})


def notes(*items: tuple[int, int, int]) -> list[PlayedNote]:
    """(pitch, start step, length) as played notes."""
    return [PlayedNote(p, s * STEP, (s + n) * STEP) for p, s, n in items]


CALL = Call(notes((60, 0, 4), (62, 4, 4), (64, 8, 4), (65, 12, 4), (67, 16, 16)), 120.0, (4, 4))
TEST = CallCase("hand#1", CALL, [], C_MAJOR, 0)


def test_an_answer_on_the_beat_with_the_calls_run_and_a_cadence():
    answer = notes((60, 64, 4), (62, 68, 4), (64, 72, 4), (65, 76, 4), (71, 80, 2), (66, 82, 14), (67, 112, 16))
    found = as_played.figures([TEST], [Continuation(answer, 64, 0)])
    assert found["eighth_grid"] == 1.0 and found["motif_reuse"] == 1.0
    assert found["cadence"] == 1.0  # G, the dominant, on the last bar's downbeat
    assert found["early_end"] == 0.0 and found["in_key_signature"] == pytest.approx(6 / 7, abs=1e-4)
    assert found["key_signature_agreement"] == 1.0
    assert [p for p, share in enumerate(found["histograms"]["4/4"]) if share] == [0, 2, 4, 8, 12]


def test_an_answer_off_the_beat_that_stops_early_and_ends_on_the_second_degree():
    answer = notes((62, 65, 3), (64, 69, 3), (62, 81, 15))
    found = as_played.figures([TEST], [Continuation(answer, 64, 5)])
    assert found["eighth_grid"] == 0.0 and found["motif_reuse"] == 0.0
    assert found["cadence"] == 0.0 and found["early_end"] == 1.0
    assert found["key_signature_agreement"] == 0.0  # C major moved by 5 is not the white keys


def test_a_real_essen_call_through_the_engine(tiny_model_dir):
    tests = as_played.test_calls(["kinder0#1", "kinder0#2", "kinder0#3"])
    assert tests and all(len(t.call.notes) and t.real for t in tests)
    model = load_model(tiny_model_dir)
    answered = as_played.answers(tests, lambda settings, seed: Engine(model, settings, seed=seed), 2)
    assert [a.notes for a in answered[0]] != [a.notes for a in answered[1]]  # each seed draws its own
    report = as_played.report(tests, {"model": answered})
    assert set(report) == {"model", "real"}
    for test in tests:  # the real bars start on bar 5's line
        assert min(n.start for n in test.real) >= (test.call.bar_start_step + 4 * test.call.steps_per_bar) * STEP - 1e-6
    assert report["real"]["early_end"] == 0.0 and report["model"]["notes_per_continuation"] > 0
