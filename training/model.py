"""The Keras model: symbol indices -> (one-hot | embedding) -> LSTM stack -> dropout -> softmax.

Trained on next-step prediction at every step (return_sequences), so one
sequence of N steps gives N targets.
"""

from __future__ import annotations

import keras
from keras import layers


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


def build_model(
    vocab_size: int,
    lstm_units: tuple[int, ...] = (256,),
    dropout: float = 0.2,
    input_kind: str = "onehot",
    embedding_dim: int = 32,
    learning_rate: float = 1e-3,
) -> keras.Model:
    """A compiled model that maps (batch, time) int indices to (batch, time, vocab) probabilities."""
    inputs = keras.Input(shape=(None,), dtype="int32", name="symbols")
    if input_kind == "embedding":
        x = layers.Embedding(vocab_size, embedding_dim, name="embedding")(inputs)
    elif input_kind == "onehot":
        x = OneHot(vocab_size, name="onehot")(inputs)
    else:
        raise ValueError(f"input_kind must be 'onehot' or 'embedding', got {input_kind!r}")
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
    return "embedding" if any(isinstance(layer, layers.Embedding) for layer in model.layers) else "onehot"
