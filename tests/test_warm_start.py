"""training.model.warm_start: a model starts from a one-hot model's weights, symbol by symbol where the two
vocabularies differ (the British model from the Essen one)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from training.model import build_model, warm_start  # noqa: E402

pytestmark = pytest.mark.train
SOURCE = ["_", "r", "/", "48", "50", "52", "53"]  # pitches the target lacks (48, 50) and shares (52, 53)
TARGET = ["_", "r", "/", "52", "53", "55", "93"]  # pitches the source lacks (55, 93)
SHARED = {0: 0, 1: 1, 2: 2, 3: 5, 4: 6}  # target index: source index
FRESH = [5, 6]


def _weights(model, name: str) -> list[np.ndarray]:
    return model.get_layer(name).get_weights()


@pytest.mark.parametrize("kind", ["onehot", "lookback"])
def test_the_shared_symbols_start_from_the_source_and_the_rest_fresh(kind):
    keras.utils.set_random_seed(5)
    source = build_model(len(SOURCE), (12,), 0.2, "onehot")
    model = build_model(len(TARGET), (12,), 0.2, kind)
    fresh_kernel, _, _ = _weights(model, "lstm_0")
    fresh_dense, _ = _weights(model, "dense")
    warm_start(model, source, TARGET, SOURCE)
    kernel, recurrent, bias = _weights(model, "lstm_0")
    source_kernel, source_recurrent, source_bias = _weights(source, "lstm_0")
    dense, dense_bias = _weights(model, "dense")
    source_dense, source_dense_bias = _weights(source, "dense")
    assert np.array_equal(recurrent, source_recurrent) and np.array_equal(bias, source_bias)
    for row, source_row in SHARED.items():
        assert np.array_equal(kernel[row], source_kernel[source_row])
        assert np.array_equal(dense[:, row], source_dense[:, source_row])
        assert dense_bias[row] == source_dense_bias[source_row]
    assert np.array_equal(kernel[FRESH], fresh_kernel[FRESH]) and np.abs(kernel[FRESH]).max() > 0
    assert np.array_equal(dense[:, FRESH], fresh_dense[:, FRESH]) and not dense_bias[FRESH].any()
    assert not kernel[len(TARGET) :].any()  # a lookback model's lookback inputs start at zero


def test_a_source_of_other_sizes_or_inputs_and_an_embedding_model_are_refused():
    keras.utils.set_random_seed(5)
    model = build_model(len(TARGET), (12,), 0.2, "onehot")
    with pytest.raises(ValueError, match="LSTM sizes"):
        warm_start(model, build_model(len(SOURCE), (16,), 0.2, "onehot"), TARGET, SOURCE)
    with pytest.raises(ValueError, match="one-hot"):
        warm_start(model, build_model(len(SOURCE), (12,), 0.2, "embedding"), TARGET, SOURCE)
    with pytest.raises(ValueError, match="embedding model does not start"):
        warm_start(build_model(len(TARGET), (12,), 0.2, "embedding"), model, TARGET, SOURCE)
