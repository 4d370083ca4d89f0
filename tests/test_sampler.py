"""Sampling: temperature, top-p, masks and seeds."""

from __future__ import annotations

import numpy as np
import pytest

from improvd.core.sampler import Sampler

PROBABILITIES = np.array([0.5, 0.3, 0.15, 0.05])


def draws(sampler: Sampler, count: int = 4000, **options) -> np.ndarray:
    return np.bincount([sampler.sample(PROBABILITIES, **options) for _ in range(count)], minlength=4) / count


def test_temperature_one_follows_the_model():
    assert np.allclose(draws(Sampler(1), temperature=1.0), [0.5, 0.3, 0.15, 0.05], atol=0.03)


def test_low_temperature_picks_the_most_likely_and_high_flattens():
    assert draws(Sampler(1), temperature=0.05)[0] == 1.0
    assert draws(Sampler(1), temperature=2.0)[3] > 0.08


def test_top_p_keeps_the_smallest_likely_set():
    frequencies = draws(Sampler(2), temperature=1.0, top_p=0.75)
    assert frequencies[2] == frequencies[3] == 0
    assert np.isclose(frequencies[0], 0.5 / 0.8, atol=0.03)


def test_mask_excludes_symbols():
    allowed = np.array([False, False, True, True])
    frequencies = draws(Sampler(3), temperature=1.0, allowed=allowed)
    assert frequencies[0] == frequencies[1] == 0
    assert np.isclose(frequencies[2], 0.75, atol=0.03)


def test_same_seed_same_draws():
    first, second = Sampler(9), Sampler(9)
    assert [first.sample(PROBABILITIES, 1.0) for _ in range(50)] == [
        second.sample(PROBABILITIES, 1.0) for _ in range(50)
    ]


def test_a_mask_that_allows_nothing_is_refused_not_sampled_from():
    with pytest.raises(ValueError, match="allows no symbol"):
        Sampler(seed=1).sample(np.full(4, 0.25), 1.0, allowed=np.zeros(4, dtype=bool))
