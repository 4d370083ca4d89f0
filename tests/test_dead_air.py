"""Answer sooner (``phrase_end = "music"``) and trade bars (``turns``), in simulated time (issue 28)."""

from __future__ import annotations

import dataclasses

import mido
import pytest

from improvd.core.engine import GRACE, Engine, Settings
from improvd.core.model import load_model
from improvd.core.notes import PlayedNote
from improvd.core.simulate import drive, perform
from tests.helpers import call, favouring, run

BPM = 120
STEP = 60 / BPM / 4
FOUR_BARS = [((60, 65, 64, 71)[k % 4], 4 * k, 4) for k in range(16)]  # quarters on the white keys, to step 64
TWO_BARS = FOUR_BARS[:8]
BAR_5 = 64 * STEP + GRACE[0]  # the 4th bar line of FOUR_BARS, and the grace of a call played exactly on the grid


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def first_note(sent: list, after: float) -> float:
    return min(t.time for t in sent if t.message.type == "note_on" and t.message.velocity and t.time > after)


def event(events: list, name: str):
    return next(e for e in events if e.name == name)


def legato(notes: list[tuple[int, float, float]]) -> list[tuple[float, mido.Message]]:
    """``notes`` played exactly on the grid, each released on the next one's onset (as evaluate plays a call)."""
    messages = [(start * STEP, mido.Message("note_on", note=pitch, velocity=90)) for pitch, start, _ in notes]
    messages += [((start + length) * STEP, mido.Message("note_off", note=pitch)) for pitch, start, length in notes]
    return sorted(messages, key=lambda item: (item[0], item[1].type == "note_on"))


@pytest.mark.parametrize("played", [call, legato], ids=["released 10 ms early", "released on the bar line"])
def test_a_phrase_that_filled_four_bars_is_answered_on_its_bar_line_late_by_the_grace(model, played):
    """The call fills 4 bars and nothing sounds or begins by the grace (10 ms, the call played on the grid) after
    the bar line at step 64: the answer starts on that bar line, the model drawing its downbeat (here forced: it
    favours holds), the first note late by the grace, the only late one; with ``"silence"`` 8 silent 16ths, then
    the next bar line (step 80). Before, two silent 16ths ended it (step 66) and the first note came on the next
    beat (68): bar 5 had no downbeat."""
    holding = favouring(model, "_")  # a model that would hold the silence: its first note is the latest allowed
    music = Engine(holding, Settings(bpm=BPM, min_call_steps=4, response_bars=2, phrase_end="music"), seed=1)
    sent, events = run(music, played(FOUR_BARS), 110)
    assert event(events, "phrase_end").time == pytest.approx(BAR_5)
    assert first_note(sent, 64 * STEP - 0.001) == pytest.approx(BAR_5)
    start = event(events, "response_start").data
    assert (start["first_step"], start["entry"]) == (64, 64)
    ons = sorted(t.time for t in sent if t.message.type == "note_on" and t.message.velocity and t.time > 8.0)
    assert all(abs(t / STEP - round(t / STEP)) < 1e-9 for t in ons[1:])  # the rest on the grid
    assert event(events, "response_end").time == pytest.approx(96 * STEP)  # two bars: it still ends on a bar line
    silence = Engine(holding, Settings(bpm=BPM, min_call_steps=4, response_bars=2, phrase_end="silence"), seed=1)
    sent, events = run(silence, call(FOUR_BARS), 120)
    assert event(events, "phrase_end").time == pytest.approx(72 * STEP)
    assert first_note(sent, 64 * STEP) == pytest.approx(80 * STEP)


def test_a_first_call_that_moves_the_key_is_answered_as_soon_as_one_on_the_white_keys(model):
    """The spare LSTM hears a call in G major on the white keys while it is played, so a fresh engine's first call
    ends on its bar line too. Before, the priming began at the call's second silent 16th and the phrase end waited
    for it (step 69 at 16 steps a tick)."""
    in_g = [((67, 72, 71, 66)[k % 4], 4 * k, 4) for k in range(16)]  # F sharp: the collection of G major
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    sent, events = run(engine, call(in_g), 110)
    assert event(events, "phrase_end").time == pytest.approx(BAR_5)
    assert event(events, "response_start").data["transposition"] == 5  # G major moved onto the white keys
    assert first_note(sent, 64 * STEP - 0.001) == pytest.approx(BAR_5)


def test_a_pickup_counts_with_the_bar_it_leads_into(model):
    notes = [(59, 8, 8), *((p, s + 16, n) for p, s, n in FOUR_BARS)]  # half a bar of pickup, then 4 bars to 80
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    _, events = run(engine, call(notes), 100)
    assert event(events, "phrase_end").time == pytest.approx(80 * STEP + GRACE[0])


def test_a_call_that_falls_silent_on_its_last_beat_ends_on_the_bar_line(model):
    """Released on the last beat line before the bar line that ends its 4th bar (a half note, then a quarter's
    rest): the answer starts on that bar line, its first note there at the latest. Before, a silence begun on the
    beat line waited for ``phrase_end_steps`` (step 68) and the first note came a bar later."""
    notes = [*FOUR_BARS[:-2], (71, 56, 4)]  # released at step 60
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    sent, events = run(engine, call(notes), 110)
    assert event(events, "phrase_end").time == pytest.approx(63 * STEP)  # the bar line's step opens next
    assert event(events, "response_start").data["first_step"] == 64
    assert first_note(sent, 60 * STEP) == pytest.approx(64 * STEP)


def test_notes_released_early_at_the_fourth_bar_line_are_no_phrase_end(model):
    """A player who releases each quarter a 16th early leaves a 16th of silence before every bar line: at the 4th
    that is the call's own articulation, not its end. One phrase end, after the 8th bar: two silent 16ths (the
    next bar line passes its grace with no note begun. Before, the answer came in after the 4th bar and the player's
    next note stopped it."""
    detached = [((60, 65, 64, 71)[k % 4], 4 * k, 3) for k in range(32)]  # 8 bars, the last released at step 127
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    _, events = run(engine, call(detached), 170)
    assert [e.time for e in events if e.name == "phrase_end"] == [pytest.approx(128 * STEP + GRACE[0])]
    assert not any(e.name == "barge_in" for e in events)


def test_a_beat_of_half_notes_gets_the_first_note_by_the_next_quarter(model):
    """In 4/2 the beat is a half note: a call released 10 ms before its 4th bar line is answered on that bar line,
    as in 4/4; one released after the grace (its silence begun on the bar line: two silent 16ths end it) gets its
    first note by the next quarter line (step 132, a beat of the answer's grid a player counts in quarters), not the
    next half-note beat (step 136)."""
    notes = [((60, 65, 64, 71)[k % 4], 8 * k, 8) for k in range(16)]  # 4 bars of 4/2 in half notes, to step 128
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, meter="4/2", phrase_end="music"), seed=1)
    sent, events = run(engine, call(notes), 200)
    assert event(events, "phrase_end").time == pytest.approx(128 * STEP + GRACE[0])
    assert first_note(sent, 128 * STEP - 0.001) == pytest.approx(128 * STEP + GRACE[0])
    held = [*notes[:-1], (notes[-1][0], notes[-1][1], 8.24)]  # released 20 ms after the bar line: past the grace
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, meter="4/2", phrase_end="music"), seed=1)
    sent, events = run(engine, call(held), 200)
    assert event(events, "phrase_end").time == pytest.approx(130 * STEP)
    assert first_note(sent, 129 * STEP) == pytest.approx(132 * STEP)


def test_a_silence_in_the_last_half_bar_ends_the_call_on_the_bar_line(model):
    """Released two beats before the bar line that ends the 4th bar (a half-bar rest closes the phrase): the answer
    starts on that bar line, its first note there at the latest. Before, the silence rule ended it at step 64 and
    the first note came on the next beat (68)."""
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    sent, events = run(engine, call(FOUR_BARS[:-2]), 110)  # released at step 56
    assert event(events, "phrase_end").time == pytest.approx(63 * STEP)
    assert first_note(sent, 56 * STEP) == pytest.approx(64 * STEP)


def test_earlier_in_the_bar_the_silence_ends_it_and_the_answer_enters_by_the_next_beat(model):
    notes = [*FOUR_BARS[:-4], (64, 48, 2)]  # released at step 50, half a beat after the bar's second beat line
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    sent, events = run(engine, call(notes), 110)
    assert event(events, "phrase_end").time == pytest.approx(58 * STEP)  # phrase_end_steps: 50 to 57
    assert first_note(sent, 50 * STEP) == pytest.approx(60 * STEP)  # the first step is 59, the next beat 60
    assert event(events, "response_start").data["entry"] == 64  # "silence" would force it there: a bar line


def test_a_rest_after_two_bars_or_a_two_bar_call_waits_for_the_silence(model):
    """A call is heard as over at once only where a phrase ends, after its 4th or 8th bar: a rest after the 2nd bar
    of a call that goes on is no phrase end, nor is the end of a call of 2 bars."""
    rest = [*FOUR_BARS[:8], *FOUR_BARS[9:]]  # silent from the bar line at step 32 to 36
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    _, events = run(engine, call(rest), 100)
    assert [e.time for e in events if e.name == "phrase_end"] == [pytest.approx(BAR_5)]
    short = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    _, events = run(short, call(FOUR_BARS[:8]), 60)  # two bars, silent from step 32
    assert event(events, "phrase_end").time == pytest.approx(40 * STEP)


def test_a_long_note_never_ends_the_phrase_early(model):
    """A whole note held through bar 2 (released 10 ms early, legato) is no silence: one phrase end, after it all."""
    long_note = [*FOUR_BARS[:4], (67, 16, 16), *FOUR_BARS[8:]]
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    _, events = run(engine, call(long_note), 100)
    assert [e.time for e in events if e.name == "phrase_end"] == [pytest.approx(BAR_5)]
    assert not any(e.name == "barge_in" for e in events)


def test_turns_trade_bars_from_the_bar_line_after_the_players_last(model):
    """turns = 2: the player's two bars (a pickup before them belongs to them), improvd's two from
    the bar line after them however early the player stopped, then the player's again: no bar between turns."""
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, turns=2), seed=1)
    first_turn = [(59, 12, 4), (60, 16, 4), (62, 20, 8), (64, 28, 4)]  # a pickup, then silent from step 32
    second_turn = [(p, s + 80, n) for p, s, n in TWO_BARS[:5]]  # from improvd's last bar line, for 20 steps
    sent, events = run(engine, call(first_turn + second_turn), 150)
    starts = [e.data for e in events if e.name == "response_start"]
    assert [(s["first_step"], s["entry"], s["steps"]) for s in starts] == [(48, 48, 32), (112, 112, 32)]
    assert first_note(sent, 32 * STEP) == pytest.approx(48 * STEP)  # the forced note on the bar line itself
    assert first_note(sent, 100 * STEP) == pytest.approx(112 * STEP)
    assert [e.time for e in events if e.name == "response_end"] == [pytest.approx(80 * STEP), pytest.approx(144 * STEP)]
    assert not any(e.name == "barge_in" for e in events)


def test_turns_set_while_a_call_is_played_end_that_calls_turn(model):
    """``turns`` set to a number of bars in the middle of a call makes that call a turn: it ends on the bar line
    after its Nth bar, as if turns had been set before it began (it was never answered, nor any turn after it)."""
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM), seed=1)
    events = []
    for boundary in drive(engine, call(FOUR_BARS[:12]), 120):  # quarters from step 0 to 48
        if boundary.time == pytest.approx(20 * STEP):
            engine.update(boundary.time, turns=2)
        events += boundary.events
    starts = [e.data["first_step"] for e in events if e.name == "response_start"]
    assert starts[:1] == [32]  # the bar line after the call's 2nd bar


def test_turns_play_the_other_settings_rules_out(model):
    """A call shorter than min_call_steps still has its turn answered, and response_bars does not set its length."""
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, turns=1, min_call_steps=64, response_bars=4), seed=1)
    _, events = run(engine, call([(60, 0, 2)]), 40)
    start = event(events, "response_start").data
    assert (start["first_step"], start["steps"]) == (16, 16)


def test_a_note_on_the_last_16th_of_a_turn_neither_stops_the_answer_nor_starts_a_turn(model):
    """The answer is planned at the tick that opens the turn's last 16th: a note played on it comes too late to be
    heard and is said to be ignored; the answer plays on from the bar line, and the next turn is the player's."""
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, turns=1), seed=1)
    notes = [(60, 0, 4), (64, 4, 4), (65, 8, 7), (71, 15, 1), *((p, s + 32, n) for p, s, n in TWO_BARS[:4])]
    sent, events = run(engine, call(notes), 80)
    assert not any(e.name == "barge_in" for e in events)
    assert [e.data for e in events if e.name == "notes_ignored"] == [{"reason": "turn over", "notes": 1}]
    starts = [e.data["first_step"] for e in events if e.name == "response_start"]
    assert starts == [16, 48]  # the player's second turn, from the bar line after improvd's, answered after it
    assert first_note(sent, 15 * STEP) == pytest.approx(16 * STEP)


def late(notes: list[tuple[int, float, float]], seconds: float) -> list[tuple[float, mido.Message]]:
    """``notes`` as ``call`` plays them, each onset ``seconds`` late."""
    return [(t + seconds if m.type == "note_on" else t, m) for t, m in call(notes)]


def test_a_note_within_the_grace_continues_the_call(model):
    """A note 8 ms after the 4th bar line (within the 10 ms grace of a call played on the grid) goes on with the
    call: no answer there, one after its 8th bar (its grace 12 ms, that note the call's latest). Before, the note on
    the bar line began the 5th bar in any case."""
    eight_bars = [(p, s + 64, n) for p, s, n in FOUR_BARS]
    messages = sorted(call(FOUR_BARS) + late(eight_bars[:1], 0.008) + call(eight_bars[1:]), key=lambda item: item[0])
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    _, events = run(engine, messages, 170)
    assert [e.time for e in events if e.name == "phrase_end"] == [pytest.approx(128 * STEP + 0.012)]
    assert not any(e.name == "barge_in" for e in events)


def test_the_grace_is_half_as_late_again_as_the_players_latest_onset(model):
    """A player whose notes land up to 20 ms late gets a grace of 30 ms: a note 25 ms after the 4th bar line goes on
    with the call, and makes the grace 37.5 ms, after which the silence after the 8th is answered. At most a third
    of a 16th and 40 ms: at 240 BPM (62.5 ms 16ths) the same player gets 20.8 ms."""
    played = FOUR_BARS + [(p, s + 64, n) for p, s, n in FOUR_BARS]
    messages = call(played[:3]) + late(played[3:4], 0.02) + call(played[4:16]) + late(played[16:17], 0.025)
    messages += call(played[17:])
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    sent, events = run(engine, sorted(messages, key=lambda item: item[0]), 170)
    assert [e.time for e in events if e.name == "phrase_end"] == [pytest.approx(128 * STEP + 0.0375)]
    assert first_note(sent, 128 * STEP) == pytest.approx(128 * STEP + 0.0375)
    fast = Engine(favouring(model, "_"), Settings(bpm=240, min_call_steps=4, phrase_end="music"), seed=1)
    quick = 60 / 240 / 4
    messages = [(t / STEP * quick, m) for t, m in call(FOUR_BARS)]
    messages[6] = (messages[6][0] + 0.02, messages[6][1])  # the 4th note_on, 20 ms late
    _, events = run(fast, sorted(messages, key=lambda item: item[0]), 110)
    assert event(events, "phrase_end").time == pytest.approx(64 * quick + quick / 3)


def test_a_note_after_the_grace_barges_in_on_the_answer_begun(model):
    """A note 20 ms after the 4th bar line comes after the 10 ms grace: the answer began on the bar line (its first
    note at the grace), and the note stops it as any note played over an answer does; the call goes on and is
    answered after its 8th bar."""
    eight_bars = [(p, s + 64, n) for p, s, n in FOUR_BARS]
    messages = sorted(call(FOUR_BARS) + late(eight_bars[:1], 0.02) + call(eight_bars[1:]), key=lambda item: item[0])
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    sent, events = run(engine, messages, 170)
    ends = [e.time for e in events if e.name == "phrase_end"]
    assert ends == [pytest.approx(BAR_5), pytest.approx(128 * STEP + 0.03)]  # a grace from that late note now
    assert event(events, "barge_in").time == pytest.approx(64 * STEP + 0.02)
    assert first_note(sent, 64 * STEP - 0.001) == pytest.approx(BAR_5)  # sounded, then released by the barge-in
    assert [t.time for t in sent if t.message.type == "note_off" and t.source == "improvd"][:1] == [
        pytest.approx(64 * STEP + 0.02)
    ]


def test_a_file_that_rests_on_its_fifth_downbeat_is_answered_after_its_last_note(model):
    """``improvd continue`` and evaluate hold the call whole: an 8-bar call whose 5th bar opens with a rest is not
    ended on its 4th bar line by the grace (nor by its silence), but after its 8th. Before, the answer began on the
    4th bar line and the file's next note stopped it (its notes left in the response)."""
    rests = [(p, s, n) for p, s, n in FOUR_BARS] + [(p, s + 64, n) for p, s, n in FOUR_BARS[1:]]  # silent 64 to 68
    notes = [PlayedNote(p, s * STEP, (s + n) * STEP, 90) for p, s, n in rests]
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, response_bars=2), seed=1)
    performance = perform(engine, notes)
    assert [e.time for e in performance.events if e.name == "phrase_end"] == [pytest.approx(128 * STEP + GRACE[0])]
    assert not any(e.name == "barge_in" for e in performance.events)
    assert min(n.start for n in performance.response) == pytest.approx(128 * STEP + GRACE[0])


def test_a_call_silent_from_two_16ths_before_its_bar_line_is_answered_on_it_at_the_grace(model):
    """Released two 16ths before the 4th bar line (an 8th rest closes the phrase): its silence is long enough at the
    bar line's tick, and the grace answers from that bar line, the first note there. Before, the bar line's tick
    answered from the 16th after it, the first note a beat in (step 68)."""
    notes = [*FOUR_BARS[:-1], (71, 60, 2)]  # released at step 62
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    sent, events = run(engine, call(notes), 110)
    assert event(events, "phrase_end").time == pytest.approx(BAR_5)
    assert first_note(sent, 62 * STEP) == pytest.approx(BAR_5)


def test_a_call_that_moves_the_key_in_its_last_bars_is_answered_at_its_grace_in_that_key(model):
    """The call moves from C to sharps in its 3rd bar (F sharp outlasts F), too late for the spare LSTM to catch up
    at two steps a 16th: in the last bar it hurries to the bar line (at most PRIME_STEPS a tick), and what little is
    left is heard at the grace. Before, it had not caught up there: two silent 16ths ended the call (step 66)."""
    notes = [(60, 0, 4), (65, 4, 4), (64, 8, 4), (65, 12, 4), (67, 16, 4), (62, 20, 4), (64, 24, 4), (60, 28, 4)]
    notes += [(66, 32, 8), (67, 40, 8), (66, 48, 8), (62, 56, 4), (67, 60, 4)]
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    sent, events = run(engine, call(notes), 110)
    assert event(events, "phrase_end").time == pytest.approx(BAR_5)
    silence = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="silence"), seed=1)
    moved = event(run(silence, call(notes), 110)[1], "response_start").data["transposition"]
    assert event(events, "response_start").data["transposition"] == moved != 0  # heard in the key it moved to
    assert first_note(sent, 64 * STEP - 0.001) == pytest.approx(BAR_5)


def test_a_model_with_two_transpositions_answers_a_call_that_moves_the_key_at_its_grace(model):
    """A model that also hears calls in its minor tonic's transposition (its own candidates, two hearings): the
    call's last note, an F sharp a 16th before the bar line, moves it from C to G, the candidates hear it again
    and catch up as far as their steps a tick allow by the bar line; what is left (at most STYLE_STEPS) the choice
    hears at once at the grace. Before, any step left ended the call by the silence (step 66), as it did three of
    11 Essen test calls that end on a bar line with the shipped model (bench/dead_air.py)."""
    notes = [(60, 0, 4), (64, 4, 4), (67, 8, 4), (64, 12, 4), (62, 16, 4), (71, 20, 4), (69, 24, 4), (67, 28, 4)]
    notes += [(60, 32, 4), (64, 36, 4), (67, 40, 4), (72, 44, 4), (71, 48, 4), (69, 52, 4), (67, 56, 6), (66, 62, 2)]
    two = favouring(dataclasses.replace(model, card={**model.card, "minor_tonic": "C"}), "_")
    engine = Engine(two, Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    sent, events = run(engine, call(notes), 110)
    assert event(events, "phrase_end").time == pytest.approx(BAR_5)
    assert first_note(sent, 64 * STEP - 0.001) == pytest.approx(BAR_5)


@pytest.mark.parametrize("past", [2, 4, 8])
def test_a_last_note_held_past_the_fourth_bar_line_ends_the_call_two_16ths_after_its_release(model, past):
    """The call's last note, begun in bar 4, is held ``past`` 16ths into bar 5 (up to half a bar), then released:
    the call is over two silent 16ths later and the answer's first note comes by the next beat after that (past 2:
    1.5 beats after the release, was 2.5). Before,
    a silence begun after the bar line waited for ``phrase_end_steps`` (8) silent 16ths (play test: 2.3-3 beats of
    dead air at 104 BPM)."""
    notes = [*FOUR_BARS[:-1], (72, 60, 4 + past)]  # released 10 ms before step 64 + past
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    sent, events = run(engine, call(notes), 120)
    over = 64 + past + 2
    assert event(events, "phrase_end").time == pytest.approx(over * STEP)
    assert first_note(sent, (64 + past) * STEP) <= -(-(over + 1) // 4) * 4 * STEP + 1e-9  # the answer opens at over + 1
    assert not any(e.name == "barge_in" for e in events)


def test_a_note_held_across_the_fourth_bar_line_then_a_new_note_is_no_phrase_end(model):
    """Held across the bar line, released, then the call goes on within two 16ths: one phrase end, after it all."""
    notes = [*FOUR_BARS[:-1], (72, 60, 8), (71, 69, 3), *[(67, 72 + 4 * k, 4) for k in range(4)]]
    engine = Engine(favouring(model, "_"), Settings(bpm=BPM, min_call_steps=4, phrase_end="music"), seed=1)
    _, events = run(engine, call(notes), 140)
    assert [e.name for e in events].count("phrase_end") == 1
    assert event(events, "phrase_end").time > 88 * STEP
