"""The song cache's constants tried quickly: bits per onset pitch with the cache, the LSTM run once.

    PYTHONPATH=. .venv/bin/python bench/songcache_bits.py [--split validation] [--grid NOTE_TRUST=0.35,0.45,0.55]

Runs the model's LSTM once over a split of its corpus as ``improvd-train evaluate`` feeds it (the song ends before
each tune, each step's place in its bar), keeps its probabilities, then scores the song cache
(improvd.core.songcache) over them with each combination of the ``--grid`` constants: seconds a variant, where
evaluate takes minutes. Prints one JSON object: the LSTM alone and each variant, with evaluate's figures
(training.evaluate.Scores). Choose on the validation split (the default); the test split is evaluate's, once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the daemon runs (improvd/cli.py): one step is a small product

import numpy as np

from improvd.core import songcache
from improvd.core.encoding import SONG_END, is_pitch
from improvd.core.model import load_model
from training.evaluate import Predictor, Scores, places_of
from training.train import Settings, prepare


def lstm_steps(model, tunes: list[list[int]], bars: list) -> list[np.ndarray]:
    """The LSTM's probabilities before each step of each tune and its closing song end (evaluate's order)."""
    lstm = Predictor.lstm(model, song_cache=False)
    end = model.vocabulary.index[SONG_END]
    runs = []
    for tune, measures in zip(tunes, bars, strict=True):
        places = [*places_of(measures, len(tune)), None]
        steps = [lstm.first([end] * model.song_gap, places[0])]
        steps += [lstm.step(index, place) for index, place in zip(tune, places[1:], strict=True)]
        runs.append(np.array(steps))
    return runs


def score(model, tunes: list[list[int]], runs: list[np.ndarray], cache: bool) -> dict:
    """Evaluate's figures of the saved ``runs``, with the song cache mixed in as the daemon runs it or not."""
    vocabulary = model.vocabulary
    end = vocabulary.index[SONG_END]
    onsets = np.array([is_pitch(symbol) for symbol in vocabulary.symbols])
    pitches = np.asarray(vocabulary.pitch_indices)
    mixer = songcache.SongCache(end, onsets)
    scores = Scores()
    for tune, steps in zip(tunes, runs, strict=True):
        mixer.reset()
        for true, probabilities in zip([*tune, end], steps, strict=True):
            scores.add(mixer.mix(probabilities) if cache else probabilities, true, pitches, bool(onsets[true]))
            mixer.add(true)
    return scores.figures()


def grid(specs: list[str]) -> list[dict[str, float]]:
    """Every combination of ``NAME=v1,v2`` constants."""
    axes = []
    for spec in specs:
        name, _, values = spec.partition("=")
        if not hasattr(songcache, name) or not values:
            raise SystemExit(f"--grid {spec}: not NAME=v1,v2 of a constant of improvd.core.songcache")
        kind = type(getattr(songcache, name))
        axes.append([(name, kind(value)) for value in values.split(",")])
    return [dict(combination) for combination in itertools.product(*axes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/essen", help="a model directory (default: %(default)s)")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--grid", action="append", default=[], help="NAME=v1,v2: the song cache's constant's values")
    args = parser.parse_args()
    variants = grid(args.grid)
    started = time.process_time()
    model = load_model(args.model)
    prepared = prepare(Settings(**model.card["settings"]), progress=False)
    vocabulary = model.vocabulary
    tunes = [vocabulary.indices(vocabulary.fold(s) for s in song) for song in prepared.songs(args.split)]
    bars = [prepared.corpus.bars.get(ident, []) for ident in prepared.split[args.split]]
    runs = lstm_steps(model, tunes, bars)
    report: dict = {"split": args.split, "tunes": len(tunes), "lstm_alone": score(model, tunes, runs, cache=False)}
    results = []
    for variant in variants:
        kept = {name: getattr(songcache, name) for name in variant}
        try:
            for name, value in variant.items():
                setattr(songcache, name, value)
            results.append({"constants": variant, **score(model, tunes, runs, cache=True)})
        finally:
            for name, value in kept.items():
                setattr(songcache, name, value)
    report["song_cache"] = results
    report["cpu_seconds"] = round(time.process_time() - started, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
