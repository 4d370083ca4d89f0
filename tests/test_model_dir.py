"""Model directories that are missing, corrupt or disagree with themselves give errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from improvd.core.model import (
    DEFAULT_SONG_GAP,
    ModelError,
    load_model,
)
from improvd.core.runtime import LSTMRuntime
from tests.helpers import VOCABULARY, raised_without_blocking, write_model


def edit_card(directory: Path, **changes) -> None:
    card = json.loads((directory / "model.json").read_text(encoding="utf-8"))
    card.update(changes)
    (directory / "model.json").write_text(json.dumps(card), encoding="utf-8")


def edit_weights(directory: Path, drop: str | None = None, **arrays) -> None:
    with np.load(directory / "weights.npz", allow_pickle=False) as archive:
        weights = {k: archive[k] for k in archive.files if k != drop}
    weights.update(arrays)
    np.savez(directory / "weights.npz", **weights)


@pytest.mark.parametrize("input_kind", ["onehot", "embedding"])
def test_consistent_directory_loads_and_runs(tmp_path, input_kind):
    model = load_model(write_model(tmp_path / "m", input_kind))
    assert model.vocabulary.symbols == VOCABULARY
    assert model.lstm_units == [6, 5]
    logits = LSTMRuntime(model).step(model.vocabulary.index["60"])
    assert logits.shape == (len(VOCABULARY),)


def test_song_gap_comes_from_the_card_settings(tmp_path):
    directory = write_model(tmp_path / "m")
    assert load_model(directory).song_gap == DEFAULT_SONG_GAP  # a card without settings
    edit_card(directory, settings={"song_gap": 5})
    assert load_model(directory).song_gap == 5


def test_missing_directory(tmp_path):
    with pytest.raises(ModelError, match=r"nowhere: not a model directory"):
        load_model(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["model.json", "weights.npz"])
def test_missing_file_is_named(tmp_path, name):
    directory = write_model(tmp_path / "m")
    (directory / name).unlink()
    with pytest.raises(ModelError, match=rf"{name}: missing"):
        load_model(directory)


@pytest.mark.parametrize(
    ("text", "message"),
    [('{"format": "improvd-model", ', "not readable JSON"), ("[1, 2]", "not an improvd model card")],
)
def test_unreadable_card(tmp_path, text, message):
    directory = write_model(tmp_path / "m")
    (directory / "model.json").write_text(text, encoding="utf-8")
    with pytest.raises(ModelError, match=rf"model.json: {message}"):
        load_model(directory)


def test_corrupt_npz(tmp_path):
    directory = write_model(tmp_path / "m")
    data = (directory / "weights.npz").read_bytes()
    (directory / "weights.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"weights.npz: not a readable numpy .npz archive"):
        load_model(directory)


def test_pickled_array_is_refused(tmp_path):
    """Refused by its header, before anything of it is unpickled."""
    directory = write_model(tmp_path / "m")
    edit_weights(directory, dense_bias=np.array([{"evil": 1}] * len(VOCABULARY), dtype=object))
    with pytest.raises(ModelError, match=r"weights.npz: array dense_bias has dtype object, expected floats"):
        load_model(directory)


def test_vocabulary_size_disagrees_with_weights(tmp_path):
    directory = write_model(tmp_path / "m")
    edit_card(directory, vocabulary=[*VOCABULARY, "69"])
    with pytest.raises(ModelError, match=r"weights.npz: lstm_0_kernel has shape \(8, 24\).*vocabulary of 9"):
        load_model(directory)


def test_layer_sizes_disagree_with_weights(tmp_path):
    directory = write_model(tmp_path / "m")
    edit_card(directory, lstm_units=[6, 7])
    with pytest.raises(ModelError, match=r"weights.npz: lstm_1_kernel has shape \(6, 20\)"):
        load_model(directory)


def test_layer_count_disagrees_with_weights(tmp_path):
    directory = write_model(tmp_path / "m")
    edit_card(directory, lstm_units=[6])
    with pytest.raises(ModelError, match=r"weights.npz: arrays do not match model.json .*unexpected \['lstm_1_bias'"):
        load_model(directory)


def test_missing_array(tmp_path):
    directory = write_model(tmp_path / "m")
    edit_weights(directory, drop="dense_bias")
    with pytest.raises(ModelError, match=r"weights.npz: arrays do not match model.json \(missing \['dense_bias'\]"):
        load_model(directory)


def test_embedding_card_with_onehot_weights(tmp_path):
    directory = write_model(tmp_path / "m", "onehot")
    edit_card(directory, input="embedding")
    with pytest.raises(ModelError, match=r"weights.npz: arrays do not match .*missing \['embedding'\]"):
        load_model(directory)


def test_nan_weights(tmp_path):
    directory = write_model(tmp_path / "m")
    edit_weights(directory, dense_bias=np.full(len(VOCABULARY), np.nan, np.float32))
    with pytest.raises(ModelError, match=r"weights.npz: array dense_bias holds NaN"):
        load_model(directory)


def test_integer_weights(tmp_path):
    directory = write_model(tmp_path / "m")
    edit_weights(directory, dense_bias=np.zeros(len(VOCABULARY), np.int64))
    with pytest.raises(ModelError, match=r"weights.npz: array dense_bias has dtype int64"):
        load_model(directory)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "keras"}, r"not an improvd model card"),
        ({"format_version": 99}, r"format_version 99"),
        ({"step_quarter_length": 0.5}, r"step_quarter_length 0.5"),
        ({"lstm_units": []}, r"lstm_units must be a non-empty list"),
        ({"lstm_units": [6, "5"]}, r"lstm_units must be a non-empty list"),
        ({"input": "bytes"}, r"input must be one of onehot, embedding, lookback"),
        ({"sequence_length": 0}, r"sequence_length must be a positive whole number"),
        ({"sequence_length": True}, r"sequence_length must be a positive whole number"),
        ({"sequence_length": 10**30}, r"sequence_length 1000000000000000000000000000000 is over the limit of 256"),
        ({"sequence_length": 257}, r"sequence_length 257 is over the limit of 256"),
        ({"lstm_units": [6, True]}, r"lstm_units must be a non-empty list"),
        (
            {"vocabulary": ["_", "r", "60", "62", "64", "65", "67", "69"]},
            r"vocabulary lacks the special symbol\(s\) \['/'\]",
        ),
        ({"vocabulary": ["_", "r", "/", "60", "60"]}, r"bad vocabulary .*more than once"),
        ({"vocabulary": ["_", "r", "/", "C4"]}, r"bad vocabulary"),
        ({"vocabulary": "_ r / 60"}, r"bad vocabulary"),
        ({"vocabulary": ["_", "r", "/"]}, r"vocabulary has no pitches"),
        ({"settings": {"song_gap": 0}}, r"settings.song_gap must be a whole number from 1 to 64, got 0"),
        ({"settings": {"song_gap": "16"}}, r"settings.song_gap must be a whole number from 1 to 64, got '16'"),
        ({"settings": [16]}, r"settings.song_gap must be a whole number from 1 to 64, got None"),
        ({"settings": {"song_gap": 10**9}}, r"settings.song_gap must be a whole number from 1 to 64, got 1000000000"),
    ],
)
def test_bad_card_fields(tmp_path, changes, message):
    directory = write_model(tmp_path / "m")
    edit_card(directory, **changes)
    with pytest.raises(ModelError, match=rf"model.json: {message}"):
        load_model(directory)


def test_a_fifo_for_weights_is_refused_without_blocking(tmp_path):
    """Reading a FIFO blocks for ever (it made SIGTERM hang after "stopped")."""
    import os

    directory = write_model(tmp_path / "m")
    (directory / "weights.npz").unlink()
    os.mkfifo(directory / "weights.npz")
    error = raised_without_blocking(lambda: load_model(directory))
    assert isinstance(error, ModelError) and "weights.npz: not a regular file" in str(error)


def test_a_deeply_nested_card_is_a_model_error(tmp_path):
    directory = write_model(tmp_path / "m")
    (directory / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match=r"model.json: not readable JSON \(nested too deeply\)"):
        load_model(directory)


def npz_with_header(path: Path, name: str, shape: tuple[int, ...], payload: bytes = b"") -> None:
    """An .npz whose one array declares ``shape`` (float32) but holds only ``payload``."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.npy", header.getvalue() + payload)


def test_a_huge_declared_shape_is_refused_before_memory_is_taken(tmp_path):
    """It used to raise MemoryError out of the loader (no error event)."""
    directory = write_model(tmp_path / "m")
    npz_with_header(directory / "weights.npz", "dense_kernel", (10**6, 10**6))
    with pytest.raises(ModelError, match=r"weights.npz: its arrays declare 4000000000000 bytes, over the limit"):
        load_model(directory)


def test_a_weights_zip_bomb_is_refused(tmp_path):
    """1.5 MB of compressed zeros that expand to gigabytes."""
    from improvd.core.model import MAX_WEIGHTS_BYTES

    directory = write_model(tmp_path / "m")
    count = MAX_WEIGHTS_BYTES // 4 + 1
    npz_with_header(directory / "weights.npz", "dense_kernel", (count,), bytes(count * 4))
    assert (directory / "weights.npz").stat().st_size < MAX_WEIGHTS_BYTES // 100
    with pytest.raises(ModelError, match=r"over the limit"):
        load_model(directory)
