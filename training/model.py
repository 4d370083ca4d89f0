"""The Keras model: symbol indices -> (one-hot | embedding) -> LSTM stack -> dropout -> softmax.

Trained on next-step prediction at every step (return_sequences), so one
sequence of N steps gives N targets.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from improvd.core.lookback import PLACES, input_width


@keras.saving.register_keras_serializable(package="improvd")
class OneHot(layers.Layer):
    """(batch, time) int indices -> (batch, time, depth) one-hot floats; saves and reloads in safe mode."""

    def __init__(self, depth: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.depth = depth

    def call(self, inputs):
        return keras.ops.one_hot(keras.ops.cast(inputs, "int32"), self.depth)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.depth)

    def get_config(self) -> dict:
        return {**super().get_config(), "depth": self.depth}


@keras.saving.register_keras_serializable(package="improvd")
class LookbackInputs(layers.Layer):
    """(batch, time, 5) int rows of training.dataset.lookback_stream -> (batch, time, input_width(vocab)) floats:
    the one-hot symbol, symbols one and two bars back, position and 16ths left (improvd.core.lookback's order; an
    index past a part's size is all zeros)."""

    def __init__(self, vocab: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.vocab = vocab

    def call(self, inputs):
        rows = keras.ops.cast(inputs, "int32")
        sizes = (self.vocab, self.vocab, self.vocab, PLACES, PLACES)
        parts = [keras.ops.one_hot(rows[..., k], size + 1)[..., :size] for k, size in enumerate(sizes)]
        return keras.ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_width(self.vocab))

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab": self.vocab}


def build_model(
    vocab_size: int,
    lstm_units: tuple[int, ...] = (256,),
    dropout: float = 0.2,
    input_kind: str = "onehot",
    embedding_dim: int = 32,
    learning_rate: float = 1e-3,
) -> keras.Model:
    """A compiled model that maps (batch, time) int indices to (batch, time, vocab) probabilities."""
    shape = (None, 5) if input_kind == "lookback" else (None,)
    inputs = keras.Input(shape=shape, dtype="int32", name="symbols")
    if input_kind == "lookback":
        x = LookbackInputs(vocab_size, name="lookback")(inputs)
    elif input_kind == "embedding":
        x = layers.Embedding(vocab_size, embedding_dim, name="embedding")(inputs)
    elif input_kind == "onehot":
        x = OneHot(vocab_size, name="onehot")(inputs)
    else:
        raise ValueError(f"input_kind must be 'onehot', 'embedding' or 'lookback', got {input_kind!r}")
    for k, units in enumerate(lstm_units):
        x = layers.LSTM(units, return_sequences=True, name=f"lstm_{k}")(x)
        x = layers.Dropout(dropout, name=f"dropout_{k}")(x)
    outputs = layers.Dense(vocab_size, activation="softmax", name="dense")(x)
    return compile_model(keras.Model(inputs, outputs, name="improvd_lstm"), learning_rate)


def compile_model(model: keras.Model, learning_rate: float) -> keras.Model:
    """Adam on next-step cross-entropy (also for a reloaded model.keras, which is saved without optimizer state)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    return model


def lstm_units_of(model: keras.Model) -> list[int]:
    return [layer.units for layer in model.layers if isinstance(layer, layers.LSTM)]


def input_kind_of(model: keras.Model) -> str:
    if any(isinstance(layer, LookbackInputs) for layer in model.layers):
        return "lookback"
    return "embedding" if any(isinstance(layer, layers.Embedding) for layer in model.layers) else "onehot"


def warm_start(model: keras.Model, source: keras.Model, symbols: list[str], source_symbols: list[str]) -> None:
    """Start ``model`` (one-hot or lookback, vocabulary ``symbols``) from a one-hot ``source`` model of the same LSTM
    sizes (vocabulary ``source_symbols``, which may differ: another corpus's pitch range). The LSTM's recurrent
    weights and biases are the source's; the rows of the first LSTM's input kernel and the columns (and biases) of
    the output layer are the source's symbol by symbol name. A symbol the source lacks keeps ``model``'s fresh
    init; a lookback model's lookback inputs start at zero. With the same vocabulary ``model`` predicts exactly as
    ``source`` does until it learns. Raises ValueError for an embedding ``model``, a source that is not one-hot or
    one of other LSTM sizes."""
    if input_kind_of(model) == "embedding":
        raise ValueError("an embedding model does not start from another model (--init-from): one-hot or lookback")
    if input_kind_of(source) != "onehot":
        raise ValueError(f"a model starts from a one-hot model, not from a {input_kind_of(source)} one")
    if lstm_units_of(source) != lstm_units_of(model):
        raise ValueError(
            f"the LSTM sizes of the model to start from, {lstm_units_of(source)}, are not {lstm_units_of(model)}"
        )
    rows = np.array([i for i, symbol in enumerate(symbols) if symbol in source_symbols], dtype=int)
    source_rows = np.array([source_symbols.index(symbols[i]) for i in rows], dtype=int)
    for layer in model.layers:
        if not layer.get_weights():
            continue
        weights = source.get_layer(layer.name).get_weights()
        if layer.name == "lstm_0":
            kernel = layer.get_weights()[0]
            kernel[len(symbols) :] = 0.0  # a lookback model's lookback inputs
            kernel[rows] = weights[0][source_rows]
            weights = [kernel, *weights[1:]]
        elif layer.name == "dense":
            kernel, bias = layer.get_weights()
            kernel[:, rows] = weights[0][:, source_rows]
            bias[rows] = weights[1][source_rows]
            weights = [kernel, bias]
        layer.set_weights(weights)
