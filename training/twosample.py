"""The two-sample test: can a classifier tell improvd's answers from the tunes' own continuations?

Each continuation (an answer, or the tune's real bars 5-8) is described relative to its own call by the
``FEATURES`` below: rhythm, intervals, scale degrees of the tune's key, reuse of the call, self-repetition,
register, the close, and what a listener expects of a melody (``expectancy``: leaps turned back by a step, the bits
of its notes, motion and places in the bar under the call's own histograms and transitions, variety against the
call's). A logistic regression (L2, features standardised on the training folds) learns to
tell the real continuations from a system's answers, cross-validated with the tunes kept apart (a tune's real
bars and its answer always fall in the same fold), and predicts each held-out continuation once:

* ``balanced_accuracy``: the mean of its hit rates on both kinds (0.5: it cannot tell them apart), with a 95%
  interval from a bootstrap over tunes;
* ``auc``: the area under the ROC curve of its held-out scores;
* ``separating``: the features whose means differ most (in pooled standard deviations), with both means.

The same classifier gives two controls: a system's answers at temperature 2 against the real bars (the test
has power when it tells them apart) and two sets of answers of one system, each call with other seeds (the
null: it must not tell them apart). Each call is answered with a seed of its own (training.as_played.seed_of).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from improvd.core.grid import strong_positions
from improvd.core.touch import beat_steps

from . import as_played
from .as_played import CALL_BARS, CallCase, Continuation

FOLDS = 5
PENALTY = 1.0  # L2 penalty on the standardised weights
BOOTSTRAP = 1000
SEPARATING = 8  # features reported as separating most
RUN = 4  # intervals in a run of the call's material
SMOOTHING = 0.5  # added to each count of a call's histogram before the bits of a continuation under it
TRANSITION_PRIOR = 2.0  # a call's transitions from a value heard n times weigh n / (n + this) against its histogram


@dataclass(frozen=True)
class Line:
    """A melody on the grid: (pitch, onset step, length in steps), steps counted from its first full bar line."""

    notes: list[tuple[int, int, int]]
    bar: int
    meter: str


def line_of(notes, step_seconds: float, first_bar: int, bar: int, meter: str) -> Line:
    """``notes`` (improvd.core.notes.PlayedNote, seconds from the grid origin) as a Line from grid step
    ``first_bar``; a note's length runs to its end or the next onset, whichever comes first."""
    found = sorted(
        (round(n.start / step_seconds) - first_bar, round(n.end / step_seconds) - first_bar, n.pitch) for n in notes
    )
    line = []
    for k, (start, end, pitch) in enumerate(found):
        following = found[k + 1][0] if k + 1 < len(found) else end
        line.append((pitch, start, max(1, min(end, following) - start)))
    return Line(line, bar, meter)


def _bars(line: Line) -> list[tuple[tuple[int, int], ...]]:
    """Each of the CALL_BARS bars as its (position, pitch) onsets."""
    bars: list[list[tuple[int, int]]] = [[] for _ in range(CALL_BARS)]
    for pitch, start, _ in line.notes:
        if 0 <= start < CALL_BARS * line.bar:
            bars[start // line.bar].append((start % line.bar, pitch))
    return [tuple(b) for b in bars]


def _intervals(pitches: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(pitches)]


def _runs(values: list[int], size: int) -> set[tuple[int, ...]]:
    return {tuple(values[i : i + size]) for i in range(len(values) - size + 1)}


def _longest_shared(call: list[int], answer: list[int]) -> int:
    """The longest run of consecutive pitches that the answer plays as the call played it."""
    best = 0
    for i in range(len(answer)):
        for j in range(len(call)):
            k = 0
            while i + k < len(answer) and j + k < len(call) and answer[i + k] == call[j + k]:
                k += 1
            best = max(best, k)
    return best


def _share(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else 0.0


def _distance(these: list[int], those: list[int], size: int) -> float:
    """Half the L1 distance between the histograms of two lists of small non-negative numbers (0: the same)."""
    if not these or not those:
        return 1.0
    first = np.bincount(these, minlength=size) / len(these)
    return float(np.abs(first - np.bincount(those, minlength=size) / len(those)).sum() / 2)


def _mean(values: list[int]) -> float:
    return float(np.mean(values)) if values else 0.0


def _entropy(values: list[int]) -> float:
    """The entropy in bits of the values' histogram (0 for none)."""
    if not values:
        return 0.0
    _, counts = np.unique(values, return_counts=True)
    shares = counts / counts.sum()
    return float(-(shares * np.log2(shares)).sum())


def _surprise(these: list[int], those: list[int], size: int) -> float:
    """The mean bits of ``these`` under the histogram of ``those`` (values below ``size``), SMOOTHING added to each
    count so that a value never heard costs bits, not infinity."""
    if not these:
        return 0.0
    histogram = np.bincount(those, minlength=size) + SMOOTHING
    return float(np.mean(-np.log2(histogram[these] / histogram.sum())))


def _transition_surprise(these: list[int], those: list[int], size: int) -> float:
    """The mean bits of each of ``these`` after the one before it, by ``those``' transitions (from a value ``those``
    left n times, they weigh n / (n + TRANSITION_PRIOR), the rest goes by ``those``' histogram, as ``_surprise``)."""
    if len(these) < 2:
        return 0.0
    histogram = np.bincount(those, minlength=size) + SMOOTHING
    histogram = histogram / histogram.sum()
    counts = np.zeros((size, size))
    for a, b in itertools.pairwise(those):
        counts[a, b] += 1
    bits = []
    for a, b in itertools.pairwise(these):
        heard = counts[a].sum()
        weight = heard / (heard + TRANSITION_PRIOR)
        bits.append(-np.log2((weight * counts[a, b] / heard if heard else 0.0) + (1 - weight) * histogram[b]))
    return float(np.mean(bits))


def _clipped(intervals: list[int]) -> list[int]:
    """Signed intervals clipped to an octave, as indices 0-24."""
    return [int(np.clip(i, -12, 12)) + 12 for i in intervals]


def expectancy(call: Line, notes: list[tuple[int, int, int]], tonic: int) -> dict[str, float]:
    """What a listener expects of a melody, of ``notes`` (a continuation's, in its bars) against ``call``: a leap
    turned back by a step, no run of leaps; notes, motion and places in the bar the call made likely (bits under
    the call's own histograms, and after the one before, under its transitions); as varied as the call in pitch,
    motion and lengths, no more; its own motifs (pairs of intervals) repeated."""
    pitches, call_pitches = [p for p, _, _ in notes], [p for p, _, _ in call.notes] or [0]
    moves, call_moves = _intervals(pitches), _intervals(call_pitches)
    pairs = list(itertools.pairwise(moves))
    leaps = [k for k, move in enumerate(moves[:-1]) if abs(move) >= 5]
    lengths, call_lengths = [min(n[2], 24) for n in notes], [min(n[2], 24) for n in call.notes]
    motifs = [tuple(moves[k : k + 2]) for k in range(len(moves) - 1)]
    turned_back = [moves[k + 1] * moves[k] < 0 and abs(moves[k + 1]) <= 4 for k in leaps]
    turns = [a * b < 0 for a, b in pairs]
    return {
        "leap_recovery": _share(turned_back) if leaps else 1.0,
        "leaps_in_a_row": _share([abs(a) >= 3 and abs(b) >= 3 for a, b in pairs]),
        "same_way_leaps": _share([abs(a) >= 3 and abs(b) >= 3 and a * b > 0 for a, b in pairs]),
        "pitch_class_surprise": _surprise([p % 12 for p in pitches], [p % 12 for p in call_pitches], 12),
        "interval_surprise": _surprise(_clipped(moves), _clipped(call_moves), 25),
        "degree_transition_surprise": _transition_surprise(
            [(p - tonic) % 12 for p in pitches], [(p - tonic) % 12 for p in call_pitches], 12
        ),
        "interval_transition_surprise": _transition_surprise(_clipped(moves), _clipped(call_moves), 25),
        "position_surprise": _surprise(
            [n[1] % call.bar for n in notes], [n[1] % call.bar for n in call.notes], call.bar
        ),
        "length_entropy": _entropy(lengths),
        "length_entropy_vs_call": _entropy(lengths) - _entropy(call_lengths),
        "pitch_entropy_vs_call": _entropy(pitches) - _entropy(call_pitches),
        "interval_entropy_vs_call": _entropy(moves) - _entropy(call_moves),
        "motifs_repeated": _share([m in motifs[:k] for k, m in enumerate(motifs)]),
        "turns_vs_call": _share(turns) - _share([a * b < 0 for a, b in itertools.pairwise(call_moves)]),
        "pitch_spread_vs_call": float(np.std(pitches) - np.std(call_pitches)),
    }


def features(call: Line, continuation: Line, tonic: int, scale: frozenset[int]) -> dict[str, float]:
    """The continuation's FEATURES relative to ``call`` (both Lines in the same metre); ``tonic`` is the tune's
    tonic pitch class and ``scale`` its key signature's pitch classes."""
    notes = [n for n in continuation.notes if n[1] < CALL_BARS * continuation.bar] or [(0, 0, 1)]
    pitches = [p for p, _, _ in notes]
    call_pitches = [p for p, _, _ in call.notes] or [0]
    bar, beat = continuation.bar, beat_steps(continuation.meter)
    bars, call_bars = _bars(continuation), _bars(call)
    rhythms = [tuple(pos for pos, _ in b) for b in bars]
    call_rhythms = {tuple(pos for pos, _ in b) for b in call_bars if b}
    intervals = [abs(i) for i in _intervals(pitches)]
    call_runs = _runs(_intervals(call_pitches), RUN)
    runs = _runs(_intervals(pitches), RUN)
    _, last_start, last_length = notes[-1]
    degrees = [(p - tonic) % 12 for p in pitches]
    in_window = [n for n in notes if n[1] >= 0]
    call_in_window = [n for n in call.notes if 0 <= n[1] < CALL_BARS * call.bar]
    return {
        "notes_per_bar": len(in_window) / CALL_BARS,
        "notes_per_bar_vs_call": (len(in_window) - len(call_in_window)) / CALL_BARS,
        "downbeats": _share([any(pos == 0 for pos, _ in b) for b in bars]),
        "distinct_bar_rhythms": len(set(rhythms)) / CALL_BARS,
        "bar_rhythms_of_call": _share([r in call_rhythms for r in rhythms]),
        "onsets_on_beat": _share([s % beat == 0 for _, s, _ in notes]),
        "onsets_off_8ths": _share([s % 2 == 1 for _, s, _ in notes]),
        "longest_note": max(length for _, _, length in notes) / bar,
        "last_note_length": float(last_length),
        "last_note_end_before_bar_line": (CALL_BARS * bar - min(last_start + last_length, CALL_BARS * bar)) / bar,
        "last_onset_in_bar": (last_start % bar) / bar,
        "silent_steps": 1.0 - min(1.0, sum(length for _, _, length in in_window) / (CALL_BARS * bar)),
        "repeated_notes": _share([i == 0 for i in intervals]),
        "steps": _share([1 <= i <= 2 for i in intervals]),
        "thirds": _share([3 <= i <= 4 for i in intervals]),
        "fourths_fifths": _share([5 <= i <= 7 for i in intervals]),
        "wide_leaps": _share([i > 7 for i in intervals]),
        "mean_interval": _mean(intervals),
        "mean_interval_vs_call": _mean(intervals) - _mean([abs(i) for i in _intervals(call_pitches)]),
        "widest_interval": float(max(intervals, default=0)),
        "turns": _share([a * b < 0 for a, b in itertools.pairwise(i for i in _intervals(pitches) if i)]),
        "intervals_of_call": _share([i in set(_intervals(call_pitches)) for i in _intervals(pitches)]),
        "pitches_of_call": _share([p in set(call_pitches) for p in pitches]),
        "lengths_of_call": _share([length in {n[2] for n in call.notes} for _, _, length in notes]),
        "interval_distance": _distance(
            [min(i, 12) for i in intervals], [min(abs(i), 12) for i in _intervals(call_pitches)], 13
        ),
        "length_distance": _distance([min(n[2], 16) for n in notes], [min(n[2], 16) for n in call.notes], 17),
        "pitch_class_distance": _distance([p % 12 for p in pitches], [p % 12 for p in call_pitches], 12),
        "outside_call_range": _share([not min(call_pitches) <= p <= max(call_pitches) for p in pitches]),
        "entry_interval": float(pitches[0] - call_pitches[-1]),
        "tonic": _share([d == 0 for d in degrees]),
        "dominant": _share([d == 7 for d in degrees]),
        "subdominant": _share([d == 5 for d in degrees]),
        "third_degree": _share([d in (3, 4) for d in degrees]),
        "second_degree": _share([d == 2 for d in degrees]),
        "outside_key_signature": _share([p % 12 not in scale for p in pitches]),
        "runs_of_call": _share([r in call_runs for r in runs]),
        "bars_of_call": _share([b in set(call_bars) for b in bars if b]),
        "longest_run_of_call": float(_longest_shared(call_pitches, pitches)),
        "bars_repeated": _share([b in bars[:k] for k, b in enumerate(bars) if k and b]),
        "rhythms_repeated": _share([r in rhythms[:k] for k, r in enumerate(rhythms) if k and r]),
        "mean_pitch_vs_call": float(np.mean(pitches) - np.mean(call_pitches)),
        "range_vs_call": float((max(pitches) - min(pitches)) - (max(call_pitches) - min(call_pitches))),
        "top_vs_call": float(max(pitches) - max(call_pitches)),
        "bottom_vs_call": float(min(pitches) - min(call_pitches)),
        "ends_on_tonic": float(degrees[-1] == 0),
        "ends_on_dominant": float(degrees[-1] == 7),
        "ends_on_strong_beat": float(last_start % bar in strong_positions(continuation.meter)),
    } | expectancy(call, notes, tonic)


FEATURES = tuple(features(Line([(60, 0, 4)], 16, "4/4"), Line([(60, 0, 4)], 16, "4/4"), 0, frozenset()))


def describe(case: CallCase, continuation: Continuation) -> np.ndarray:
    """The FEATURES of ``continuation`` to ``case``'s call, as a vector."""
    call, step = case.call, case.call.step_seconds
    bar = call.steps_per_bar
    line = line_of(continuation.notes, step, continuation.first_bar, bar, case.meter)
    found = features(line_of(call.notes, step, call.bar_start_step, bar, case.meter), line, case.tonic, case.scale)
    return np.array([found[name] for name in FEATURES])


# --- the classifier --------------------------------------------------------------


def fit_logistic(x: np.ndarray, y: np.ndarray, penalty: float = PENALTY, iterations: int = 50) -> np.ndarray:
    """Weights (bias first) of an L2-penalised logistic regression of ``y`` (0/1) on ``x``, by Newton's method."""
    design = np.hstack([np.ones((len(x), 1)), x])
    weights = np.zeros(design.shape[1])
    ridge = penalty * np.eye(design.shape[1])
    ridge[0, 0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ weights, -30, 30)))
        gradient = design.T @ (p - y) + ridge @ weights
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + ridge + 1e-9 * np.eye(len(weights))
        change = np.linalg.solve(hessian, gradient)
        weights -= change
        if np.abs(change).max() < 1e-8:
            break
    return weights


def held_out_scores(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each row's score (the probability of y = 1) from a classifier trained without its group's rows."""
    names = np.unique(groups)
    fold_of = dict(zip(names, np.random.default_rng(seed).permutation(len(names)) % FOLDS, strict=True))
    folds = np.array([fold_of[g] for g in groups])
    scores = np.zeros(len(y))
    for fold in range(FOLDS):
        train, test = folds != fold, folds == fold
        if not test.any():
            continue
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        std[std < 1e-9] = 1.0
        weights = fit_logistic((x[train] - mean) / std, y[train])
        z = weights[0] + ((x[test] - mean) / std) @ weights[1:]
        scores[test] = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    return scores


def balanced_accuracy(y: np.ndarray, scores: np.ndarray) -> float:
    said = scores >= 0.5
    return float((np.mean(said[y == 1]) + np.mean(~said[y == 0])) / 2)


def auc(y: np.ndarray, scores: np.ndarray) -> float:
    """The probability that a random y = 1 row scores above a random y = 0 row (ties count half)."""
    ones, zeros = scores[y == 1], scores[y == 0]
    above = (ones[:, None] > zeros[None, :]).sum() + 0.5 * (ones[:, None] == zeros[None, :]).sum()
    return float(above / (len(ones) * len(zeros)))


def _interval(y: np.ndarray, scores: np.ndarray, groups: np.ndarray, seed: int) -> list[float]:
    """The 95% bootstrap interval of the balanced accuracy, tunes drawn with replacement."""
    names = np.unique(groups)
    rows = {g: np.flatnonzero(groups == g) for g in names}
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(BOOTSTRAP):
        chosen = np.concatenate([rows[g] for g in rng.choice(names, len(names))])
        found.append(balanced_accuracy(y[chosen], scores[chosen]))
    return [round(float(q), 3) for q in np.percentile(found, [2.5, 97.5])]


def compare(first: np.ndarray, second: np.ndarray, groups: list[str], seed: int = 0) -> dict:
    """Can the classifier tell rows of ``first`` (say the real continuations) from ``second`` (answers)? Row k of
    each belongs to tune ``groups[k]``."""
    x = np.vstack([first, second])
    y = np.concatenate([np.zeros(len(first)), np.ones(len(second))])
    tunes = np.array(list(groups) * 2)
    scores = held_out_scores(x, y, tunes, seed)
    return {
        "balanced_accuracy": round(balanced_accuracy(y, scores), 3),
        "ci95": _interval(y, scores, tunes, seed),
        "auc": round(auc(y, scores), 3),
        "separating": separating(first, second),
    }


def separating(first: np.ndarray, second: np.ndarray, count: int = SEPARATING) -> list[dict]:
    """The ``count`` features whose means differ most, in pooled standard deviations, with both means."""
    pooled = np.sqrt((first.var(axis=0) + second.var(axis=0)) / 2)
    effect = np.abs(first.mean(axis=0) - second.mean(axis=0)) / np.maximum(pooled, 1e-9)
    return [
        {
            "feature": FEATURES[k],
            "real": round(float(first[:, k].mean()), 3),
            "answers": round(float(second[:, k].mean()), 3),
            "effect": round(float(effect[k]), 2),
        }
        for k in np.argsort(-effect)[:count]
    ]


def report(
    tests: list[CallCase],
    answered: dict[str, list[Continuation]],
    null: tuple[list[Continuation], list[Continuation]],
    control: list[Continuation],
) -> dict:
    """The test for each system of ``answered`` (name -> one answer to each call of ``tests``) against the real
    bars 5-8, and the controls: ``control`` (answers at temperature 2) against the real bars, and ``null`` (one
    system's answers to each call with two seeds) the one against the other."""
    groups = [t.ident for t in tests]

    def described(continuations: list[Continuation]) -> np.ndarray:
        return np.array([describe(t, c) for t, c in zip(tests, continuations, strict=True)])

    real = described([as_played.real(t) for t in tests])
    found = {name: compare(real, described(c), groups) for name, c in answered.items()}
    found["controls"] = {
        "temperature_2": compare(real, described(control), groups),
        "two_seeds": compare(described(null[0]), described(null[1]), groups),
    }
    return found
