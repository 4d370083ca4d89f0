"""The daemon's numpy LSTM gives Keras' probabilities (within 1e-5) over 1,000 steps."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from improvd.core.encoding import Vocabulary  # noqa: E402
from improvd.core.lookback import PLACES, Place  # noqa: E402
from improvd.core.model import DEFAULT_MODEL_DIR, load_model  # noqa: E402
from improvd.core.runtime import LSTMRuntime, softmax  # noqa: E402
from training.dataset import lookback_stream  # noqa: E402
from training.export import export_model  # noqa: E402
from training.model import build_model  # noqa: E402

pytestmark = pytest.mark.train
STEPS = 1000


def assert_parity(keras_model, directory) -> None:
    model = load_model(directory)
    rng = np.random.default_rng(5)
    indices = rng.integers(0, len(model.vocabulary), STEPS)
    runtime = LSTMRuntime(model)
    if model.input == "lookback":  # songs of random symbols (no song end) in bars of 12 and 16 steps
        symbols = [s for s in model.vocabulary.symbols if s != "/"]
        songs = [[symbols[i % len(symbols)] for i in indices[k : k + 200]] for k in range(0, STEPS - 200, 220)]
        bars = [[(s, 0, 12 + 4 * (k % 2)) for s in range(0, 200, 12 + 4 * (k % 2))] for k in range(len(songs))]
        rows = lookback_stream(songs, bars, model.vocabulary, 20)
        places = [None if r[3] == PLACES else Place(int(r[3]), int(r[3] + r[4] + 1)) for r in rows]
        expected = keras_model.predict(rows[None].astype("int32"), verbose=0)[0]
        got = []
        for row, place in zip(rows, places, strict=True):
            runtime.seat(place)
            got.append(softmax(runtime.step(int(row[0]))))
        got = np.stack(got)
    else:
        expected = keras_model.predict(indices[None, :].astype("int32"), verbose=0)[0]
        got = np.stack([softmax(runtime.step(int(i))) for i in indices])
    assert got.shape == expected.shape and got.shape[1] == len(model.vocabulary)
    assert np.abs(got - expected).max() < 1e-5


@pytest.mark.parametrize(
    ("input_kind", "units"),
    [("onehot", (16, 12)), ("embedding", (10, 14, 8)), ("onehot", (9, 7, 11)), ("lookback", (10, 14))],
)
def test_random_stacked_models(tmp_path, input_kind, units):
    keras.utils.set_random_seed(len(units))
    vocabulary = Vocabulary(["_", "r", "/", *map(str, range(55, 80))])
    model = build_model(len(vocabulary), units, 0.2, input_kind, embedding_dim=6)
    for weight in model.weights:  # larger than initial weights, so the gates leave their linear range
        weight.assign(np.random.default_rng(1).normal(0, 0.5, weight.shape).astype("float32"))
    assert_parity(model, export_model(model, vocabulary, tmp_path / "m", 16, save_keras=False))


def test_shipped_model():
    if not (DEFAULT_MODEL_DIR / "model.keras").is_file():
        pytest.skip(f"no shipped model.keras in {DEFAULT_MODEL_DIR}")
    assert_parity(keras.models.load_model(DEFAULT_MODEL_DIR / "model.keras"), DEFAULT_MODEL_DIR)
