"""The two-sample test: features of hand-made continuations, and the classifier on data of known separability."""

from __future__ import annotations

import numpy as np
import pytest

from training import as_played, twosample
from training.twosample import Line, features

CALL = Line(
    [(60, 0, 4), (62, 4, 4), (64, 8, 4), (65, 12, 4), (67, 16, 8), (65, 24, 8), (64, 32, 16), (62, 48, 16)], 16, "4/4"
)


def test_a_continuation_that_plays_the_call_again_reuses_all_of_it():
    found = features(CALL, CALL, 0, frozenset({0, 2, 4, 5, 7, 9, 11}))
    assert found["bars_of_call"] == 1.0 and found["runs_of_call"] == 1.0 and found["longest_run_of_call"] == 8
    assert found["interval_distance"] == 0.0 and found["length_distance"] == 0.0 and found["pitch_class_distance"] == 0
    assert found["downbeats"] == 1.0 and found["notes_per_bar_vs_call"] == 0.0 and found["mean_pitch_vs_call"] == 0
    assert found["steps"] == 1.0 and found["fourths_fifths"] == 0.0 and found["outside_key_signature"] == 0.0
    assert found["last_note_length"] == 16 and found["ends_on_strong_beat"] == 1.0 and not found["ends_on_tonic"]


def test_a_leaping_continuation_that_leaves_the_downbeats_and_leads_on():
    leaps = Line(
        [(60, 2, 2), (67, 4, 4), (79, 16 + 6, 2), (76, 32 + 2, 6), (72, 48 + 10, 4), (79, 48 + 14, 2)], 16, "4/4"
    )
    found = features(CALL, leaps, 0, frozenset({0, 2, 4, 5, 7, 9, 11}))
    assert found["downbeats"] == 0.0 and found["bars_of_call"] == 0.0 and found["runs_of_call"] == 0.0
    assert found["fourths_fifths"] == pytest.approx(2 / 5) and found["wide_leaps"] == pytest.approx(1 / 5)
    assert (
        found["thirds"] == pytest.approx(2 / 5)
        and found["widest_interval"] == 12
        and found["top_vs_call"] == 12
        and found["onsets_off_8ths"] == 0.0
    )
    assert found["last_note_length"] == 2 and found["last_onset_in_bar"] == pytest.approx(14 / 16)
    assert found["ends_on_strong_beat"] == 0.0 and found["ends_on_dominant"] == 1.0
    assert found["notes_per_bar"] == pytest.approx(6 / 4) and found["bars_repeated"] == 0.0


def test_every_feature_is_named_once_and_is_a_number():
    found = features(CALL, CALL, 0, frozenset())
    assert tuple(found) == twosample.FEATURES and all(isinstance(v, float | int) for v in found.values())


def test_the_classifier_tells_apart_what_differs_and_not_what_is_alike():
    rng = np.random.default_rng(7)
    groups = [f"tune{k}" for k in range(200)]
    real = rng.normal(0, 1, (200, 6))
    shifted = rng.normal(0, 1, (200, 6)) + np.array([2.5, 0, 0, 0, 0, 0])
    alike = rng.normal(0, 1, (200, 6))
    apart = twosample.compare(real, shifted, groups)
    assert apart["balanced_accuracy"] >= 0.85 and apart["auc"] >= 0.9
    assert apart["ci95"][0] <= apart["balanced_accuracy"] <= apart["ci95"][1]
    same = twosample.compare(real, alike, groups)
    assert 0.4 <= same["balanced_accuracy"] <= 0.6 and same["ci95"][0] <= 0.5 <= same["ci95"][1]


def test_a_tune_is_never_judged_by_a_classifier_that_saw_it():
    """Each tune's two rows share a value no other tune has, and the label flips between them: a classifier
    trained with a tune's own rows could learn nothing from that either, but the held-out scores must be the
    same whatever the rows of that one tune say (they were never seen when scoring it)."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (40, 3))
    y = np.r_[np.zeros(20), np.ones(20)]
    groups = np.array([f"t{k % 20}" for k in range(40)])
    scores = twosample.held_out_scores(x, y, groups)
    changed = x.copy()
    changed[[0, 20]] += 100.0  # tune t0's rows only
    again = twosample.held_out_scores(changed, y, groups)
    assert again[0] != scores[0] or again[20] != scores[20]  # t0 is scored with its own (changed) features
    fold_mates = [k for k in range(40) if k % 20 != 0]
    moved = [k for k in fold_mates if abs(again[k] - scores[k]) > 1e-9]
    assert moved and len(moved) < len(fold_mates)  # only the other folds' classifiers saw t0


def test_auc_counts_pairs_and_ties():
    y = np.array([0, 0, 1, 1])
    assert twosample.auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert twosample.auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5


def test_each_call_has_a_seed_of_its_own():
    seeds = {as_played.seed_of(f"erk5#{k}", 1) for k in range(100)}
    assert len(seeds) == 100 and as_played.seed_of("erk5#1", 1) != as_played.seed_of("erk5#1", 2)
    assert as_played.seed_of("erk5#1", 1) == as_played.seed_of("erk5#1", 1)


def test_what_a_listener_expects_tells_a_wandering_continuation_from_one_in_the_calls_manner():
    scale = frozenset({0, 2, 4, 5, 7, 9, 11})
    alike = Line([(64, 0, 4), (65, 4, 4), (67, 8, 4), (65, 12, 4), (64, 16, 8), (62, 24, 8), (60, 32, 16)], 16, "4/4")
    wandering = Line(
        [(60, 0, 2), (67, 2, 6), (65, 8, 3), (72, 11, 1), (79, 12, 4), (69, 16, 2), (57, 18, 6), (74, 24, 4)], 16, "4/4"
    )
    near, far = features(CALL, alike, 0, scale), features(CALL, wandering, 0, scale)
    for name in (
        "interval_surprise",
        "interval_transition_surprise",
        "degree_transition_surprise",
        "pitch_class_surprise",
        "position_surprise",
        "interval_entropy_vs_call",
        "pitch_spread_vs_call",
        "length_entropy",
    ):
        assert far[name] > near[name], name
    # the wandering line's moves: +7 -2 +7 +7 -10 -12 +17; leaps turned back by a step: the first of five
    assert far["leap_recovery"] == pytest.approx(1 / 5) and near["leap_recovery"] == 1.0
    assert far["leaps_in_a_row"] == pytest.approx(4 / 6) and far["same_way_leaps"] == pytest.approx(2 / 6)
    assert near["leaps_in_a_row"] == 0.0


def test_a_continuation_that_plays_the_call_again_is_as_expected_as_the_call():
    found = features(CALL, CALL, 0, frozenset({0, 2, 4, 5, 7, 9, 11}))
    for name in ("length_entropy_vs_call", "pitch_entropy_vs_call", "interval_entropy_vs_call", "turns_vs_call"):
        assert found[name] == 0.0, name
    assert found["pitch_spread_vs_call"] == 0.0 and found["motifs_repeated"] == 0.0
    twice = CALL.notes[:6] + [(p, s + 32, n) for p, s, n in CALL.notes[:6]]  # its first two bars, twice
    assert features(CALL, Line(twice, 16, "4/4"), 0, frozenset())["motifs_repeated"] > 0
