"""improvd-train compare: every model and style auto on the same calls (training/compare.py)."""

from __future__ import annotations

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
