"""improvd-train compare: every model and style auto on the same calls (training/compare.py)."""

from __future__ import annotations

import pytest

from improvd.core.notes import PlayedNote
from improvd.offline.call_reader import Call
from training import compare
from training.as_played import CallCase, Continuation

STEP = 60 / 120 / 4
C_MAJOR = frozenset({0, 2, 4, 5, 7, 9, 11})


def notes(*items: tuple[int, int, int]) -> list[PlayedNote]:
    """(pitch, start step, length) as played notes."""
    return [PlayedNote(p, s * STEP, (s + n) * STEP) for p, s, n in items]


CALL = Call(notes((60, 0, 4), (62, 4, 4), (64, 8, 4), (65, 12, 4), (67, 16, 16)), 120.0, (4, 4))
CALLS = [CallCase(f"hand#{k}", CALL, notes((60, 64, 4), (62, 68, 4), (64, 72, 8)), C_MAJOR, 0) for k in range(40)]
STEPS = Continuation(notes((60, 64, 4), (62, 68, 4), (64, 72, 4), (65, 76, 4), (67, 80, 16)), 64, 0)
LEAPS = Continuation(notes((72, 66, 2), (55, 68, 2), (79, 70, 2), (48, 72, 6), (84, 78, 2)), 64, 0)


def test_the_null_check_sets_auto_against_itself_not_against_the_first_model():
    """The first model (essen) answers with leaps, auto with steps, the same with either seed: auto against itself
    cannot be told apart (0.5); set against the first model's answers (the bug: 0.617 on British calls) it could."""
    answered = {"essen": [[LEAPS] * 40, [LEAPS] * 40], "british": [[STEPS] * 40] * 2, "auto": [[STEPS] * 40] * 2}
    found = compare.two_sample(CALLS, answered, [LEAPS] * 40)
    assert found["controls"]["two_seeds"]["balanced_accuracy"] == 0.5
    assert found["essen"]["balanced_accuracy"] > 0.9 and found["controls"]["temperature_2"]["balanced_accuracy"] > 0.9


def test_the_echo_odds_chosen_are_those_at_which_the_answers_take_up_the_call_as_the_real_bars_do():
    """calibrate's echo: where the answers' share of bars of the call, rising with the odds, meets the real bars'."""
    answered = {5.0: 0.10, 10.0: 0.14, 20.0: 0.30, 30.0: 0.35, 40.0: 0.40}
    assert compare.fit_echo_odds(answered, 0.325) == pytest.approx(25.0)
    assert compare.fit_echo_odds(answered, 0.14) == 10.0
    assert compare.fit_echo_odds(answered, 0.9) == 40.0 and compare.fit_echo_odds(answered, 0.0) == 5.0
    assert compare.fit_echo_odds({10.0: 0.2, 20.0: 0.19, 30.0: 0.4}, 0.3) == pytest.approx(25.0)  # a dip is flat


def test_a_stronger_echo_takes_up_more_of_the_call(tiny_model_dir):
    """The answers calibrate measures are the model's as the daemon plays them, its echo at the odds tried."""
    from improvd.core.model import MAX_ECHO_ODDS, load_model

    model = load_model(tiny_model_dir)
    taken = [
        compare.bars_of_call(CALLS, compare.answers_with_echo(model, CALLS, odds)[0]) for odds in (0.0, MAX_ECHO_ODDS)
    ]
    assert taken[0] < taken[1]
