"""Figures of a model directory on its test split, against an n-gram baseline.

Every test tune is fed after the model's ``song_gap`` song-end symbols (as
training puts song ends before each song, and the daemon before each call);
the figures count each of its steps and its closing song end. Onset steps are
those whose true symbol is a pitch. The LSTM runs in numpy (improvd.runtime)
with the song cache (improvd.songcache) mixed in, exactly as the daemon runs
it, so no TensorFlow is needed; ``lstm_alone`` holds the figures of the LSTM
without the cache.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from improvd.encoding import SONG_END, Vocabulary, is_pitch
from improvd.model import MODEL_JSON, Model, load_model
from improvd.runtime import LSTMRuntime, softmax
from improvd.sampler import Sampler
from improvd.songcache import SongCache
from training.corpus import DEFAULT_CACHE_DIR
from training.ngram import NGram

NGRAM_PREFIX = 8  # song ends before each tune when counting n-grams and choosing their order
CALL_STEPS = 64  # bars 1-4 of 4/4 at 16 steps a bar
RESPONSE_STEPS = 64  # bars 5-8
MAX_NGRAM_ORDER = 12
C_MAJOR = frozenset({0, 2, 4, 5, 7, 9, 11})  # tunes are transposed to C major / A minor
INTERVAL_BINS = np.arange(-12, 13)


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

    def __init__(self, first: Callable[[list[int]], np.ndarray], step: Callable[[int], np.ndarray]) -> None:
        self.first = first  # reset, feed the history, return probabilities of what comes next
        self.step = step  # feed one more symbol, return probabilities of what comes next

    @classmethod
    def lstm(cls, model: Model, song_cache: bool = True, generating: bool = False) -> Predictor:
        """The LSTM as the daemon runs it: with the song cache mixed in, unless ``song_cache`` is False.

        ``generating``: symbols after the history are the model's own, which the cache follows but does not count.
        """
        runtime = LSTMRuntime(model)
        cache = SongCache(model.vocabulary.index[SONG_END])

        def predict(logits: np.ndarray) -> np.ndarray:
            return cache.mix(softmax(logits)) if song_cache else softmax(logits)

        def first(history: list[int]) -> np.ndarray:
            cache.reset()
            for index in history:
                cache.add(index)
            return predict(runtime.prime(history))

        def step(index: int) -> np.ndarray:
            cache.add(index, count=not generating)
            return predict(runtime.step(index))

        return cls(first, step)

    @classmethod
    def ngram(cls, ngram: NGram) -> Predictor:
        history: list[int] = []

        def first(start: list[int]) -> np.ndarray:
            history[:] = start
            return ngram.distribution(history)

        def step(index: int) -> np.ndarray:
            history.append(index)
            return ngram.distribution(history)

        return cls(first, step)


def score_tunes(predictor: Predictor, tunes: list[list[int]], vocabulary: Vocabulary, prefix: int) -> dict:
    """Prediction figures over every step of every tune (and its closing song end)."""
    pitch_indices = np.asarray(vocabulary.pitch_indices)
    pitch_set = set(vocabulary.pitch_indices)
    end = vocabulary.index[SONG_END]
    scores = Scores()
    for tune in tunes:
        probabilities = predictor.first([end] * prefix)
        targets = [*tune, end]
        for t, true in enumerate(targets):
            scores.add(probabilities, true, pitch_indices, true in pitch_set)
            if t + 1 < len(targets):
                probabilities = predictor.step(true)
    return scores.figures()


def _onset_pitches(indices: Sequence[int], vocabulary: Vocabulary) -> list[int]:
    return [int(vocabulary.symbols[i]) for i in indices if is_pitch(vocabulary.symbols[i])]


def _overlap(a: np.ndarray, b: np.ndarray) -> float | None:
    """Overlapping area of two histograms, each normalised to 1; None when both are empty."""
    if a.sum() == 0 and b.sum() == 0:
        return None
    if a.sum() == 0 or b.sum() == 0:
        return 0.0
    return float(np.minimum(a / a.sum(), b / b.sum()).sum())


def _pitch_class_histogram(pitches: list[int]) -> np.ndarray:
    return np.bincount([p % 12 for p in pitches], minlength=12).astype(float)


def _interval_histogram(pitches: list[int]) -> np.ndarray:
    intervals = np.clip(np.diff(pitches), -12, 12) if len(pitches) > 1 else np.array([], int)
    return np.bincount(intervals + 12, minlength=len(INTERVAL_BINS)).astype(float)


def continuations(
    predictor: Predictor, calls: list[list[int]], vocabulary: Vocabulary, seeds: int, prefix: int
) -> dict:
    """Generate RESPONSE_STEPS after each call for each seed (temperature 1.0, song end not allowed)."""
    end = vocabulary.index[SONG_END]
    allowed = np.ones(len(vocabulary), bool)
    allowed[end] = False
    in_scale, pitches_total, repeats, responses = 0, 0, 0, 0
    pc_overlaps: list[float] = []
    interval_overlaps: list[float] = []
    for tune_number, tune in enumerate(calls):
        real = _onset_pitches(tune[CALL_STEPS : CALL_STEPS + RESPONSE_STEPS], vocabulary)
        for seed in range(seeds):
            sampler = Sampler(seed * 100_003 + tune_number)
            probabilities = predictor.first([end] * prefix + tune[:CALL_STEPS])
            generated = []
            for _ in range(RESPONSE_STEPS):
                index = sampler.sample(np.log(np.maximum(probabilities, 1e-300)), 1.0, allowed=allowed)
                generated.append(index)
                probabilities = predictor.step(index)
            pitches = _onset_pitches(generated, vocabulary)
            responses += 1
            repeats += len(set(pitches)) <= 1
            in_scale += sum(p % 12 in C_MAJOR for p in pitches)
            pitches_total += len(pitches)
            for found, histogram in ((pc_overlaps, _pitch_class_histogram), (interval_overlaps, _interval_histogram)):
                value = _overlap(histogram(pitches), histogram(real))
                if value is not None:
                    found.append(value)
    return {
        "in_scale_ratio": round(in_scale / max(pitches_total, 1), 4),
        "pitch_class_overlap": round(float(np.mean(pc_overlaps)), 4) if pc_overlaps else None,
        "interval_overlap": round(float(np.mean(interval_overlaps)), 4) if interval_overlaps else None,
        "repeat_ratio": round(repeats / responses, 4) if responses else None,
    }


def _real_in_scale(calls: list[list[int]], vocabulary: Vocabulary) -> float:
    pitches = [p for tune in calls for p in _onset_pitches(tune[CALL_STEPS : CALL_STEPS + RESPONSE_STEPS], vocabulary)]
    return round(sum(p % 12 in C_MAJOR for p in pitches) / max(len(pitches), 1), 4)


def evaluate(
    model: Model,
    songs: dict[str, list[list[str]]],
    max_continuations: int = 100,
    seeds: int = 3,
    progress: bool = False,
) -> dict:
    """The evaluate JSON for ``model``; ``songs`` maps split name ("train", "validation", "test") to songs."""
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
    gap = model.song_gap
    report: dict = {"model": model.name, **score_tunes(lstm, test, vocabulary, gap)}
    report["lstm_alone"] = score_tunes(Predictor.lstm(model, song_cache=False), test, vocabulary, gap)
    base = {"order": ngram.order, "validation_bits_per_step_by_order": order_bits}
    base |= score_tunes(baseline, test, vocabulary, gap)
    calls = [t for t in test if len(t) >= CALL_STEPS + RESPONSE_STEPS][:max_continuations]
    say(f"continuations: {len(calls)} tunes x {seeds} seeds")
    report |= continuations(Predictor.lstm(model, generating=True), calls, vocabulary, seeds, gap)
    base |= continuations(baseline, calls, vocabulary, seeds, gap)
    report["baseline"] = base
    report["test"] = {
        "tunes": len(test),
        "steps": sum(len(t) + 1 for t in test),
        "onset_steps": sum(1 for t in test for i in t if vocabulary.symbols[i].isdigit()),
        "real_bars_5_to_8_in_scale_ratio": _real_in_scale(calls, vocabulary),
    }
    report["continuations"] = {
        "tunes": len(calls),
        "max_continuations": max_continuations,
        "seeds": seeds,
        "call_steps": CALL_STEPS,
        "response_steps": RESPONSE_STEPS,
        "temperature": 1.0,
        "note": "tunes of at least 8 bars (128 steps), first max_continuations of the sorted test split",
    }
    return report


def evaluate_directory(
    directory: str | Path,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    max_continuations: int = 100,
    seeds: int = 3,
    save: bool = False,
    progress: bool = False,
) -> dict:
    """Load a model directory, rebuild its corpus and split from model.json, and evaluate it."""
    from training.train import Settings, prepare

    model = load_model(directory)
    if "settings" not in model.card or "test_tunes" not in model.card:
        raise ValueError(f"{Path(directory) / MODEL_JSON}: no settings/test_tunes, so the test split is unknown")
    prepared = prepare(Settings(**model.card["settings"]), cache_dir, progress=progress)
    if prepared.split["test"] != model.card["test_tunes"]:
        raise ValueError(f"{Path(directory) / MODEL_JSON}: the corpus no longer gives the test split it was trained on")
    report = evaluate(
        model, {part: prepared.songs(part) for part in prepared.split}, max_continuations, seeds, progress
    )
    if save:
        path = Path(directory) / MODEL_JSON
        card = json.loads(path.read_text(encoding="utf-8"))
        card["evaluation"] = report
        path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return report
