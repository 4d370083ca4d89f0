"""The call's echo: its proposal raises the odds of the call's symbol, so the model's sense of where the answer
can go from where it stands is kept."""

from __future__ import annotations

import numpy as np
import pytest

from improvd.core.echo import ODDS, WEIGHT, Echo

V = 8
PITCHES = np.arange(60, 60 + V)  # every index a note: index k is MIDI 60 + k


def echo(proposed: int) -> Echo:
    """An echo of a call of one note (index ``proposed``) laid over an answer's first bar line, at step 16."""
    return Echo({16: proposed}, 16, 16, PITCHES)


def model(likely: float, proposed: int) -> np.ndarray:
    """The model's probabilities: ``likely`` for the proposed symbol, the rest spread evenly."""
    probabilities = np.full(V, (1 - likely) / (V - 1))
    probabilities[proposed] = likely
    return probabilities


def test_the_call_s_note_is_taken_up_where_the_model_finds_it_likely_and_seldom_where_it_does_not():
    """Nothing heard yet, the weight is WEIGHT / 2: the call's note's odds are multiplied by 1 + ODDS * that, so a
    note the model gives 1 in 1000 (a leap it does not expect from where the answer stands) stays under 1 in 100,
    where adding the weight as a share of the probability made it 0.4 whatever the model said."""
    factor = 1 + ODDS * WEIGHT / 2
    for likely in (0.001, 0.3):
        mixed = echo(3).mix(model(likely, 3), 16)
        odds = mixed[3] / (1 - mixed[3])
        assert odds == pytest.approx(factor * likely / (1 - likely))
        assert mixed.sum() == pytest.approx(1.0)
    assert echo(3).mix(model(0.001, 3), 16)[3] < 0.01
    assert echo(3).mix(model(0.3, 3), 16)[3] > 0.6


def test_the_others_keep_their_proportions_and_an_echo_with_nothing_to_say_changes_nothing():
    probabilities = np.array([0.1, 0.2, 0.3, 0.05, 0.15, 0.1, 0.05, 0.05])
    mixed = echo(3).mix(probabilities, 16)
    others = np.delete(np.arange(V), 3)
    assert np.allclose(mixed[others] / mixed[others].sum(), probabilities[others] / probabilities[others].sum())
    assert echo(3).mix(probabilities, 17) is probabilities  # the call has nothing at step 17


def test_an_echo_trusted_fully_gives_its_proposal_alone(monkeypatch):
    monkeypatch.setattr("improvd.core.echo.WEIGHT", 100.0)
    mixed = echo(3).mix(model(0.001, 3), 16)
    assert mixed[3] == 1.0 and mixed.sum() == 1.0


HOLD, REST = 0, 1
NOTES = np.array([-1, -1, *range(60, 72)])  # a hold, a rest, then C4 to B4


def note(pitch: int) -> int:
    return list(NOTES).index(pitch)


def test_a_note_of_the_call_follows_the_call_s_motion_from_where_the_answer_stands():
    """The call goes C4 E4 (two degrees up). An answer that stands on C4 is proposed the call's E4; one that
    stands on D4 the note two degrees up from there, F4 (not E4, a step the call never made, nor F#4); one on a
    black key nothing, as is the call's first note whatever the answer played before it."""
    call = {16: note(60), 17: HOLD, 18: note(64), 19: HOLD}
    for answered, proposed in ((60, note(64)), (62, note(65)), (61, None)):
        echo = Echo(call, 16, 16, NOTES)
        assert echo.proposal(16) == note(60)  # nothing of the answer heard yet: the call's own note
        echo.heard(16, note(answered))
        assert echo.proposal(17) == HOLD
        assert echo.proposal(18) == proposed, answered
    echo = Echo(call, 16, 16, NOTES)
    echo.heard(16, note(62))
    mixed = echo.mix(np.full(len(NOTES), 1 / len(NOTES)), 18)
    assert mixed.argmax() == note(65) and mixed[note(64)] == mixed[note(66)]


def test_a_note_moves_in_the_scale_of_the_answer_s_transposition():
    """Heard in C minor (3 semitones above the white keys' A minor), the call C4 E-flat4 is two degrees up: from
    D4 that reaches F4, from G4 B-flat4 (on the white keys' scale: nothing, B-flat is off it)."""
    call = {16: note(60), 18: note(63)}
    for answered, proposed in ((62, note(65)), (67, note(70))):
        echo = Echo(call, 16, 16, NOTES, key_offset=3)
        echo.heard(16, note(answered))
        assert echo.proposal(18) == proposed, answered
    echo = Echo(call, 16, 16, NOTES)
    echo.heard(16, note(67))
    assert echo.proposal(18) is None


def test_the_answer_s_last_note_is_part_of_what_a_snapshot_keeps():
    call = {16: note(60), 18: note(64)}
    echo = Echo(call, 16, 16, NOTES)
    echo.heard(16, note(60))
    kept = echo.snapshot()
    echo.heard(17, note(62))
    assert echo.proposal(18) == note(65)
    echo.restore(kept)
    assert echo.proposal(18) == note(64)


def test_an_echo_s_own_odds_replace_the_default():
    """A model's card may set its echo's odds (``Model.echo_odds``); 0 leaves the model's probabilities as they are."""
    probabilities = model(0.1, 3)
    for odds in (0.0, 30.0):
        mixed = Echo({16: 3}, 16, 16, PITCHES, odds=odds).mix(probabilities, 16)
        assert mixed[3] / (1 - mixed[3]) == pytest.approx((1 + odds * WEIGHT / 2) * 0.1 / 0.9)
