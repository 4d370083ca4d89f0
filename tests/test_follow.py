"""Following the player's tempo without a click: the estimate against known tempi, and the answer on the
player's grid, in simulated time."""

from __future__ import annotations

import math
import random

import mido
import pytest

from improvd.core.engine import Engine, Settings
from improvd.core.model import load_model
from improvd.core.tempo import MIN_ONSETS, estimate
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


def follow(engine: Engine, notes, until: float) -> tuple[list, list]:
    """Drive ``engine`` as the daemon's timing thread does: tick where the engine says its next boundary is."""
    messages = sorted(
        [(on, mido.Message("note_on", note=p, velocity=v)) for on, _, p, v in notes]
        + [(off, mido.Message("note_off", note=p)) for _, off, p, _ in notes],
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


def test_a_long_call_is_followed_from_its_last_notes_only(model, monkeypatch):
    """A 2,200-note call: the tempo fit took 116 ms on the timing thread and sends went out up to 197 ms late.
    The phrase end now replays the call's last HEARD_MESSAGES messages and fits the last MAX_ONSETS onsets."""
    from improvd.core import engine as engine_module
    from improvd.core import tempo

    fitted, replayed = [], []
    original_fit, original_regrid = tempo._fit, engine_module.regrid
    monkeypatch.setattr(tempo, "_fit", lambda onsets, bpm: fitted.append(len(onsets)) or original_fit(onsets, bpm))
    monkeypatch.setattr(
        engine_module,
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
