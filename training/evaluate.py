"""Figures of a model directory on its test split: prediction against an n-gram baseline, and continuations as
the musician hears them.

Prediction: every test tune is fed after the model's ``song_gap`` song-end symbols (as training puts song
ends before each song, and the daemon before each call); the figures count each of its steps and its
closing song end. Onset steps are those whose true symbol is a pitch. The LSTM runs in numpy
(improvd.core.runtime) with the song cache (improvd.core.songcache) mixed in, exactly as the daemon runs it, so no
TensorFlow is needed; ``lstm_alone`` holds the figures of the LSTM without the cache.

Continuations (``as_played``): the first 4 bars of each test tune played to the engine in simulated time,
its answer beside the tune's bars 5-8 (training.as_played), for the model as the daemon runs it, the LSTM
alone and the n-gram alone, each through the same engine, each call answered with seeds of its own. The
two-sample test (``two_sample``, training.twosample) reads the same answers: can a classifier tell each
system's answers from the tunes' real bars 5-8, with its control (answers at temperature 2) and its null check
(two seeds of the model)?
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from improvd.core.encoding import SONG_END, Vocabulary, is_pitch
from improvd.core.engine import Engine
from improvd.core.lookback import Place
from improvd.core.model import MODEL_JSON, Model, load_model
from improvd.core.runtime import LSTMRuntime, softmax
from improvd.core.songcache import SongCache
from improvd.offline.notation import COLLECTIONS

from . import as_played, twosample
from .corpus import DEFAULT_CACHE_DIR
from .dataset import bar_positions
from .ngram import NGram

NGRAM_PREFIX = 8  # song ends before each tune when counting n-grams and choosing their order
MAX_NGRAM_ORDER = 12


@dataclass
class Scores:
    """Sums over predicted steps."""

    bits: list[float] = field(default_factory=list)
    onset_bits: list[float] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)
    onset_hits: list[bool] = field(default_factory=list)

    def add(self, probabilities: np.ndarray, true: int, pitch_indices: np.ndarray, true_is_pitch: bool) -> None:
        self.bits.append(-np.log2(max(probabilities[true], 1e-300)))
        hit = int(np.argmax(probabilities)) == true
        self.hits.append(hit)
        if true_is_pitch:
            self.onset_bits.append(-np.log2(max(probabilities[true] / probabilities[pitch_indices].sum(), 1e-300)))
            self.onset_hits.append(hit)

    def figures(self) -> dict:
        return {
            "bits_per_step": round(float(np.mean(self.bits)), 4),
            "bits_per_onset_pitch": round(float(np.mean(self.onset_bits)), 4),
            "accuracy": round(float(np.mean(self.hits)), 4),
            "event_accuracy": round(float(np.mean(self.onset_hits)), 4),
        }


class Predictor:
    """next-symbol probabilities after a history, for the LSTM or the n-gram model alike."""

    def __init__(
        self,
        first: Callable[[list[int], Place | None], np.ndarray],
        step: Callable[[int, Place | None], np.ndarray],
    ) -> None:
        self.first = first  # reset, feed the history, return probabilities of what comes next (at the place given)
        self.step = step  # feed one more symbol, return probabilities of what comes next (at the place given)

    @classmethod
    def lstm(cls, model: Model, song_cache: bool = True) -> Predictor:
        """The LSTM as the daemon runs it: with the song cache mixed in, unless ``song_cache`` is False."""
        runtime = LSTMRuntime(model)
        symbols = model.vocabulary.symbols
        cache = SongCache(model.vocabulary.index[SONG_END], np.array([is_pitch(s) for s in symbols]))

        def predict(logits: np.ndarray) -> np.ndarray:
            return cache.mix(softmax(logits)) if song_cache else softmax(logits)

        def first(history: list[int], place: Place | None) -> np.ndarray:
            cache.reset()
            for index in history:
                cache.add(index)
            runtime.prime(history[:-1])
            return step(history[-1], place, count=False)

        def step(index: int, place: Place | None, count: bool = True) -> np.ndarray:
            if count:
                cache.add(index)
            runtime.seat(place)
            return predict(runtime.step(index))

        return cls(first, step)

    @classmethod
    def ngram(cls, ngram: NGram) -> Predictor:
        history: list[int] = []

        def first(start: list[int], place: Place | None) -> np.ndarray:
            history[:] = start
            return ngram.distribution(history)

        def step(index: int, place: Place | None) -> np.ndarray:
            history.append(index)
            return ngram.distribution(history)

        return cls(first, step)


def score_tunes(
    predictor: Predictor,
    tunes: list[list[int]],
    vocabulary: Vocabulary,
    prefix: int,
    bars: list[list[tuple[int, int, int]]] | None = None,
) -> dict:
    """Prediction figures over every step of every tune (and its closing song end); ``bars``: each tune's
    measures (improvd.offline.notation.bar_places), which a lookback model hears."""
    pitch_indices = np.asarray(vocabulary.pitch_indices)
    pitch_set = set(vocabulary.pitch_indices)
    end = vocabulary.index[SONG_END]
    scores = Scores()
    for k, tune in enumerate(tunes):
        places = [*places_of(bars[k] if bars else [], len(tune)), None]
        probabilities = predictor.first([end] * prefix, places[0])
        targets = [*tune, end]
        for t, true in enumerate(targets):
            scores.add(probabilities, true, pitch_indices, true in pitch_set)
            if t + 1 < len(targets):
                probabilities = predictor.step(true, places[t + 1])
    return scores.figures()


def places_of(bars: list[tuple[int, int, int]], steps: int) -> list[Place | None]:
    """The place in the bar of each of a tune's ``steps`` (None where no measure says)."""
    position, bar = bar_positions(bars, steps)
    return [Place(int(p), int(b)) if p >= 0 else None for p, b in zip(position, bar, strict=True)]


class NGramSteps:
    """The n-gram baseline as the engine's step model (improvd.core.engine.Predictor): log-probabilities as logits."""

    def __init__(self, ngram: NGram) -> None:
        self._ngram = ngram
        self._history: list[int] = []

    def prime(self, indices: list[int]) -> np.ndarray | None:
        self._history = list(indices)
        return self._logits() if indices else None

    def seat(self, place: Place | None) -> None:
        """The n-gram knows no bars."""

    def step(self, index: int) -> np.ndarray:
        self._history.append(index)
        return self._logits()

    def snapshot(self) -> list[int]:
        return list(self._history)

    def restore(self, snapshot: list[int]) -> None:
        self._history = list(snapshot)

    def _logits(self) -> np.ndarray:
        return np.log(self._ngram.distribution(self._history))


def engine_makers(model: Model, ngram: NGram) -> dict[str, as_played.EngineMaker]:
    """The systems compared as played: the model as the daemon runs it, the LSTM alone (no song cache, no echo)
    and the n-gram baseline alone, each through the same engine."""
    return {
        "model": lambda settings, seed: Engine(model, settings, seed=seed),
        "lstm_alone": lambda settings, seed: Engine(model, settings, seed=seed, memory=False),
        "baseline": lambda settings, seed: Engine(model, settings, seed, lambda _: NGramSteps(ngram), memory=False),
    }


def continuations_report(model: Model, ngram: NGram, tests: list[as_played.CallCase], seeds: int, say) -> dict:
    """The as-played figures (training.as_played) and the two-sample test (training.twosample) of each system of
    ``engine_makers`` on the calls ``tests``; both read the same answers, each call answered with seeds of its own
    (the model as the daemon runs it with at least two, for the two-sample test's null check)."""
    makers = engine_makers(model, ngram)
    say(f"as played: {len(tests)} calls x {seeds} seeds through the engine, for each system")
    answered = {name: as_played.answers(tests, make, seeds) for name, make in makers.items()}
    twins = answered["model"] if seeds > 1 else as_played.answers(tests, makers["model"], 2)
    null = (twins[0], twins[1])
    say("two-sample test: the controls at temperature 2")
    control = as_played.answers(tests, makers["model"], 1, temperature=2.0)[0]
    setup = {"calls": len(tests), "seeds": seeds, "temperature": 1.0, "call_bars": as_played.CALL_BARS}
    setup["note"] = (
        "the first 4 bars of each test tune of 8+ bars played to the engine; the answer's 4 bars beside bars 5-8"
    )
    first = {name: by_seed[0] for name, by_seed in answered.items()}
    test = {
        "calls": len(tests),
        "features": len(twosample.FEATURES),
        "classifier": f"logistic regression (L2 {twosample.PENALTY}), {twosample.FOLDS} folds by tune",
        "note": "the tune's real bars 5-8 against each system's 4-bar answer to bars 1-4 (its first seed); 0.5 means"
        " the classifier cannot tell them apart; controls: the model at temperature 2 against the real bars, and"
        " the model's answers with two seeds against each other",
    }
    return {
        "as_played": {"setup": setup, **as_played.report(tests, answered)},
        "two_sample": {"setup": test, **twosample.report(tests, first, null, control)},
    }


def evaluate(
    model: Model,
    songs: dict[str, list[list[str]]],
    test_idents: list[str] | None = None,
    max_continuations: int = 300,
    seeds: int = 3,
    progress: bool = False,
    collection: str = "essen",
    bars: dict[str, list[list[tuple[int, int, int]]]] | None = None,
) -> dict:
    """The evaluate JSON for ``model``; ``songs`` maps split name ("train", "validation", "test") to songs, and
    ``bars`` to their measures (a lookback model hears them; None: no bars).
    ``test_idents``: the idents of the test songs in music21's ``collection``, for the continuations as played
    (None: none)."""
    vocabulary = model.vocabulary

    def indices(part: str) -> list[list[int]]:
        return [vocabulary.indices(vocabulary.fold(s) for s in song) for song in songs[part]]

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    train, validation, test = indices("train"), indices("validation"), indices("test")
    end = vocabulary.index[SONG_END]
    say(f"n-gram baseline: counting {len(train)} train tunes")
    ngram = NGram(len(vocabulary), MAX_NGRAM_ORDER).fit([[end] * NGRAM_PREFIX + t + [end] for t in train])
    order_bits = ngram.choose_order([[end] * NGRAM_PREFIX + t + [end] for t in validation], NGRAM_PREFIX)
    say(f"n-gram order {ngram.order} (validation bits per step by order: {order_bits})")
    lstm, baseline = Predictor.lstm(model), Predictor.ngram(ngram)
    say(f"scoring {len(test)} test tunes")
    gap, test_bars = model.song_gap, (bars or {}).get("test")
    report: dict = {"model": model.name, **score_tunes(lstm, test, vocabulary, gap, test_bars)}
    report["lstm_alone"] = score_tunes(Predictor.lstm(model, song_cache=False), test, vocabulary, gap, test_bars)
    base = {"order": ngram.order, "validation_bits_per_step_by_order": order_bits}
    base |= score_tunes(baseline, test, vocabulary, gap)
    report["baseline"] = base
    report["test"] = {
        "tunes": len(test),
        "steps": sum(len(t) + 1 for t in test),
        "onset_steps": sum(1 for t in test for i in t if vocabulary.symbols[i].isdigit()),
    }
    if test_idents is not None:
        tests = as_played.test_calls(test_idents, collection)[:max_continuations]
        report |= continuations_report(model, ngram, tests, seeds, say)
    return report


def evaluate_directory(
    directory: str | Path,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    max_continuations: int = 300,
    seeds: int = 3,
    save: bool = False,
    progress: bool = False,
) -> dict:
    """Load a model directory, rebuild its corpus and split from model.json, and evaluate it."""
    from .train import Settings, prepare

    model = load_model(directory)
    if "settings" not in model.card or "test_tunes" not in model.card:
        raise ValueError(f"{Path(directory) / MODEL_JSON}: no settings/test_tunes, so the test split is unknown")
    prepared = prepare(Settings(**model.card["settings"]), cache_dir, progress=progress)
    if prepared.split["test"] != model.card["test_tunes"]:
        raise ValueError(f"{Path(directory) / MODEL_JSON}: the corpus no longer gives the test split it was trained on")
    known = prepared.corpus.name in COLLECTIONS  # as played needs each tune's metre: its tunes are parsed by ident
    songs = {part: prepared.songs(part) for part in prepared.split}
    idents = prepared.split["test"] if known else None
    bars = {part: [prepared.corpus.bars.get(ident, []) for ident in prepared.split[part]] for part in prepared.split}
    report = evaluate(model, songs, idents, max_continuations, seeds, progress, prepared.corpus.name, bars)
    if save:
        path = Path(directory) / MODEL_JSON
        card = json.loads(path.read_text(encoding="utf-8"))
        card["evaluation"] = report
        path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return report
