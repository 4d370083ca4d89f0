"""The answer as a listener hears it, quickly: the two-sample test and the as-played figures of one system on a
split of the model's corpus (the test split by default), answers with seeds of each call's own, without evaluate's
prediction figures and n-gram.

    PYTHONPATH=. .venv/bin/python bench/answer_quality.py [--calls 293] [--split validation] [--seeds 5] [--alone]
        [--gain 1.4] [--phrase-end music] [--echo-odds 30]

Prints one JSON object: the two-sample test against the tunes' real bars 5-8 (training.twosample; the first seed's
answers), the as-played figures beside the real bars' (training.as_played; every seed's) and the means of the
features issue 24 sets goals on (every seed's answers, and the real bars). ``improvd-train evaluate`` gives the
same for every system with its controls; this is the loop for changing the answer's rules (minutes, not an hour):
tune on ``--split validation``, measure on the test split once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

import improvd.core.answer as answer_rules
from improvd.core.engine import Engine
from improvd.core.model import ECHO_ODDS_KEY, load_model
from training import as_played, twosample
from training.compare import split_of
from training.corpus import DEFAULT_CACHE_DIR

GOAL_FEATURES = ("steps", "fourths_fifths", "last_note_length", "notes_per_bar", "downbeats")  # issue 24's
REUSE_FEATURES = ("bars_of_call", "runs_of_call", "longest_run_of_call")  # what the card's echo_odds moves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/essen", help="a model directory (default: %(default)s)")
    parser.add_argument("--calls", type=int, default=300, help="calls at most (default: %(default)s)")
    parser.add_argument("--split", default="test", choices=("validation", "test"), help="(default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=1, help="answers per call (default: %(default)s)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="parsed-corpus cache (validation only)")
    parser.add_argument("--alone", action="store_true", help="the LSTM alone (no song cache, no echo)")
    parser.add_argument("--phrase-end", choices=("silence", "music"), help="phrase_end (default: the setting's)")
    parser.add_argument("--gain", type=float, help=f"answer.ONSET_GAIN (default: {answer_rules.ONSET_GAIN})")
    parser.add_argument("--echo-odds", type=float, help="the card's echo_odds (default: the card's)")
    args = parser.parse_args()
    if args.gain is not None:
        answer_rules.ONSET_GAIN = args.gain
    model = load_model(args.model)
    if args.echo_odds is not None:
        model = dataclasses.replace(model, card={**model.card, ECHO_ODDS_KEY: args.echo_odds})
    if args.split == "test":
        tests = as_played.test_calls(model.card["test_tunes"])[: args.calls]
    else:
        collection, idents, _ = split_of(model, args.split, args.cache_dir)
        tests = as_played.test_calls(idents, collection)[: args.calls]
    started = time.process_time()

    def make(settings, seed):
        if args.phrase_end is not None:
            settings = dataclasses.replace(settings, phrase_end=args.phrase_end)
        return Engine(model, settings, seed=seed, memory=not args.alone)

    by_seed = as_played.answers(tests, make, args.seeds)
    real = [as_played.real(t) for t in tests]
    described = [np.array([twosample.describe(t, c) for t, c in zip(tests, found, strict=True)]) for found in by_seed]
    reals = np.array([twosample.describe(t, c) for t, c in zip(tests, real, strict=True)])
    answered = as_played.report(tests, {"answers": by_seed})
    shown = GOAL_FEATURES + REUSE_FEATURES
    columns = [twosample.FEATURES.index(name) for name in shown]
    every = np.vstack(described)
    report = {
        "split": args.split,
        "calls": len(tests),
        "seeds": args.seeds,
        "two_sample": twosample.compare(reals, described[0], [t.ident for t in tests]),
        "features": {
            name: {"answers": round(float(every[:, k].mean()), 3), "real": round(float(reals[:, k].mean()), 3)}
            for name, k in zip(shown, columns, strict=True)
        },
        "as_played": answered["answers"],
        "real": answered["real"],
        "cpu_seconds": round(time.process_time() - started, 1),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
