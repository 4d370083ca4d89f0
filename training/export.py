"""Write a trained Keras model as an improvd model directory (see improvd/core/model.py for the format)."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

import keras
import numpy as np

import improvd
from improvd.core.encoding import STEP_QUARTER_LENGTH, Vocabulary
from improvd.core.model import MODEL_FORMAT, MODEL_FORMAT_VERSION, MODEL_JSON, WEIGHTS_NPZ

from .model import input_kind_of, lstm_units_of


def weights_of(model: keras.Model) -> dict[str, np.ndarray]:
    """The arrays of weights.npz, named as improvd/core/model.py documents."""
    arrays: dict[str, np.ndarray] = {}
    for layer in model.layers:
        values = [np.asarray(v, np.float32) for v in layer.get_weights()]
        if isinstance(layer, keras.layers.Embedding):
            arrays["embedding"] = values[0]
        elif isinstance(layer, keras.layers.LSTM):
            for key, value in zip(("kernel", "recurrent_kernel", "bias"), values, strict=True):
                arrays[f"{layer.name}_{key}"] = value
        elif isinstance(layer, keras.layers.Dense):
            arrays["dense_kernel"], arrays["dense_bias"] = values
    return arrays


def export_model(
    model: keras.Model,
    vocabulary: Vocabulary,
    directory: str | Path,
    sequence_length: int,
    card: dict[str, Any] | None = None,
    save_keras: bool = True,
) -> Path:
    """Write model.json, weights.npz and (optionally) model.keras into ``directory``.

    Files are written to temporary names and renamed, so a crash never leaves a
    half-written model directory that looks whole.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    info = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "name": path.name,
        "vocabulary": vocabulary.symbols,
        "step_quarter_length": STEP_QUARTER_LENGTH,
        "sequence_length": sequence_length,
        "input": input_kind_of(model),
        "lstm_units": lstm_units_of(model),
        "versions": {
            "improvd": improvd.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(card or {}),
    }
    tmp_npz = path / (WEIGHTS_NPZ + ".tmp.npz")
    np.savez(tmp_npz, **weights_of(model))
    os.replace(tmp_npz, path / WEIGHTS_NPZ)
    tmp_json = path / (MODEL_JSON + ".tmp")
    tmp_json.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_json, path / MODEL_JSON)
    if save_keras:  # the weights without Adam's two moments per weight: a third of the size
        shipped = keras.Model.from_config(model.get_config())  # not compiled, so no optimizer
        shipped.set_weights(model.get_weights())
        tmp_keras = path / "model.tmp.keras"
        shipped.save(tmp_keras)
        os.replace(tmp_keras, path / "model.keras")
    return path
