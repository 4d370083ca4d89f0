"""Session memory (issue 28): do answers bring back the player's earlier calls, and do issue 12's figures hold?

Each session is one Essen test tune (models/essen/model.json's ``test_tunes``, the first ``--tunes`` of them
that have 8 whole bars; ``--split validation``: the validation tunes, rebuilt from the corpus, to tune on)
played as a player would trade it: its 2-bar phrases one after another, each answered in 2 bars, into one
engine in simulated time (improvd.core.simulate.perform, as the daemon plays), with the session memory on and
off (one seed per session and ``--seeds`` seeds). It counts the answers to phrases 2-4
that share a run of 4 pitches with an *earlier* phrase of the session (``earlier``), and those whose shared run
is not in the present phrase as well (``earlier_only``: what only a memory can bring back).

Then issue 12's as-played figures (training.as_played) on the same tunes, each tune's 4-bar call answered by
an engine with the memory on that has first answered the previous tune's call (a session of two tunes) beside
a fresh engine with it off; the goals (overlap >= 0.9 in each metre with 20 calls, 8th grid within 0.05 of the
real bars, in key >= 0.98, motif reuse at least the real bars' minus 0.05, early endings <= 0.05) are checked.
Beside them, the answers' register against the call's (``register``): the median and 95th percentile of
|answer's mean pitch - call's mean pitch| in semitones, and the share of answers whose range (lowest to highest
note) does not overlap the call's; the real continuations' as the reference (the tune's next phrase, its bars 5-8).
Prints JSON. Needs music21 (the training extra). ``PYTHONPATH=. python bench/session_memory.py``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from improvd.core.engine import Engine, Settings
from improvd.core.model import load_model
from improvd.core.notes import PlayedNote
from improvd.core.simulate import perform
from training import as_played

MODEL = Path(__file__).resolve().parent.parent / "models" / "essen"
PHRASE_BARS = 2
RUN = as_played.MOTIF_NOTES


def phrases(test: as_played.CallCase) -> list[list[PlayedNote]]:
    """The tune's 8 bars as 4 phrases of 2 bars, each moved to where bars 1-2 sit (the pickup with the first)."""
    call = test.call
    bar = call.steps_per_bar * call.step_seconds
    start = call.bar_start_step * call.step_seconds
    notes = call.notes + test.real
    found = []
    for c in range(2 * as_played.CALL_BARS // PHRASE_BARS):
        low = start + c * PHRASE_BARS * bar if c else -1.0
        high = start + (c + 1) * PHRASE_BARS * bar
        shift = c * PHRASE_BARS * bar
        found.append(
            [dataclasses.replace(n, start=n.start - shift, end=n.end - shift) for n in notes if low <= n.start < high]
        )
    return [p for p in found if p]


def runs(pitches: list[int]) -> set[tuple[int, ...]]:
    return {tuple(pitches[i : i + RUN]) for i in range(len(pitches) - RUN + 1)}


Pairs = list[tuple[list[int], list[int]]]  # (call's pitches, answer's pitches)


def session(model, test: as_played.CallCase, memory: bool, seed: int) -> tuple[list[int], Pairs, Pairs]:
    """([answers to phrases 2-, sharing a run with an earlier phrase, ... with one not in the present phrase],
    (phrase, answer) pitches of those answers, (phrase, next phrase) pitches of the tune where it has one)."""
    settings = Settings(bpm=test.call.bpm, meter=test.meter, response_bars=PHRASE_BARS, gate=1.0, session_memory=memory)
    engine = Engine(model, settings, seed)
    earlier: set[tuple[int, ...]] = set()
    answers = shared = only = 0
    played = [[n.pitch for n in phrase] for phrase in phrases(test)]
    answered: Pairs = []
    for k, phrase in enumerate(phrases(test)):
        answer = [n.pitch for n in perform(engine, phrase).response]
        present = runs(played[k])
        if k:
            answers += 1
            shared += bool(runs(answer) & earlier)
            only += bool((runs(answer) & earlier) - present)
            answered.append((played[k], answer))
        earlier |= present
    real = [(played[k], played[k + 1]) for k in range(1, len(played) - 1)]
    return [answers, shared, only], answered, real


def register(pairs: Pairs) -> dict:
    """How far answers sit from their calls' register: |mean pitch difference| in semitones (median, p95) and the
    share whose range does not overlap the call's."""
    pairs = [(call, answer) for call, answer in pairs if call and answer]
    gaps = [abs(np.mean(answer) - np.mean(call)) for call, answer in pairs]
    apart = sum(max(answer) < min(call) or min(answer) > max(call) for call, answer in pairs)
    return {
        "answers": len(pairs),
        "mean_gap_median": round(float(np.median(gaps)), 2) if gaps else None,
        "mean_gap_p95": round(float(np.percentile(gaps, 95)), 2) if gaps else None,
        "range_apart": round(apart / max(len(pairs), 1), 4),
    }


def memory_figures(model, tests: list[as_played.CallCase], seeds: int) -> dict:
    result: dict = {}
    for memory in (False, True):
        totals = [0, 0, 0]
        answered: Pairs = []
        real: Pairs = []
        for seed in range(seeds):
            for k, test in enumerate(tests):
                counts, pairs, reals = session(model, test, memory, seed * 100_003 + k)
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
                answered += pairs
                real += reals
        answers, shared, only = totals
        result["on" if memory else "off"] = {
            "answers": answers,
            "earlier": round(shared / max(answers, 1), 4),
            "earlier_only": round(only / max(answers, 1), 4),
            "register": register(answered),
        }
        result["real_register"] = register(real)  # the tune's next phrase against the phrase
    off, on = result["off"], result["on"]
    result["ratio_earlier"] = round(on["earlier"] / max(off["earlier"], 1e-9), 2)
    result["ratio_earlier_only"] = round(on["earlier_only"] / max(off["earlier_only"], 1e-9), 2)
    return result


def as_played_figures(model, tests: list[as_played.CallCase], seeds: int) -> dict:
    """as_played.report's figures for the memory off (fresh engines) and on (after the previous tune's call)."""
    runs_ = [test for _ in range(seeds) for test in tests]
    reals = as_played.figures(runs_, [as_played.real(test) for test in runs_])
    result = {}
    for memory in (False, True):
        answers = []
        for seed in range(seeds):
            for k, test in enumerate(tests):
                engine = Engine(model, Settings(session_memory=memory), seed * 100_003 + k)
                if memory:
                    before = tests[k - 1]
                    engine.update(bpm=before.call.bpm, meter=before.meter, response_bars=as_played.CALL_BARS)
                    perform(engine, before.call.notes)
                answers.append(as_played.answer(test, lambda settings, _seed, e=engine: _reset(e, settings), seed))
        played = as_played.figures(runs_, answers)
        played["register"] = register(_pitch_pairs(runs_, answers))
        played["onset_position_overlap"] = as_played.overlaps(
            played.pop("histograms"), reals["histograms"], runs_, seeds
        )
        result["on" if memory else "off"] = played
    reals.pop("histograms")
    reals["register"] = register(_pitch_pairs(runs_, [as_played.real(test) for test in runs_]))
    result["real"] = reals
    result["goals"] = {name: _goals(result[name], reals) for name in ("off", "on")}
    return result


def _pitch_pairs(tests: list[as_played.CallCase], continuations: list[as_played.Continuation]) -> Pairs:
    return [
        ([n.pitch for n in test.call.notes], [n.pitch for n in c.notes])
        for test, c in zip(tests, continuations, strict=True)
    ]


def _reset(engine: Engine, settings: Settings) -> Engine:
    """``engine`` (its memory kept) with as_played's settings for the next call."""
    fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(Settings) if f.name != "session_memory"}
    engine.update(**fields)
    return engine


def _goals(played: dict, real: dict) -> dict:
    overlaps = [m["overlap"] for m in played["onset_position_overlap"].values()]
    return {
        "overlap>=0.9": all(o >= 0.9 for o in overlaps),
        "eighth_grid_within_0.05": abs(played["eighth_grid"] - real["eighth_grid"]) <= 0.05,
        "in_key>=0.98": played["in_key_signature"] >= 0.98,
        "motif_reuse>=real-0.05": played["motif_reuse"] >= real["motif_reuse"] - 0.05,
        "early_end<=0.05": played["early_end"] <= 0.05,
    }


def _split(model, name: str) -> list[str]:
    """The tunes of split ``name``: the test split from the card, the validation split rebuilt from the corpus."""
    if name == "test":
        return json.loads((MODEL / "model.json").read_text())["test_tunes"]
    from training.compare import split_of
    from training.corpus import DEFAULT_CACHE_DIR

    return split_of(model, name, DEFAULT_CACHE_DIR)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tunes", type=int, default=120, help="tunes of the split to read (those with 8 bars are used)"
    )
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--skip-as-played", action="store_true")
    parser.add_argument("--split", choices=("test", "validation"), default="test", help="tune on validation")
    args = parser.parse_args()
    model = load_model(MODEL)
    idents = _split(model, args.split)[: args.tunes]
    began = time.perf_counter()
    tests = as_played.test_calls(idents)
    out: dict = {"split": args.split, "tunes": len(tests), "seeds": args.seeds}
    out["memory"] = memory_figures(model, tests, args.seeds)
    if not args.skip_as_played:
        out["as_played"] = as_played_figures(model, tests, args.seeds)
    out["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
