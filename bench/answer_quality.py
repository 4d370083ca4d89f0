"""The answer as a listener hears it, quickly: the two-sample test and the as-played figures of one system on the
Essen test split, one answer per call (a seed of its own), without evaluate's prediction figures and n-gram.

    PYTHONPATH=. .venv/bin/python bench/answer_quality.py [--calls 293] [--alone] [--gain 1.4] [--phrase-end music]

Prints one JSON object: the two-sample test against the tunes' real bars 5-8 (training.twosample) and the
as-played figures beside the real bars' (training.as_played). ``improvd-train evaluate`` gives the same for every
system with its controls; this is the loop for changing the answer's rules (minutes, not an hour).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

import improvd.core.answer as answer_rules
from improvd.core.engine import Engine
from improvd.core.model import load_model
from training import as_played, twosample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/essen", help="a model directory (default: %(default)s)")
    parser.add_argument("--calls", type=int, default=300, help="test calls at most (default: %(default)s)")
    parser.add_argument("--alone", action="store_true", help="the LSTM alone (no song cache, no echo)")
    parser.add_argument("--phrase-end", choices=("silence", "music"), help="phrase_end (default: the setting's)")
    parser.add_argument("--gain", type=float, help=f"answer.ONSET_GAIN (default: {answer_rules.ONSET_GAIN})")
    args = parser.parse_args()
    if args.gain is not None:
        answer_rules.ONSET_GAIN = args.gain
    model = load_model(args.model)
    tests = as_played.test_calls(model.card["test_tunes"])[: args.calls]
    started = time.process_time()

    def make(settings, seed):
        if args.phrase_end is not None:
            settings = dataclasses.replace(settings, phrase_end=args.phrase_end)
        return Engine(model, settings, seed=seed, memory=not args.alone)

    answers = as_played.answers(tests, make, 1)[0]
    real = [as_played.real(t) for t in tests]
    described = {
        name: np.array([twosample.describe(t, c) for t, c in zip(tests, found, strict=True)])
        for name, found in (("real", real), ("answers", answers))
    }
    played, reals = as_played.figures(tests, answers), as_played.figures(tests, real)
    played["onset_position_overlap"] = as_played.overlaps(played.pop("histograms"), reals.pop("histograms"), tests, 1)
    report = {
        "calls": len(tests),
        "two_sample": twosample.compare(described["real"], described["answers"], [t.ident for t in tests]),
        "as_played": played,
        "real": reals,
        "cpu_seconds": round(time.process_time() - started, 1),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
