"""Every model beside every other on each model's own test split, on the same calls: which answers which best.

For each collection (the corpus of a model given; its splits rebuilt from the model's card), each model and
``auto`` (improvd.core.styles over all the models given) is measured on the same test tunes and calls: bits per
onset pitch over every step of every test tune (each model as the daemon runs it, the symbols folded into its
vocabulary), the figures as played (training.as_played) and the two-sample test (training.twosample), and for
auto the share of calls it answered with each model.

``calibrate`` chooses the candidates' priors (the model card's ``style_prior_bits``) on the VALIDATION splits'
calls: the bits each model spent on each call, as style auto hears it, and the priors (the first model's 0) that
make auto choose each collection's own model most often on the collection where it does so least (the goal is a
share for each collection), then on the mean share over collections (balanced accuracy). It also chooses each
model's echo (the card's ``echo_odds``, improvd.core.echo) on its own collection's validation calls: the odds of
ECHO_ODDS_GRID, interpolated, at which its answers (the model alone, ``seeds`` a call) take up as many bars of the
call as the tunes' own bars 5-8 do (a reel's take up a third, an Essen song's a fifth).
Beside it, the same for the bits spent on the call's onset pitches alone (among the pitches), which auto does not
use: it chose worse.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from improvd.core.engine import Engine
from improvd.core.model import ECHO_ODDS_KEY, Model, load_model
from improvd.core.styles import Styles

from . import as_played, twosample
from .corpus import DEFAULT_CACHE_DIR
from .evaluate import Predictor, score_tunes

AUTO = "auto"
ECHO_ODDS_GRID = (5.0, 10.0, 20.0, 30.0, 40.0, 60.0)  # the echo_odds calibrate tries for each model
PRIOR_GRID = np.round(np.arange(-20.0, 20.001, 0.25), 2)  # the bits a prior may add to a call's
CALIBRATION_PASSES = 3  # coordinate passes over the priors (one is enough for two models)


def split_of(model: Model, name: str, cache_dir: str | Path | None) -> tuple[str, list[str], list[list[str]]]:
    """(corpus name, idents, songs) of the split ``name`` (test, validation) of the corpus ``model`` was trained
    on, rebuilt from its card."""
    from .train import Settings, prepare

    prepared = prepare(Settings(**model.card["settings"]), cache_dir, progress=False)
    if prepared.split["test"] != model.card.get("test_tunes"):
        raise ValueError(f"{model.path}: the corpus no longer gives the test split it was trained on")
    return prepared.corpus.name, prepared.split[name], prepared.songs(name)


def compare(
    models: dict[str, Model],
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    max_calls: int = 150,
    seeds: int = 2,
    two_sample: bool = True,
    progress: bool = True,
    max_tunes: int = 100,
    only: list[str] | None = None,
) -> dict:
    """The figures of every model and auto on every model's test split, by corpus name: bits per onset pitch on
    its first ``max_tunes`` tunes (the song cache costs milliseconds a step in Python), the rest on its first
    ``max_calls`` calls; ``only``: just these corpora's splits."""
    styles = Styles(models)
    report = {}
    for model in models.values():
        collection, idents, songs = split_of(model, "test", cache_dir)
        if not only or collection in only:
            say = _say(collection if progress else None)
            report[collection] = _on_split(models, styles, collection, idents, songs[:max_tunes], max_calls, seeds, say)
            if two_sample:
                say("two-sample test")
                report[collection]["two_sample"] = report[collection].pop("_answers")()
            report[collection].pop("_answers", None)
    return report


def _on_split(models, styles, collection, idents, songs, max_calls, seeds, say) -> dict:
    found: dict = {"tunes_scored": len(songs), "bits_per_onset_pitch": {}}
    for name, model in models.items():
        vocabulary = model.vocabulary
        tunes = [vocabulary.indices(vocabulary.fold(s) for s in song) for song in songs]
        bits = score_tunes(Predictor.lstm(model), tunes, vocabulary, model.song_gap)["bits_per_onset_pitch"]
        found["bits_per_onset_pitch"][name] = bits
        say(f"{name}: {bits} bits per onset pitch")
    calls = _calls(idents, collection, max_calls)
    engines: list[Engine] = []
    makers = {name: _maker(model) for name, model in models.items()} | {AUTO: _auto(models, styles, engines)}
    say(f"as played: {len(calls)} calls x {seeds} seeds")
    answered = {name: as_played.answers(calls, make, max(seeds, 2)) for name, make in makers.items()}
    found["calls"] = len(calls)
    found["as_played"] = as_played.report(calls, {name: by_seed[:seeds] for name, by_seed in answered.items()})
    found["auto_chose"] = dict(Counter(engine.model.name for engine in engines[: len(calls)]))

    found["_answers"] = lambda: two_sample(
        calls, answered, as_played.answers(calls, makers[AUTO], 1, temperature=2.0)[0]
    )
    return found


def two_sample(calls: list[as_played.CallCase], answered: dict[str, list], control: list) -> dict:
    """The two-sample test of each system's first seed against the real bars; the controls are auto at temperature
    2 (``control``) and auto against itself: its answers with two seeds (``answered[AUTO]``)."""
    first = {name: by_seed[0] for name, by_seed in answered.items()}
    return twosample.report(calls, first, (answered[AUTO][0], answered[AUTO][1]), control)


def _calls(idents: list[str], collection: str, max_calls: int) -> list[as_played.CallCase]:
    """The first ``max_calls`` calls of the tunes ``idents``, parsed only as far as needed."""
    calls: list[as_played.CallCase] = []
    for start in range(0, len(idents), 25):
        if len(calls) < max_calls:
            calls += as_played.test_calls(idents[start : start + 25], collection)
    return calls[:max_calls]


def _say(collection: str | None):
    if collection is None:
        return lambda text: None
    return lambda text: print(f"{collection}: {text}", file=sys.stderr, flush=True)


def _maker(model: Model) -> as_played.EngineMaker:
    return lambda settings, seed: Engine(model, settings, seed=seed)


def _auto(models: dict[str, Model], styles: Styles, engines: list[Engine]) -> as_played.EngineMaker:
    """Engines answering with style auto over ``styles`` (one at a time: they share the candidates)."""

    def make(settings, seed: int) -> Engine:
        engine = Engine(next(iter(models.values())), settings, seed=seed)
        engine.set_styles(styles)
        engines.append(engine)
        return engine

    return make


def call_bits(models: dict[str, Model], calls: list[as_played.CallCase]) -> dict[str, np.ndarray]:
    """Each model's bits on each call as style auto hears it (calls x models, in name order): on the whole call
    (what auto scores) and on its onset pitches alone."""
    styles = Styles(models)
    rows: dict[str, list] = {"call": [], "onset_pitches": []}
    for case in calls:
        as_played.answer(case, _auto(models, styles, []), as_played.seed_of(case.ident, 0))
        heard = styles.bits().values()
        rows["call"].append([float(np.sum(steps)) for steps, _ in heard])
        rows["onset_pitches"].append([float(np.sum(pitches)) for _, pitches in heard])
    return {criterion: np.array(row) for criterion, row in rows.items()}


def calibrate(
    models: dict[str, Model],
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    max_calls: int = 150,
    progress=True,
    seeds: int = 2,
) -> dict:
    """The priors (bits added to a call's, by model name; the first by name 0) that make style auto choose each
    collection's own model on the most of its VALIDATION calls (the least share over collections, then the mean),
    and the shares with and without them; the same for the bits on the onset pitches alone, which auto does not
    use, beside it; and under ``echo_odds`` each model's echo, chosen on its own collection's calls with ``seeds``
    answers a call (``echo_odds_report``)."""
    names = sorted(models)
    heard, echoes = {}, {}
    for name in names:
        collection, idents, _ = split_of(models[name], "validation", cache_dir)
        say = _say(collection if progress else None)
        say(f"validation: {max_calls} calls at most")
        calls = _calls(idents, collection, max_calls)
        heard[collection] = (names.index(name), call_bits(models, calls))
        say(f"{name}'s echo: echo_odds {', '.join(f'{odds:g}' for odds in ECHO_ODDS_GRID)}")
        echoes[name] = echo_odds_report(models[name], calls, seeds)
    report: dict = {"echo_odds": echoes}
    for criterion in ("call", "onset_pitches"):
        by_collection = {collection: (own, bits[criterion]) for collection, (own, bits) in heard.items()}
        priors = fit_priors(by_collection, len(names))
        report[criterion] = {
            "priors": dict(zip(names, priors.round(2).tolist(), strict=True)),
            "own_model_share_without": _by_collection(by_collection, np.zeros(len(names))),
            "own_model_share_with": _by_collection(by_collection, priors),
        }
    report["calls"] = {collection: len(bits["call"]) for collection, (_, bits) in heard.items()}
    return report


def echo_odds_report(model: Model, calls: list[as_played.CallCase], seeds: int = 1) -> dict:
    """``model``'s echo_odds chosen on ``calls`` of its own collection (``fit_echo_odds``), with the share of the
    answers' bars that are a bar of their call at each odds of ECHO_ODDS_GRID (``seeds`` answers a call), and the
    real bars 5-8's."""
    real = bars_of_call(calls, [as_played.real(case) for case in calls])
    answered = {odds: answers_with_echo(model, calls, odds, seeds) for odds in ECHO_ODDS_GRID}
    shares = {
        odds: float(np.mean([bars_of_call(calls, found) for found in by_seed])) for odds, by_seed in answered.items()
    }
    return {
        "echo_odds": round(fit_echo_odds(shares, real), 1),
        "real_bars_of_call": round(real, 3),
        "answers_bars_of_call": {f"{odds:g}": round(share, 3) for odds, share in shares.items()},
    }


def answers_with_echo(
    model: Model, calls: list[as_played.CallCase], odds: float, seeds: int = 1
) -> list[list[as_played.Continuation]]:
    """``model``'s answers to each call (alone, as the daemon plays them, ``seeds`` seeds of each call's own), its
    echo at ``odds``: a list for each seed."""
    echoed = dataclasses.replace(model, card={**model.card, ECHO_ODDS_KEY: odds})
    return as_played.answers(calls, _maker(echoed), seeds)


def bars_of_call(calls: list[as_played.CallCase], continuations: list[as_played.Continuation]) -> float:
    """The mean over calls of the share of a continuation's bars that are a bar of its call (training.twosample)."""
    column = twosample.FEATURES.index("bars_of_call")
    pairs = zip(calls, continuations, strict=True)
    return float(np.mean([twosample.describe(case, found)[column] for case, found in pairs]))


def fit_echo_odds(answered: dict[float, float], real: float) -> float:
    """The odds at which the answers' share of the call's bars (``answered``, by odds, rising with them) reaches
    ``real``'s: interpolated between the two grid odds around it, the grid's first or last beyond them."""
    odds = sorted(answered)
    shares = np.maximum.accumulate([answered[o] for o in odds])  # rising, where the measure wavers
    return float(np.interp(real, shares, odds))


def fit_priors(by_collection: dict, count: int) -> np.ndarray:
    """Priors (the first 0) with the highest least share of own-model choices over the collections, then the
    highest mean share, the smallest on a tie."""
    priors = np.zeros(count)
    for _ in range(CALIBRATION_PASSES):
        for k in range(1, count):
            priors[k] = max(PRIOR_GRID, key=lambda p: _merit(own_shares(by_collection, _with(priors, k, p)), p))
    return priors


def _merit(shares: np.ndarray, prior: float) -> tuple[float, float, float]:
    return float(shares.min()), float(shares.mean()), -abs(prior)


def _by_collection(by_collection: dict, priors: np.ndarray) -> dict[str, float]:
    return dict(zip(by_collection, own_shares(by_collection, priors).round(3).tolist(), strict=True))


def _with(priors: np.ndarray, k: int, value: float) -> np.ndarray:
    changed = priors.copy()
    changed[k] = value
    return changed


def own_shares(by_collection: dict, priors: np.ndarray) -> np.ndarray:
    """For each collection, the share of its calls on which its own model has the lowest bits plus prior."""
    return np.array([np.mean(np.argmin(bits + priors, axis=1) == own) for own, bits in by_collection.values()])


def compare_directories(directories: list[str], calibration: bool = False, **options) -> dict:
    models = {}
    for directory in directories:
        model = load_model(directory)
        models[model.name] = model
    if calibration:
        return calibrate(models, options["cache_dir"], options["max_calls"], options["progress"], options["seeds"])
    return compare(models, **options)
