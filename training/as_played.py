"""Continuations as the musician hears them: through the engine in simulated time, against the tune's real next bars.

Each call is the first ``CALL_BARS`` bars of a test tune (its pickup, time signature and bar lines as the
file gives them), played to ``improvd.core.engine.Engine`` by ``improvd.core.simulate.perform``, exactly as
``improvd continue`` and the daemon play it: the player stops at the end of bar 4, the engine hears the
pause and answers in ``CALL_BARS`` whole bars of the call's metre. The answer is compared with the tune's
real bars 5-8:

* ``onset_position_overlap``: per metre, the overlap of the histograms of onset positions within the bar
  (answers and real bars pooled over the calls of that metre);
* ``eighth_grid``: the share of onsets on the 8th-note grid (even 16ths from the bar line);
* ``motif_reuse``: the share of continuations that play a run of ``MOTIF_NOTES`` of the call's pitches;
* ``cadence``: the share whose last note on a strong beat of the last bar is the tune's tonic or dominant;
* ``closes``: the share whose very last note is such a note (nothing after it leads on into another bar);
* ``early_end``: the share silent through their whole last bar;
* ``in_key_signature``: the share of onset pitches inside the written key signature's scale;
* ``key_signature_agreement`` (answers only): the share of calls the engine moved by their written key
  signature (the collection it moved onto the white keys is the signature's).

The real bars get the same figures, so each is read beside what folk tunes do.
"""

from __future__ import annotations

import contextlib
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from music21 import key as m21key

from improvd.core.encoding import tonic_pitch_class
from improvd.core.engine import Engine, Settings
from improvd.core.grid import strong_positions
from improvd.core.keys import WHITE_KEYS
from improvd.core.notes import PlayedNote
from improvd.core.simulate import perform
from improvd.offline.call_reader import Call, CallError, call_from_score
from improvd.offline.notation import ScoreError, Tune, analyse_key, collection_tune

CALL_BARS = 4
MOTIF_NOTES = 4
MIN_METRE_TUNES = 20  # metres with fewer calls get no overlap figure (too few onsets to compare)
MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)

EngineMaker = Callable[[Settings, int], Engine]


@dataclass(frozen=True)
class CallCase:
    """A test tune cut into a call (bars 1-4) and the real continuation (bars 5-8, in the call's seconds)."""

    ident: str
    call: Call
    real: list[PlayedNote]
    scale: frozenset[int]  # pitch classes of the written key signature
    tonic: int  # pitch class of the tune's tonic (music21's analysis of the whole tune)

    @property
    def meter(self) -> str:
        return f"{self.call.time_signature[0]}/{self.call.time_signature[1]}"


@dataclass(frozen=True)
class Continuation:
    """Notes (seconds from the call's grid origin), the grid step of their first full bar, and the
    transposition that moved the call onto the white keys (None for the real bars; the engine's own less its
    ``offset``, a model's minor transposition)."""

    notes: list[PlayedNote]
    first_bar: int
    transposition: int | None = None


def test_calls(idents: Iterable[str], collection: str = "essen") -> list[CallCase]:
    """The tunes of ``idents`` in one of music21's collections (improvd.offline.notation.COLLECTIONS) that have 8
    whole bars of a metre the engine takes, cut into call and real."""
    return calls_of(_tunes(idents, collection))


def _tunes(idents: Iterable[str], collection: str) -> Iterator[Tune]:
    for ident in idents:
        with contextlib.suppress(ScoreError):
            yield collection_tune(collection, ident)


def calls_of(tunes: Iterable[Tune]) -> list[CallCase]:
    """The ``tunes`` (any collection) that have 8 whole bars of a metre the engine takes, cut into call and real."""
    found = []
    for tune in tunes:
        try:
            whole = call_from_score(tune.score, None, tune.ident, tune.ident)
        except (ScoreError, CallError):
            continue
        bar = whole.steps_per_bar * whole.step_seconds
        start = whole.bar_start_step * whole.step_seconds
        five, nine = start + CALL_BARS * bar - 1e-6, start + 2 * CALL_BARS * bar - 1e-6
        if _bad_meter(whole) or max(n.end for n in whole.notes) < nine:
            continue
        real = [n for n in whole.notes if five <= n.start < nine]
        tonic, _ = analyse_key(tune.score)
        scale = _signature_scale(tune.score)
        found.append(CallCase(tune.ident, whole.first_bars(CALL_BARS), real, scale, tonic_pitch_class(tonic)))
    return found


def _bad_meter(call: Call) -> bool:
    numerator, denominator = call.time_signature
    return numerator * 16 % denominator != 0 or not 1 <= call.steps_per_bar <= 64


def _signature_scale(score) -> frozenset[int]:
    signature = next(iter(score.recurse().getElementsByClass(m21key.KeySignature)), None)
    tonic = (7 * signature.sharps) % 12 if signature is not None else 0
    return frozenset((tonic + step) % 12 for step in MAJOR_STEPS)


def answer(test: CallCase, make_engine: EngineMaker, seed: int, temperature: float = 1.0) -> Continuation:
    """The engine's answer to ``test``'s call in ``CALL_BARS`` bars of its metre, with gate 1 so that each note
    lasts its written length (the gate shortens how a note sounds; it moves no onset and changes no pitch)."""
    settings = Settings(bpm=test.call.bpm, meter=test.meter, response_bars=CALL_BARS, temperature=temperature, gate=1.0)
    performance = perform(make_engine(settings, seed), test.call.notes)
    start = next(e for e in performance.events if e.name == "response_start")
    return Continuation(performance.response, start.data["entry"], start.data["transposition"] - start.data["offset"])


def real(test: CallCase) -> Continuation:
    """The tune's own bars 5-8."""
    return Continuation(test.real, test.call.bar_start_step + CALL_BARS * test.call.steps_per_bar)


def seed_of(ident: str, salt: int) -> int:
    """A seed of the call ``ident``'s own, another for each ``salt``: one seed for every call would draw the same
    random numbers at each call, which biases a whole set of answers alike."""
    return zlib.crc32(f"{salt}:{ident}".encode())


def answers(tests: list[CallCase], make: EngineMaker, seeds: int, temperature: float = 1.0) -> list[list[Continuation]]:
    """``seeds`` answers to each call of ``tests``, by seed: each call answered with seeds of its own."""
    return [[answer(t, make, seed_of(t.ident, seed), temperature) for t in tests] for seed in range(seeds)]


def report(tests: list[CallCase], answered: dict[str, list[list[Continuation]]]) -> dict:
    """Figures for each system of ``answered`` (name -> its answers by seed, as ``answers`` gives them) and for
    the real bars."""
    seeds = len(next(iter(answered.values())))
    runs = [test for _ in range(seeds) for test in tests]
    reals = figures(runs, [real(test) for test in runs])
    result: dict = {}
    for name, by_seed in answered.items():
        played = figures(runs, [continuation for seed in by_seed for continuation in seed])
        played["onset_position_overlap"] = overlaps(played.pop("histograms"), reals["histograms"], runs, seeds)
        result[name] = played
    reals.pop("histograms")
    return result | {"real": reals}


def figures(tests: list[CallCase], continuations: list[Continuation]) -> dict:
    """The figures above over ``continuations`` (one per test, in order), with the onset-position histograms."""
    positions: dict[str, list[int]] = defaultdict(list)
    eighths = motifs = cadences = closes = early = in_key = pitches = agreed = 0
    for test, continuation in zip(tests, continuations, strict=True):
        call, bar, notes = test.call, test.call.steps_per_bar, continuation.notes
        steps = [round(n.start / call.step_seconds) for n in notes]
        in_bar = [s % bar for s in steps]
        positions[test.meter] += in_bar
        eighths += sum(p % 2 == 0 for p in in_bar)
        motifs += _shares_run([n.pitch for n in call.notes], [n.pitch for n in notes])
        last_bar = continuation.first_bar + (CALL_BARS - 1) * bar
        ending = [(n.pitch, s) for n, s in zip(notes, steps, strict=True) if s >= last_bar]
        cadences += _cadence(ending, bar, test)
        closes += _cadence(ending[-1:], bar, test)
        early += not notes or max(round(n.end / call.step_seconds) for n in notes) <= last_bar
        in_key += sum(n.pitch % 12 in test.scale for n in notes)
        pitches += len(notes)
        if continuation.transposition is not None:
            agreed += {(p + continuation.transposition) % 12 for p in test.scale} == WHITE_KEYS
    count = max(len(tests), 1)
    found = {
        "eighth_grid": round(eighths / max(pitches, 1), 4),
        "motif_reuse": round(motifs / count, 4),
        "cadence": round(cadences / count, 4),
        "closes": round(closes / count, 4),
        "early_end": round(early / count, 4),
        "in_key_signature": round(in_key / max(pitches, 1), 4),
        "notes_per_continuation": round(pitches / count, 2),
        "histograms": {meter: _histogram(p, meter) for meter, p in positions.items()},
    }
    if any(c.transposition is not None for c in continuations):
        found["key_signature_agreement"] = round(agreed / count, 4)
    return found


def overlaps(played: dict, reals: dict, runs: list[CallCase], seeds: int) -> dict:
    """Per metre with at least ``MIN_METRE_TUNES`` calls: the overlap of the two onset-position histograms."""
    calls: dict[str, int] = defaultdict(int)
    for test in runs:
        calls[test.meter] += 1
    return {
        meter: {"calls": calls[meter] // seeds, "overlap": round(float(np.minimum(histogram, reals[meter]).sum()), 4)}
        for meter, histogram in sorted(played.items())
        if calls[meter] // seeds >= MIN_METRE_TUNES and meter in reals
    }


def _histogram(positions: list[int], meter: str) -> np.ndarray:
    numerator, denominator = (int(x) for x in meter.split("/"))
    counts = np.bincount(positions, minlength=numerator * 16 // denominator).astype(float)
    return counts / max(counts.sum(), 1.0)


def _shares_run(call: list[int], answer: list[int]) -> bool:
    runs = {tuple(call[i : i + MOTIF_NOTES]) for i in range(len(call) - MOTIF_NOTES + 1)}
    return any(tuple(answer[i : i + MOTIF_NOTES]) in runs for i in range(len(answer) - MOTIF_NOTES + 1))


def _cadence(last_bar: list[tuple[int, int]], bar: int, test: CallCase) -> bool:
    """The last note of the last bar that starts on a strong beat is the tonic or the dominant."""
    strong = [pitch for pitch, step in last_bar if step % bar in strong_positions(test.meter)]
    return bool(strong) and (strong[-1] - test.tonic) % 12 in (0, 7)
