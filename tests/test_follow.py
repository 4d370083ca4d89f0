"""Following the player's tempo without a click: the estimate against known tempi, and the answer on the
player's grid, in simulated time."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

import mido
import pytest

from improvd.core import engine as engine_module
from improvd.core import follow as follow_module
from improvd.core import priming as priming_module
from improvd.core.engine import Engine, Settings
from improvd.core.model import load_model
from improvd.core.runtime import LSTMRuntime
from improvd.core.tempo import MAX_BPM, MIN_BPM, MIN_ONSETS, estimate
from improvd.daemon.aside import Aside
from improvd.offline.notation import essen_tune, melody_of

TUNES = ["kinder0#1", "erk5#5", "erk10#112", "han1#3", "ballad10#43"]


def played(ident: str, bpm: float, start: float, jitter: float, quarters: float = 16.0, seed: int = 1):
    """(onset, release, pitch, velocity) of a tune's notes in its first ``quarters``, at ``bpm``, humanly."""
    rng = random.Random(seed)
    notes, position = [], 0.0
    for note in melody_of(essen_tune(ident).score):
        if note.pitch is not None and position < quarters:
            onset = start + position * 60 / bpm + rng.uniform(-jitter, jitter)
            end = start + min(position + note.quarter_length, quarters) * 60 / bpm - 0.03
            notes.append((onset, end, note.pitch, rng.randint(60, 100)))
        position += note.quarter_length
    return notes


@pytest.mark.parametrize("bpm", [66, 84, 96, 120, 144, 180])
@pytest.mark.parametrize("ident", TUNES)
def test_the_tempo_of_real_tunes_played_with_jitter(ident, bpm):
    """Within 1% and on the beat, when the player starts within 20% of the tempo last heard (the prior)."""
    notes = played(ident, bpm, 5.0, 0.008)
    beat = estimate([n[0] for n in notes], prior_bpm=bpm * 1.15)
    assert beat.bpm == pytest.approx(bpm, rel=0.01)
    assert (beat.origin - 5.0) / (60 / bpm) == pytest.approx(0, abs=0.1)  # the first onset's beat


def test_running_16ths_far_from_the_last_tempo_are_heard_at_double_tempo_rhythm_intact():
    """kinder0#3 is mostly 16ths, which fit an 8th grid at double tempo as well as its own 8th grid: near the last
    tempo the prior hears it right; far above it (40% or more), at double tempo (the octave is ambiguous)."""
    notes = played("kinder0#3", 96, 5.0, 0.008)
    onsets = [n[0] for n in notes]
    assert estimate(onsets, prior_bpm=96 * 1.15).bpm == pytest.approx(96, rel=0.01)
    assert estimate(onsets, prior_bpm=96 * 0.85).bpm == pytest.approx(96, rel=0.01)
    assert estimate(onsets, prior_bpm=96 * 1.6).bpm == pytest.approx(192, rel=0.01)


def test_too_few_onsets_keep_the_last_tempo():
    assert estimate([0.0, 0.5, 1.0, 1.5, 2.0][: MIN_ONSETS - 1]) is None


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def follow(engine: Engine, notes, until: float, extra=(), after_tick=lambda boundary: None) -> tuple[list, list]:
    """Drive ``engine`` as the daemon's timing thread does: tick where the engine says its next boundary is; ``extra``
    (time, message) are played too, and ``after_tick`` is called after each tick."""
    messages = sorted(
        [(on, mido.Message("note_on", note=p, velocity=v)) for on, _, p, v in notes]
        + [(off, mido.Message("note_off", note=p)) for _, off, p, _ in notes]
        + list(extra),
        key=lambda item: item[0],
    )
    sent, events = [], []
    engine.start(0.0)
    boundary = 0.0
    while boundary < until:
        while messages and messages[0][0] < boundary:
            time, message = messages.pop(0)
            sent += engine.feed(message, time)
        sent += engine.pop_due(boundary)
        engine.tick(boundary)
        events += engine.drain_events()
        after_tick(boundary)
        boundary = engine.next_boundary()
    return sent + engine.pop_due(math.inf), events


def test_a_call_at_96_is_answered_at_96_on_the_players_grid(repo_root):
    """The engine's grid runs at 120 from 0; the player plays from 1.37 s at 96 BPM, off that grid. The shipped
    model (the tiny one knows little of metre) answers on the player's 8th grid."""
    shipped = load_model(repo_root / "models" / "essen")
    settings = Settings(bpm=120, follow_tempo=True, min_call_steps=4, response_bars=2)
    notes = played("erk5#5", 96, 1.37, 0.008)
    sent, events = follow(Engine(shipped, settings, seed=2), notes, 40.0)
    tempo = next(e for e in events if e.name == "tempo")
    assert tempo.data["bpm"] == pytest.approx(96, rel=0.005)
    step = 60 / tempo.data["bpm"] / 4
    origin = 1.37  # the player's first beat
    answer = [t.time for t in sent if t.message.type == "note_on" and t.time > notes[-1][1]]
    assert answer
    steps = [(t - origin) / step for t in answer]
    late = [abs(s - round(s)) * step for s in steps]
    assert max(late) < 0.02  # within 20 ms of the player's grid extrapolated (the tempo's 0.5% error included)
    on_eighths = sum(round(s) % 2 == 0 for s in steps) / len(steps)
    assert on_eighths >= 0.8
    start = next(e for e in events if e.name == "response_start")
    assert start.data["entry"] % 16 == 0  # bar lines counted from the player's first beat


def test_the_followed_call_is_heard_as_the_tune_is_written(model):
    """Quantised on the player's grid, the call's symbols are the tune's own encoding; on the engine's 96 BPM
    grid they would not be."""
    from improvd.core.encoding import encode

    settings = Settings(bpm=96, follow_tempo=True, min_call_steps=4, buffer_steps=256, phrase_end_steps=16)
    engine = Engine(model, settings, seed=2)
    notes = played("kinder0#1", 84, 0.61, 0.006)
    follow(engine, notes, notes[-1][1] + 16 * 60 / 84 / 4 + 0.05)
    expected = encode(melody_of(essen_tune("kinder0#1").score))[:64]
    heard = engine._buffer.last_note_symbols()
    assert heard[:60] == expected[:60]
    fixed = Engine(model, Settings(bpm=96, min_call_steps=4, buffer_steps=256, phrase_end_steps=16), seed=2)
    follow(fixed, notes, notes[-1][1] + 16 * 60 / 84 / 4 + 0.05)
    assert fixed._buffer.last_note_symbols()[:60] != expected[:60]


# --- what players play: swing, 16th runs, triplets, rubato and a drifting tempo, from known tempi ------------------


@dataclass(frozen=True)
class Performance:
    """Onsets at beat positions played at a tempo that moves from ``start_bpm`` to ``end_bpm`` (in a straight line
    over the beats, reaching ``end_bpm`` at the last onset), from ``start`` seconds, each off by up to ``jitter``."""

    beats: tuple[float, ...]
    start_bpm: float
    end_bpm: float
    start: float = 1.37
    jitter: float = 0.01

    def time(self, beat: float) -> float:
        """When ``beat`` falls on the player's grid: the tempo's ramp, then straight on at the end tempo."""
        last = max(self.beats)
        slope = (self.end_bpm - self.start_bpm) / last
        within = min(beat, last)
        seconds = (
            60 * within / self.start_bpm if slope == 0 else 60 / slope * math.log(1 + slope * within / self.start_bpm)
        )
        return self.start + seconds + max(0.0, beat - last) * 60 / self.end_bpm

    def notes(self, seed: int = 4) -> list[tuple[float, float, int, int]]:
        """(onset, release, pitch, velocity): a scale up and down, each note released just before the next."""
        rng = random.Random(seed)
        ons = [self.time(b) + rng.uniform(-self.jitter, self.jitter) for b in self.beats]
        offs = [*(later - 0.03 for later in ons[1:]), ons[-1] + 60 / self.end_bpm]
        pitches = [60 + [0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2][k % 14] for k in range(len(ons))]
        return [(on, off, pitch, rng.randint(70, 100)) for on, off, pitch in zip(ons, offs, pitches, strict=True)]

    def off_grid(self, time: float) -> float:
        """Seconds from ``time`` to the nearest 16th of the player's grid (extrapolated past the call)."""
        low, high = -4.0, max(self.beats) + 64
        for _ in range(60):  # the beat at ``time``, by bisection
            middle = (low + high) / 2
            low, high = (middle, high) if self.time(middle) < time else (low, middle)
        sixteenth = round(low * 4) / 4
        return abs(time - self.time(sixteenth))


SWING = (*(b + offbeat for b in range(16) for offbeat in (0, 2 / 3)), 16)  # 8ths swung 2:1, then a downbeat
TRIPLETS = (*(b + t for b in range(16) for t in ((0, 1 / 3, 2 / 3) if b % 2 else (0, 2 / 3))), 16)
SCALE = tuple(k / 4 for k in range(33))  # two bars of running 16ths and a downbeat
EIGHTHS = tuple(b / 2 for b in range(33))
FOLLOWED = {
    "swing at 92": (Performance(SWING, 92, 92), 96),
    "triplets at 80": (Performance(TRIPLETS, 80, 80), 84),
    "16ths at 110": (Performance(SCALE, 110, 110), 110),
    "16ths at 110, bpm 100": (Performance(SCALE, 110, 110), 100),
    "8ths at 100 with 15 ms rubato": (Performance(EIGHTHS, 100, 100, jitter=0.015), 100),
    "accelerando 100 to 105": (Performance(EIGHTHS, 100, 105, jitter=0.008), 100),
    "ritardando 120 to 114": (Performance(EIGHTHS, 120, 114, jitter=0.008), 120),
}


@pytest.mark.parametrize(("performance", "bpm"), FOLLOWED.values(), ids=FOLLOWED.keys())
def test_the_tempo_at_the_end_of_what_players_play(performance, bpm):
    """Within 2% of the tempo played at the call's end, from a ``bpm`` near it, and on the call's first beat."""
    beat = estimate([n[0] for n in performance.notes()], prior_bpm=bpm)
    assert beat.bpm == pytest.approx(performance.end_bpm, rel=0.02)
    assert abs(beat.origin - performance.start) < 0.03


@pytest.mark.parametrize(("start_bpm", "end_bpm"), [(100, 105), (120, 114), (90, 99)])
def test_a_tempo_ramp_played_exactly_is_heard_exactly(start_bpm, end_bpm):
    """The tempo moving in a straight line over the beats, with no jitter: heard at its end tempo and on its grid
    16 beats past the call. A parabola through the onsets (the beat period moving in a straight line) heard 100 to
    105 at 105.05 and put the 16th beat after the call 4.7 ms early."""
    performance = Performance(EIGHTHS, start_bpm, end_bpm, jitter=0.0)
    beat = estimate([n[0] for n in performance.notes()], prior_bpm=start_bpm)
    assert beat.bpm == pytest.approx(end_bpm, rel=1e-4)
    for position in (0, 8, 16, 32):
        assert beat.time(position) == pytest.approx(performance.time(position), abs=5e-4)


@pytest.mark.parametrize("extra", [65.6, 66.4, 66.8])
def test_one_note_off_the_grid_at_the_call_s_end_is_no_tempo_drift(extra):
    """Four bars of 8ths at 92 and a quarter, then one more note 0.2-0.4 of a 16th off the grid: the tempo stays
    92, straight on. The parabola through the onsets bent to that last note alone and heard 89.99 (at 66.8), 90.99
    or 93.00: a followed answer drifted 2.4 16ths off the player's grid over its 4 bars (found in a play test)."""
    sixteenth = 60 / 92 / 4
    onsets = [2 * i * sixteenth for i in range(28)] + [56 * sixteenth, extra * sixteenth]
    beat = estimate(onsets, prior_bpm=100)
    assert beat.bpm == pytest.approx(92, rel=1e-4)
    assert beat.start_bpm == 0.0  # a steady tempo


@pytest.mark.parametrize(("performance", "bpm"), FOLLOWED.values(), ids=FOLLOWED.keys())
def test_the_answer_goes_on_on_the_players_grid(model, performance, bpm):
    """The engine's grid starts at 0 at ``bpm``; the player starts at 1.37 s. The answer's notes fall within 20 ms
    of the player's 16th grid as it was heading at the call's end (p90), and its length is whole bars of it."""
    engine = Engine(model, Settings(bpm=bpm, follow_tempo=True, min_call_steps=4), seed=2)
    notes = performance.notes()
    sent, events = follow(engine, notes, notes[-1][1] + 20.0)
    tempo = next(e for e in events if e.name == "tempo")
    assert tempo.data["bpm"] == pytest.approx(performance.end_bpm, rel=0.02)
    answer = [t.time for t in sent if t.message.type == "note_on" and t.message.velocity and t.time > notes[-1][1]]
    assert len(answer) >= 4
    off = sorted(performance.off_grid(time) for time in answer)
    assert off[int(0.9 * (len(off) - 1))] <= 0.020, off


def test_a_jig_in_6_8_is_heard_in_quarter_notes_on_its_dotted_quarter_beat():
    """Six 8ths, then quarter-8th twice, at quarter = 120: in 6/8 (compound) it is 120 from a bpm of 90 to 140,
    its beats the dotted quarters; heard as simple time from 100 the dotted quarter (80) would be taken for the
    quarter, so the engine tells the estimate the metre."""
    figures = ((0, 0.5, 1.0, 1.5, 2.0, 2.5), (0, 1.0, 1.5, 2.5))
    jig = Performance((*(3 * bar + x for bar in range(8) for x in figures[bar % 2]), 24), 120, 120)
    onsets = [n[0] for n in jig.notes()]
    for bpm in (90, 100, 120, 140):
        beat = estimate(onsets, prior_bpm=bpm, compound=True)
        assert beat.bpm == pytest.approx(120, rel=0.02) and abs(beat.origin - jig.start) < 0.03
        assert beat.time(1.5) - beat.time(0) == pytest.approx(0.75, abs=0.01)  # the first dotted quarter
    assert estimate(onsets, prior_bpm=100).bpm == pytest.approx(80, rel=0.02)


@pytest.mark.parametrize(
    "onsets",
    [
        [0, 0.001, 0.002, 0.003, 0.004, 0.005],  # a smear of one chord
        [0, 0.001, 0.002, 5.0, 5.001, 5.002],
        [k * 0.01 for k in range(300)],  # faster than any grid
        [k * 100.0 for k in range(8)],  # slower than any
        [1e6 + k * 0.5 for k in range(8)],  # far from time 0
        [0.2 * k + 0.002 * k * k for k in range(24)],  # slowing down ever faster
        [0.3 * k - 0.004 * k * k for k in range(24)],  # speeding up ever faster
    ],
)
def test_any_onsets_give_a_tempo_the_settings_allow_or_none(onsets):
    for compound in (False, True):
        beat = estimate(onsets, prior_bpm=120, compound=compound)
        assert beat is not None and MIN_BPM <= beat.bpm <= MAX_BPM and math.isfinite(beat.origin)
        assert beat.time(beat.beats(onsets[-1])) == pytest.approx(onsets[-1], abs=1e-6)


@pytest.mark.parametrize("bpm", [80, 92, 120, 140])
def test_8ths_straight_or_swung_are_heard_as_8ths_from_a_bpm_a_fifth_below_or_more_above(bpm):
    """Straight 8ths at 100 fit triplets at 67 and 16ths at 50 as well as 8ths; swung 8ths at 92 fit straight 8ths
    at 138: the prior decides, and a triplet division weighs less than a straight one before the notes are heard."""
    for performance, tempo in ((Performance(EIGHTHS, 100, 100, jitter=0.015), 100), (Performance(SWING, 92, 92), 92)):
        assert estimate([n[0] for n in performance.notes()], prior_bpm=bpm).bpm == pytest.approx(tempo, rel=0.02)


def test_the_beat_is_plain_floats_for_the_log_and_the_state():
    beat = estimate([n[0] for n in Performance(EIGHTHS, 100, 105).notes()], prior_bpm=100)
    assert all(type(value) is float for value in (beat.bpm, beat.origin, beat.fit, beat.start_bpm, beat.until))


@pytest.mark.parametrize("start_bpm", [80.0, 99.99, 100.0, 100.01, 125.0])
def test_the_replay_places_each_beat_of_a_ramp_where_the_drift_fit_does_bit_for_bit(start_bpm):
    """``Beat.time`` (the replay, in plain floats) and the drift fit (``_ramp_minutes``, on arrays) write the tempo
    ramp's minutes twice: on the series where the ramp is nearly steady, and on ``log1p`` beyond it."""
    import numpy as np

    from improvd.core.tempo import Beat, _ramp_minutes

    beat = Beat(bpm=100.0, origin=1.5, fit=1.0, start_bpm=start_bpm, until=64.0)
    start, slope = beat._ramp()
    beats = np.arange(0, 64.25, 0.25)
    fitted = beat.origin + 60.0 * _ramp_minutes(beats, start, slope)
    assert [beat.time(float(u)) for u in beats] == fitted.tolist()


def test_a_long_call_is_followed_from_its_last_notes_only(model, monkeypatch):
    """A 2,200-note call: the tempo fit took 116 ms on the timing thread and sends went out up to 197 ms late.
    The phrase end now replays the call's last HEARD_MESSAGES messages and fits the last MAX_ONSETS onsets."""
    from improvd.core import follow as follow_module
    from improvd.core import tempo

    fitted, replayed = [], []
    original_fit, original_regrid = tempo._fit, follow_module.regrid
    monkeypatch.setattr(tempo, "_fit", lambda onsets, bpm: fitted.append(len(onsets)) or original_fit(onsets, bpm))
    monkeypatch.setattr(
        follow_module,
        "regrid",
        lambda messages, *rest: replayed.append(len(messages)) or original_regrid(messages, *rest),
    )
    step = 60 / 100 / 4
    notes = [(k * step, (k + 0.8) * step, 60 + (k * 5) % 12, 80) for k in range(2200)]
    engine = Engine(model, Settings(bpm=100, follow_tempo=True, min_call_steps=4), seed=1)
    _, events = follow(engine, notes, 2210 * step)
    assert any(e.name == "tempo" for e in events) and any(e.name == "response_start" for e in events)
    assert fitted and max(fitted) <= tempo.MAX_ONSETS
    assert replayed == [engine_module.HEARD_MESSAGES]


# --- the follow work done aside (the daemon's thread for it: improvd.daemon.aside) ----------------------------------


class Worker:
    """The engine's ``aside``: keeps the work handed to it, to do when ``work`` is called (the daemon's thread does it
    while the phrase end's silence passes). ``fits`` counts the tempo fits; ``at_phrase_end`` says for each phrase end
    whether it did follow work itself (a tempo fit or an LSTM step)."""

    def __init__(self, engine: Engine, monkeypatch) -> None:
        self.handed: list = []
        self.fits = 0
        self.at_phrase_end: list[bool] = []
        self.done_at_phrase_end: list[int] = []  # fits and LSTM steps
        self._work = 0  # fits and LSTM steps so far
        estimate_of, step_of, follow_of = follow_module.estimate, LSTMRuntime.step, engine._follow

        def counted(function):
            def call(*args, **kwargs):
                self._work += 1
                return function(*args, **kwargs)

            return call

        def fit(*args, **kwargs):
            self.fits += 1
            return counted(estimate_of)(*args, **kwargs)

        def followed(time: float) -> None:
            before = self._work
            follow_of(time)
            self.at_phrase_end.append(self._work > before)
            self.done_at_phrase_end.append(self._work - before)

        monkeypatch.setattr(follow_module, "estimate", fit)
        monkeypatch.setattr(LSTMRuntime, "step", counted(step_of))
        engine._follow = followed
        engine._aside = self.handed.append

    def work(self) -> None:
        while self.handed:
            job = self.handed.pop(0)
            if not job.cancelled:
                job.run()


TWO_PHRASES = [  # swing at 92, then the same a minor third up and a little faster, from 30 s
    *Performance(SWING, 92, 92).notes(),
    *((on + 30, off + 30, pitch + 3, v) for on, off, pitch, v in Performance(SWING, 96, 96).notes()),
]
# 1.6 s into the second phrase's closing silence: its follow work was handed over 8 16ths into it (1.3 s), its
# phrase end is due after 12 (2 s)
SILENCE = TWO_PHRASES[-1][1] + 1.6
ASIDE = {  # case: whether each phrase end did the follow work itself, the tempo fits in all, and whether the second
    # phrase end waited for work handed aside at it (its answer then that of a phrase end FOLLOW_WAIT 16ths later)
    "in time": ([False, False], 2, False),  # both done aside
    "too slow": ([True, True], 2, False),  # the work handed over was not done by the phrase end: done there
    "a note in the silence": ([False, False], 3, False),  # the phrase went on: its work is done aside again
    # phrase_end_steps lowered in the silence: it waits for its work, handed over again (which takes the first's fit)
    "phrase end sooner": ([False, False], 2, True),
    "too few notes": ([False, False], 2, False),  # the second tempo cannot be told: the call heard on the engine's grid
}


@pytest.mark.parametrize("case", ASIDE)
def test_the_follow_work_done_aside_gives_the_same_answer_and_is_taken_at_the_phrase_end(model, monkeypatch, case):
    """The phrase end takes the work done aside (no tempo fit on the timing thread) when it finished for that
    phrase end; where it did not, the phrase end does it again itself. The answer is the same as where the work
    aside is never done, and as without ``aside`` where no phrase end waited for it. (The silence rule's wait,
    which these cases time: "music" ends these calls before it.)"""
    settings = Settings(bpm=96, follow_tempo=True, min_call_steps=4, phrase_end_steps=12, phrase_end="silence")
    extra = (
        []
        if case != "a note in the silence"
        else [
            (SILENCE, mido.Message("note_on", note=67, velocity=80)),
            (SILENCE + 0.3, mido.Message("note_off", note=67)),
        ]
    )

    def shorten(engine: Engine, boundary: float) -> None:
        if case == "phrase end sooner" and boundary > SILENCE and engine.settings.phrase_end_steps == 12:
            engine.update(phrase_end_steps=10)

    notes = TWO_PHRASES[: -len(Performance(SWING, 96, 96).notes()) + 5] if case == "too few notes" else TWO_PHRASES
    reference = Engine(model, dataclasses.replace(settings), seed=3)
    without = follow(reference, notes, 60.0, extra, lambda b: shorten(reference, b))
    idle = Engine(model, dataclasses.replace(settings), seed=3)
    idle._aside = lambda work: None  # never done: every phrase end does its work itself
    expected = follow(idle, notes, 60.0, extra, lambda b: shorten(idle, b))
    engine = Engine(model, dataclasses.replace(settings), seed=3)
    worker = Worker(engine, monkeypatch)

    def after_tick(boundary: float) -> None:
        shorten(engine, boundary)
        if case != "too slow":
            worker.work()

    sent, events = follow(engine, notes, 60.0, extra, after_tick)
    assert [(t.time, str(t.message)) for t in sent] == [(t.time, str(t.message)) for t in expected[0]]
    assert events == expected[1] and sum(e.name == "tempo" for e in events) == 2 - (case == "too few notes")
    assert sum(e.name == "response_start" for e in events) == 2
    at_phrase_end, fits, waited = ASIDE[case]
    assert (worker.at_phrase_end, worker.fits) == (at_phrase_end, fits)
    assert (expected == without) is not waited
    step = (
        60 / next(e for e in events if e.name == "tempo").data["bpm"] / 4
    )  # the first phrase's, till the second's end
    ends = [[e.time for e in found if e.name == "phrase_end"][1] for found in (events, without[1])]
    assert ends[0] - ends[1] == pytest.approx(waited * engine_module.FOLLOW_WAIT * step)


def test_a_phrase_the_music_ends_has_its_follow_work_done_aside_from_its_first_silent_step(model, monkeypatch):
    """With ``phrase_end = "music"`` a 4-bar call that falls silent in the beat before its bar line ends on that bar
    line, sooner than its silence would: the work is handed over at its first silent 16th, for that phrase end."""
    step = 60 / 120 / 4
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    notes = [(k * step, (k + 1.5) * step, scale[k // 2 % 8], 80) for k in range(0, 58, 2)]
    notes.append((58 * step, 61 * step - 0.01, 72, 80))  # silent from step 61; bar 5 begins at step 64
    settings = Settings(bpm=120, follow_tempo=True, min_call_steps=4, phrase_end="music")
    expected = follow(Engine(model, dataclasses.replace(settings), seed=3), notes, 20.0)
    engine = Engine(model, dataclasses.replace(settings), seed=3)
    worker = Worker(engine, monkeypatch)
    sent, events = follow(engine, notes, 20.0, after_tick=lambda boundary: worker.work())
    assert [(t.time, str(t.message)) for t in sent] == [(t.time, str(t.message)) for t in expected[0]]
    assert events == expected[1]
    phrase_end = next(e for e in events if e.name == "phrase_end")
    assert phrase_end.time == pytest.approx(63 * step)  # the 16th before the bar line open: 2 silent 16ths in
    assert (worker.at_phrase_end, worker.fits) == ([False], 1)


RESPONDED = {  # case: whether the phrase end did the follow work itself, and the tempo fits in all
    "in time": ([False], 1),  # done aside while the phrase end waited: taken there
    "never done": ([True], 1),  # the aside thread never got to it: the waited phrase end does it itself
    # the call went on in the wait: its work is handed aside again at the next tick and taken at the phrase end, still
    # due then (before, that phrase end did it itself: ([True], 2))
    "a note meanwhile": ([False], 2),
    # a note in the wait's last 16th, after the tick before the phrase end: too late for its work, it begins the next
    # call (before, that phrase end fitted the tempo again and heard the call again itself: ([True], 2))
    "a note in the last 16th": ([False], 1),
}


@pytest.mark.parametrize("case", RESPONDED)
def test_a_respond_now_under_follow_waits_for_its_work_done_aside_and_never_does_it_on_its_tick(
    model, monkeypatch, case
):
    """``respond_now`` after a followed call, long before its silence ends it: no work was handed aside for that
    phrase end, so the tick that answers it would have fitted the tempo itself. It hands the work aside and answers
    FOLLOW_WAIT 16ths later, taking the work if it is finished and doing it itself if not: the same answer either
    way, and a player who plays on in the wait cannot put the answer off again (the work is handed aside again).
    (The silence rule: with "music" this call ends by itself at the tick respond_now answers.)"""
    settings = Settings(bpm=96, follow_tempo=True, min_call_steps=4, phrase_end_steps=12, phrase_end="silence")
    notes = Performance(SWING, 92, 92).notes()
    asked = notes[-1][1] + 0.05  # the call's last release, then at once respond_now (as cmd/respond)
    step = 60 / settings.bpm / 4
    asked_at = math.floor(asked / step + 1) * step  # the tick after which respond_now is asked
    # a note 0.4 s on falls in the wait: after the tick that respond_now asked, before the phrase end it waits for;
    # one 2.3 16ths on falls in the first half of its last 16th (on the engine's grid, a step the phrase end closes)
    played = {"a note meanwhile": asked + 0.4, "a note in the last 16th": asked_at + 2.3 * step}.get(case)
    extra = [] if played is None else [(played, mido.Message("note_on", note=67, velocity=80))]
    if case == "a note in the last 16th":  # released in it too
        extra.append((played + 0.1, mido.Message("note_off", note=67)))

    def run(engine: Engine, work=lambda: None, extra=extra) -> tuple[list, list]:
        state = {"asked": False}

        def after_tick(boundary: float) -> None:
            if boundary > asked and not state["asked"]:
                state["asked"] = True
                engine.respond_now()
            work()

        return follow(engine, notes, 20.0, extra, after_tick)

    idle = Engine(model, dataclasses.replace(settings), seed=3, aside=lambda work: None)  # the work is never done
    expected = run(idle)
    engine = Engine(model, dataclasses.replace(settings), seed=3)
    worker = Worker(engine, monkeypatch)
    sent, events = run(engine, worker.handed.clear if case == "never done" else worker.work)
    assert [(t.time, str(t.message)) for t in sent] == [(t.time, str(t.message)) for t in expected[0]]
    assert events == expected[1]
    assert (worker.at_phrase_end, worker.fits) == RESPONDED[case]
    if case == "a note in the last 16th":  # not in the call answered, nor in its tempo: the same notes as without it
        alone = run(Engine(model, dataclasses.replace(settings), seed=3, aside=lambda work: None), extra=[])
        # (the next call's touch, heard meanwhile, moves a velocity)
        assert [(t.time, t.message.type, t.message.note) for t in sent] == [
            (t.time, t.message.type, t.message.note) for t in alone[0]
        ]
        assert events == alone[1]
    without = run(Engine(model, dataclasses.replace(settings), seed=3))  # no aside: answered at the next tick
    ends = [[e.time for e in found if e.name == "phrase_end"] for found in (events, without[1])]
    assert len(ends[0]) == 1 and ends[0][0] - ends[1][0] == pytest.approx(engine_module.FOLLOW_WAIT * step)
    assert ends[1][0] - asked < 2 * step  # respond_now (after the first tick past ``asked``) answers at the next


def test_a_note_and_its_release_too_late_for_a_followed_phrase_end_leave_no_key_down(model):
    """A note struck and released in the last 16th of ``respond_now``'s wait, after the tick before its phrase end:
    the call replayed on the player's grid hears both on its open step (the note begins the next call, its release
    ends it), so the next call, played after the answer, ends by its silence as it would without them. A release not
    heard there would leave the key down in the replayed call until the stuck-key limit (64 16ths)."""
    settings = Settings(bpm=96, follow_tempo=True, min_call_steps=4, phrase_end_steps=12, phrase_end="silence")
    notes = Performance(SWING, 92, 92).notes()
    asked = notes[-1][1] + 0.05
    step = 60 / settings.bpm / 4
    late = math.floor(asked / step + 1) * step + 2.3 * step  # in the wait's last 16th (see the test above)
    extra = [(late, mido.Message("note_on", note=85, velocity=80)), (late + 0.1, mido.Message("note_off", note=85))]
    again = [(on + 16.5, off + 16.5, pitch, v) for on, off, pitch, v in notes[:8]]  # short, after the answer

    def phrase_ends(extra: list) -> list[float]:
        engine = Engine(model, dataclasses.replace(settings), seed=3, aside=lambda work: None)
        state = {"asked": False}

        def after_tick(boundary: float) -> None:
            if boundary > asked and not state["asked"]:
                state["asked"] = True
                engine.respond_now()

        _, events = follow(engine, notes + again, 30.0, extra, after_tick)
        return [e.time for e in events if e.name == "phrase_end"]

    ends = phrase_ends(extra)
    assert len(ends) == 2 and ends == phrase_ends([])
    assert ends[1] - again[-1][1] < (settings.phrase_end_steps + 2) * step  # the next call's own silence ended it


@pytest.mark.parametrize("ended", ["respond_now", "max_call_steps", "phrase_end_steps 2"])
def test_the_answer_of_a_waited_phrase_end_never_depends_on_the_daemons_thread(model, ended):
    """The daemon's own thread for the work aside (improvd.daemon.aside), whenever it gets to it: the answer is the
    one of an engine whose work aside is never done (every phrase end doing it itself, FOLLOW_WAIT 16ths on)."""
    settings = Settings(bpm=96, follow_tempo=True, min_call_steps=4, phrase_end_steps=2 if ended[-1] == "2" else 12)
    settings.max_call_steps = 40 if ended == "max_call_steps" else 0
    notes = Performance(SWING, 92, 92).notes()
    asked = notes[-1][1] + 0.05

    def run(engine: Engine) -> tuple[list, list]:
        def after_tick(boundary: float) -> None:
            if ended == "respond_now" and asked < boundary <= asked + engine.step_seconds():
                engine.respond_now()

        return follow(engine, notes, 20.0, after_tick=after_tick)

    expected = run(Engine(model, dataclasses.replace(settings), seed=3, aside=lambda work: None))
    sent, events = run(Engine(model, dataclasses.replace(settings), seed=3, aside=Aside()))
    assert [(t.time, str(t.message)) for t in sent] == [(t.time, str(t.message)) for t in expected[0]]
    assert events == expected[1] and any(e.name == "tempo" for e in events)


@pytest.mark.parametrize("ended", ["max_call_steps", "phrase_end_steps 2"])
def test_a_phrase_end_sooner_than_the_work_aside_starts_waits_for_it(model, monkeypatch, ended):
    """A phrase end ``_follow_ahead`` hands no work over for (its call too long, its silence too short) hands it over
    itself and answers FOLLOW_WAIT 16ths later, taking it there: no tempo fit on the timing thread."""
    settings = Settings(bpm=96, follow_tempo=True, min_call_steps=4, phrase_end_steps=2 if ended[-1] == "2" else 12)
    settings.max_call_steps = 40 if ended == "max_call_steps" else 0
    notes = Performance(SWING, 92, 92).notes()
    expected = follow(Engine(model, dataclasses.replace(settings), seed=3, aside=lambda work: None), notes, 20.0)
    engine = Engine(model, dataclasses.replace(settings), seed=3)
    worker = Worker(engine, monkeypatch)
    sent, events = follow(engine, notes, 20.0, after_tick=lambda boundary: worker.work())
    assert [(t.time, str(t.message)) for t in sent] == [(t.time, str(t.message)) for t in expected[0]]
    assert events == expected[1]
    # max_call_steps: the call played on in the wait, its last 16th too: that phrase end took the work handed aside
    # at the tick before it (before, it did the work itself), and what came after began the next call, which its
    # silence ended
    assert worker.at_phrase_end == ([False, False] if ended == "max_call_steps" else [False])


TURN = Performance(EIGHTHS[:16], 100, 100).notes()  # two bars of 8ths at 100, ended well before the turn's end
LAST = {"a 16th before": 2.6, "in the last 16th": 1.6}  # a last note, this many 16ths before the turn's bar line


@pytest.mark.parametrize("played_last", LAST)
def test_a_turn_of_bars_has_its_follow_work_done_aside_before_its_bar_line(model, monkeypatch, played_last):
    """``turns`` in bars: the phrase end is the last tick FOLLOW_LEAD before the bar line that ends the player's
    turn (its 2nd bar from its first beat, at its tempo), whatever is played, so the work is handed aside
    FOLLOW_AHEAD 16ths ahead, and again after each note: the phrase end takes it (and the tempo fit its bars are
    counted on, handed aside at each tick that heard a note). Before, it did the tempo fit and primed an LSTM on the
    call itself (tens of milliseconds of a 256-onset call). A note heard after the tick before it comes too late for
    that work: its turn is over (before, the phrase end fitted the tempo again and stepped the LSTM from that note
    on). The answer is the same either way."""
    settings = Settings(bpm=100, follow_tempo=True, turns=2, min_call_steps=4)
    step = 60 / settings.bpm / 4
    ends = Performance(EIGHTHS[:16], 100, 100).time(8)  # the turn's bar line on the player's grid
    last = (ends - LAST[played_last] * step, ends - (LAST[played_last] - 0.4) * step, 72, 80)
    notes = [*TURN[:12], last]  # a bar and a half of 8ths, then the last note
    expected = follow(Engine(model, dataclasses.replace(settings), seed=3, aside=lambda work: None), notes, 12.0)
    engine = Engine(model, dataclasses.replace(settings), seed=3)
    worker = Worker(engine, monkeypatch)
    sent, events = follow(engine, notes, 12.0, after_tick=lambda boundary: worker.work())
    assert [(t.time, str(t.message)) for t in sent] == [(t.time, str(t.message)) for t in expected[0]]
    assert events == expected[1] and any(e.name == "tempo" for e in events)
    phrase_end = next(e for e in events if e.name == "phrase_end")
    assert phrase_end.time == pytest.approx(math.floor((ends - follow_module.FOLLOW_LEAD) / step) * step)
    assert worker.at_phrase_end == [False] and worker.done_at_phrase_end == [0]
    ignored = [e.data for e in events if e.name == "notes_ignored"]
    assert ignored == ([{"reason": "turn over", "notes": 1}] if played_last == "in the last 16th" else [])


# --- a followed turn of bars: the player's bars at the player's tempo (issue 28's play test) ---------------------------

IN_FOUR = {  # four bars of 4/4 from the first beat, the turn's bar line (beat 16) left to the answer
    "8ths": tuple(b / 2 for b in range(32)),
    "swing": SWING[:-1],
    "16ths": tuple(k / 4 for k in range(64)),
}
TURNS = {  # name: (what is played, tempo, the tempo at its end: a 5% accelerando)
    **{f"{kind} at {bpm}": (kind, bpm, bpm) for kind in IN_FOUR for bpm in (80, 88, 92, 112, 130)},
    **{f"8ths from {bpm} to {bpm * 1.05:g}": ("8ths", bpm, bpm * 1.05) for bpm in (88, 112)},
    "swing from 92 to 96.6": ("swing", 92, 92 * 1.05),
    "16ths from 120 to 126": ("16ths", 120, 126),
}


def turn_answered(
    events: list, sent: list, performance: Performance, bar_line: float, steps: int, first: int = 0
) -> None:
    """The turn of ``performance`` (whose turn's bar line, from its first beat, is at beat ``bar_line``) ended at
    the last tick before that bar line (its last 16th under way, or at most its last two, at 130 with ``bpm`` 100),
    ``steps`` 16ths of the player's grid after its first beat, and the answer came in on it: its first bar line
    that one, the answer's notes on the player's grid. The call's first note on its 16th ``first`` (a pickup's)."""
    ends = performance.time(bar_line)
    phrase_end = next(e for e in events if e.name == "phrase_end" and e.time > performance.start)
    start = next(e.data for e in events if e.name == "response_start" and e.time >= phrase_end.time)
    assert start["entry"] == steps and first + phrase_end.data["call_steps"] + 1 == start["first_step"]
    assert start["first_step"] in (steps - 1, steps), start  # the open step at the phrase end the turn's last 16th
    assert 0 < ends - phrase_end.time < 60 / 100 / 4 + follow_module.FOLLOW_LEAD + 0.01
    over = next(e.time for e in events if e.name == "response_end" and e.time > phrase_end.time)
    answer = [
        t.time for t in sent if t.message.type == "note_on" and t.message.velocity and phrase_end.time < t.time < over
    ]
    assert answer and answer[0] > ends - 60 / performance.end_bpm / 4 - 0.02  # at most a 16th's pickup
    off = sorted(performance.off_grid(time) for time in answer)
    assert off[int(0.9 * (len(off) - 1))] <= 0.020, off


@pytest.mark.parametrize(("kind", "bpm", "end_bpm"), TURNS.values(), ids=TURNS.keys())
def test_a_followed_turn_ends_where_the_players_fourth_bar_ends(model, kind, bpm, end_bpm):
    """``turns = 4`` with ``clock = "follow"`` and ``bpm`` 100: the player's turn ends where its 4th bar ends at its
    own tempo (fitted to the onsets heard so far, refitted as the turn goes on), and the answer's first bar line is
    the one right after it. Before, the turn was counted in bars at ``bpm`` from the engine's bar line after the
    first note: a turn at 92 was cut at its 16th 58 (found in a play test; 80: 56) and one at 100 from 1.37 s,
    or faster, answered a bar late (entry 80)."""
    performance = Performance(IN_FOUR[kind], bpm, end_bpm, jitter=0.008)
    engine = Engine(model, Settings(bpm=100, follow_tempo=True, turns=4, min_call_steps=4), seed=2)
    sent, events = follow(engine, performance.notes(), performance.time(40))
    turn_answered(events, sent, performance, 16, 64)


@pytest.mark.parametrize("again", [88, 92, 96, 106])
def test_the_players_next_turn_is_counted_at_its_own_tempo(model, again):
    """A first turn at ``bpm`` (100) from a bar line of the engine's grid (where the turn's bars were counted right
    before), improvd's four bars, then the player's next four from the bar line after them, slower or faster: that
    turn too ends where its 4th bar ends, counted from its first beat at the tempo it is played at. Before, it was
    counted on the grid of the answer, at the last turn's tempo: at 88, 92 or 96 the turn was cut short (at its 16th
    56, 59 or 61), at 106 it ran on past its bar line and the answer came a bar late."""
    first = Performance(IN_FOUR["8ths"], 100, 100, start=2.4, jitter=0.008)
    second = Performance(IN_FOUR["8ths"], again, again, start=first.time(32), jitter=0.008)
    engine = Engine(model, Settings(bpm=100, follow_tempo=True, turns=4, min_call_steps=4), seed=2)
    sent, events = follow(engine, first.notes() + second.notes(seed=5), second.time(40))
    turn_answered(events, sent, first, 16, 64)
    turn_answered(events, sent, second, 16, 64)


@pytest.mark.parametrize("played", ["swing", "a 2-beat pickup"])
def test_a_followed_turns_answer_never_depends_on_the_daemons_thread(model, played):
    """The tempo fit a followed turn counts its bars on (and its pickup) is handed aside at each tick that heard a
    note and taken at the next, done there where the daemon's thread (improvd.daemon.aside, racing the unpaced ticks
    here) has not finished it: the same answer and events as an engine that does every fit itself, and as one whose
    work aside is never done."""
    performance = Performance(IN_FOUR["swing"] if played == "swing" else opened_by(2), 92, 92, jitter=0.008)
    settings = Settings(bpm=100, follow_tempo=True, turns=4, min_call_steps=4)
    runs = [
        follow(Engine(model, dataclasses.replace(settings), seed=3, aside=aside), performance.notes(), 30.0)
        for aside in (None, Aside(), lambda work: None)
    ]
    expected = [(t.time, str(t.message)) for t in runs[0][0]]
    assert any(e.name == "tempo" for e in runs[0][1])
    for sent, events in runs[1:]:
        assert [(t.time, str(t.message)) for t in sent] == expected
        assert events == runs[0][1]


IN_THREE = {  # four bars from the first beat, quarters a bar 3
    "3/4": tuple(b / 2 for b in range(24)),  # 8ths
    "6/8": tuple(3 * bar + x for bar in range(4) for x in ((0, 0.5, 1.0, 1.5, 2.0, 2.5), (0, 1.0, 1.5, 2.5))[bar % 2]),
}


@pytest.mark.parametrize("bpm", [88, 112])
@pytest.mark.parametrize("meter", IN_THREE)
def test_a_followed_turn_in_3_4_and_6_8_ends_on_the_players_bar_line(model, meter, bpm):
    """Four bars of 8ths in 3/4, and of a jig in 6/8 (its beat the dotted quarter, ``bpm`` in quarters), at a tempo
    off ``bpm`` 100: the turn ends where the 4th bar of 3 quarters ends, and the answer comes in on it."""
    performance = Performance(IN_THREE[meter], bpm, bpm, jitter=0.008)
    engine = Engine(model, Settings(bpm=100, meter=meter, follow_tempo=True, turns=4, min_call_steps=4), seed=2)
    sent, events = follow(engine, performance.notes(), performance.time(30))
    turn_answered(events, sent, performance, 12, 48)


def opened_by(pickup: int) -> tuple[float, ...]:
    """A pickup of ``pickup`` beats in 8ths, then four bars of 4/4 of a dotted half and two 8ths, as a tune goes."""
    return (*(k / 2 for k in range(2 * pickup)), *(pickup + 4 * bar + beat for bar in range(4) for beat in (0, 3, 3.5)))


@pytest.mark.parametrize("bpm", [88, 112])
@pytest.mark.parametrize("pickup", [1, 2])
def test_a_followed_turn_opened_by_a_pickup_ends_on_the_players_fourth_bar_line(model, pickup, bpm):
    """``turns = 4`` followed, a turn opened by a pickup of 1 or 2 beats: its bars count from the bar line after
    the pickup (where the long notes fall: ``follow.downbeat``), so the turn ends on its 4th bar line and the answer
    comes in on it, the engine's bar lines the player's. Before, bar 1 was laid on the pickup's first note: the
    turn ended early by the pickup, and the last notes barged in as a new call."""
    performance = Performance(opened_by(pickup), bpm, bpm, jitter=0.008)
    engine = Engine(model, Settings(bpm=100, follow_tempo=True, turns=4, min_call_steps=4), seed=2)
    sent, events = follow(engine, performance.notes(), performance.time(pickup + 40))
    turn_answered(events, sent, performance, pickup + 16, 80, 16 - 4 * pickup)


def test_a_followed_turn_without_a_pickup_keeps_its_first_note_on_bar_1(model):
    """The same tune played from its first bar line: the turn's bars count from its first note, as before."""
    performance = Performance(opened_by(0), 100, 100, jitter=0.008)
    engine = Engine(model, Settings(bpm=100, follow_tempo=True, turns=4, min_call_steps=4), seed=2)
    sent, events = follow(engine, performance.notes(), performance.time(40))
    turn_answered(events, sent, performance, 16, 64)


def test_a_followed_phrase_with_a_pickup_is_answered_on_the_players_bar_line(model):
    """``turns = "phrase"`` followed: a call opened by a 2-beat pickup has its answer enter on a bar line of the
    player's (two beats after a multiple of 4 from its first note), its places in the bar heard from there. Before,
    its bar lines fell on the pickup: the answer entered half a bar off the player's."""
    performance = Performance(opened_by(2), 100, 100, jitter=0.008)
    engine = Engine(model, Settings(bpm=100, follow_tempo=True, min_call_steps=4, response_bars=2), seed=2)
    grid = []
    _, events = follow(engine, performance.notes(), performance.time(40), after_tick=grid.append)
    phrase_end = next(e for e in events if e.name == "phrase_end")
    start = next(e.data for e in events if e.name == "response_start")
    step = 60 / next(e.data["bpm"] for e in events if e.name == "tempo") / 4
    open_step, open_start = start["first_step"], next(b for b in grid if b >= phrase_end.time - 1e-9) + step
    entry = open_start + (start["entry"] - open_step) * step
    beats = (entry - performance.start) * 100 / 60
    assert beats - 2 == pytest.approx(round((beats - 2) / 4) * 4, abs=0.1)


def test_a_priming_resumed_from_an_earlier_ones_checkpoints_is_the_priming_done_afresh(model):
    """Resumed from the last checkpoint that heard only the same first indices (the same shift and place), the LSTM,
    its logits and the song cache end as those primed from the song's start; a different shift takes nothing."""
    from improvd.core.lookback import Place
    from improvd.core.priming import Priming
    from improvd.core.songcache import SongCache

    engine = Engine(model, Settings(), seed=1)
    song = [int(k % len(model.vocabulary)) for k in range(3, 60, 2)]
    changed = [*song[:21], song[21] + 1, *song[22:]]  # a note played after the earlier priming was handed over

    def primed(indices: list[int], earlier: Priming | None = None, shift: int = 0) -> Priming:
        priming = engine._spare()
        priming.begin(shift, indices, Place(2, 16), earlier, keep=True)
        steps = 0
        while not priming.done:
            priming.advance(1)
            steps += 1
        priming.steps = steps
        return priming

    earlier = primed(song)
    for again, different in ((primed(changed, earlier), False), (primed(changed, earlier, shift=2), True)):
        fresh = primed(changed, shift=2 if different else 0)
        assert again.steps == (len(changed) + 1 if different else len(changed) + 1 - 20)  # from checkpoint 20
        assert (again.logits == fresh.logits).all()
        assert repr(again.runtime.snapshot()) == repr(fresh.runtime.snapshot())
        assert again.cache.snapshot() == fresh.cache.snapshot()
    assert isinstance(earlier.cache, SongCache)
    assert primed(song, earlier).steps == (len(song) + 1) % priming_module.CHECKPOINT_STEPS  # past the last one


@pytest.mark.parametrize("turns", [1, 2])
def test_no_tick_of_a_followed_turn_holds_the_timing_thread_past_its_budget(repo_root, monkeypatch, turns):
    """Bar trading under ``clock = "follow"`` with the shipped model (the thread aside doing its work between ticks):
    no tick does more than test_answer's budgets of LSTM steps (and the phrase end's, no tempo fit). Before, the
    phrase end fitted the tempo and heard the call again: a fit and 25 LSTM steps on its tick (one bar), 42 (two)."""
    from tests.test_answer import PHRASE_END_STEPS, TICK_STEPS

    shipped = load_model(repo_root / "models" / "essen")
    engine = Engine(shipped, Settings(bpm=100, follow_tempo=True, turns=turns, min_call_steps=4), seed=5)
    worker = Worker(engine, monkeypatch)
    done = []

    def after_tick(boundary: float) -> None:
        done.append(worker._work)  # the fits and LSTM steps so far: those of this tick, since the last work aside
        worker.work()
        worker._work = 0

    notes = TURN[: 8 * turns]  # the player's bars, ended before the turn's bar line
    _, events = follow(engine, notes, 10.0, after_tick=after_tick)
    ends = [e.time for e in events if e.name == "phrase_end"]
    phrase_end = round(ends[0] / (60 / 100 / 4))  # the tick's index (ticks from 0, one a 16th until then)
    assert any(e.name == "tempo" for e in events) and worker.fits >= 1
    assert max(done) <= TICK_STEPS, max(done)
    assert done[phrase_end] <= PHRASE_END_STEPS, done[phrase_end]


def test_the_screened_fit_finds_the_beat_that_weighing_every_tempo_exactly_finds(monkeypatch):
    """The fit screens R in float32 and weighs exactly only the tempi the screen cannot rule out: the same Beat, bit
    for bit, as weighing all of them exactly (``SCREEN_SPAN`` 0), on played rhythms, random onsets and a jig."""
    from improvd.core import tempo

    rng = random.Random(5)
    calls = []
    for k in range(24):
        bpm = rng.uniform(50, 230)
        beats = [0.0]
        while len(beats) < rng.randint(6, 120):
            beats.append(beats[-1] + rng.choice([0.25, 0.5, 0.5, 0.75, 1.0, 1 / 3]))
        drifted = Performance(tuple(beats), bpm, bpm * rng.uniform(0.9, 1.1), rng.uniform(0, 50), rng.uniform(0, 0.03))
        calls.append(([n[0] for n in drifted.notes(seed=k)], bpm * rng.uniform(0.6, 1.6), k % 4 == 0))
        calls.append((sorted(rng.uniform(0, 20) for _ in range(rng.randint(6, 60))), bpm, k % 3 == 0))
    screened = [tempo.estimate(onsets, prior, compound=compound) for onsets, prior, compound in calls]
    monkeypatch.setattr(tempo, "SCREEN_SPAN", 0.0)
    assert [tempo.estimate(onsets, prior, compound=compound) for onsets, prior, compound in calls] == screened
