"""A tiny end-to-end run of improvd-train on real Essen tunes: fit, export, load, evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("keras")

from improvd.core.encoding import SPECIAL_SYMBOLS
from improvd.core.model import load_model
from improvd.core.runtime import LSTMRuntime
from training import twosample
from training.cli import main

pytestmark = pytest.mark.train

FIGURES = ("bits_per_step", "bits_per_onset_pitch", "accuracy", "event_accuracy")
AS_PLAYED = ("eighth_grid", "motif_reuse", "cadence", "early_end", "in_key_signature")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    args = ["fit", "--files", "kinder0", "--max-tunes", "40", "--epochs", "1", "--lstm-units", "12", "8"]
    args += ["--sequence-length", "32", "--batch-size", "16", "--name", "tiny", "--seed", "3"]
    args += ["--models-dir", str(base / "models"), "--run-dir", str(base / "run"), "--cache-dir", str(base / "cache")]
    assert main(args) == 0
    return base


def test_fit_writes_run_folder_and_model_directory(tiny_run):
    run = tiny_run / "run"
    assert (run / "checkpoint.keras").is_file() and (run / "curve.png").stat().st_size > 1000
    assert (run / "log.csv").read_text().splitlines()[0].split(",")[0] == "epoch"
    model = load_model(tiny_run / "models" / "tiny")
    assert model.lstm_units == [12, 8] and model.input == "onehot" and model.sequence_length == 32
    symbols = model.vocabulary.symbols
    assert symbols[:3] == list(SPECIAL_SYMBOLS) and all(s.isdigit() for s in symbols[3:])
    assert model.weights["lstm_0_kernel"].shape == (len(symbols), 48)
    assert model.weights["dense_kernel"].shape == (8, len(symbols))
    card = model.card
    assert card["split"]["seed"] == 3 and card["corpus"]["files"] == ["kinder0"]
    counts = card["split"]["counts"]
    assert counts["test"] == len(card["test_tunes"]) >= 1 and sum(counts.values()) == card["corpus"]["songs"]
    assert card["training"]["epochs_run"] == 1
    assert card["minor_tonic"] == "A"  # style auto's: none of these children's songs is minor and ends on its tonic


def test_keras_file_reloads_in_safe_mode_and_matches_numpy(tiny_run):
    import keras

    directory = tiny_run / "models" / "tiny"
    reloaded = keras.models.load_model(directory / "model.keras", safe_mode=True)
    model = load_model(directory)
    indices = np.random.default_rng(0).integers(0, len(model.vocabulary), 50)
    expected = reloaded.predict(indices[None, :].astype("int32"), verbose=0)[0]
    runtime = LSTMRuntime(model)
    got = np.stack([np.exp(r - r.max()) / np.exp(r - r.max()).sum() for r in map(runtime.step, indices)])
    assert np.abs(got - expected).max() < 1e-5


def test_evaluate_prints_every_field(tiny_run, capsys):
    capsys.readouterr()
    args = ["evaluate", str(tiny_run / "models" / "tiny"), "--json", "--cache-dir", str(tiny_run / "cache")]
    assert main([*args, "--max-continuations", "3", "--seeds", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in FIGURES:
        assert report[key] >= 0 and report["baseline"][key] >= 0 and report["lstm_alone"][key] >= 0
    assert 0 <= report["accuracy"] <= 1 and 1 <= report["baseline"]["order"] <= 12
    assert report["test"]["tunes"] >= 1
    played = report["as_played"]
    assert 1 <= played["setup"]["calls"] <= 3 and played["setup"]["seeds"] == 2
    for name in ("model", "lstm_alone", "baseline", "real"):
        for key in AS_PLAYED:
            assert 0 <= played[name][key] <= 1, (name, key)
    assert played["model"]["key_signature_agreement"] >= 0 and "key_signature_agreement" not in played["real"]
    test = report["two_sample"]
    assert test["setup"]["calls"] == played["setup"]["calls"]
    for name in ("model", "lstm_alone", "baseline", "temperature_2", "two_seeds"):
        found = test[name] if name in test else test["controls"][name]
        assert 0 <= found["balanced_accuracy"] <= 1 and 0 <= found["auc"] <= 1, name
        assert found["ci95"][0] <= found["balanced_accuracy"] <= found["ci95"][1], name
        assert found["separating"] and all(f["feature"] in twosample.FEATURES for f in found["separating"])


def test_export_of_a_run_folder(tiny_run):
    args = ["export", str(tiny_run / "run"), "--name", "again", "--models-dir", str(tiny_run / "models")]
    assert main([*args, "--cache-dir", str(tiny_run / "cache"), "--no-keras"]) == 0
    again = load_model(tiny_run / "models" / "again")
    first = load_model(tiny_run / "models" / "tiny")
    assert again.vocabulary == first.vocabulary and not (tiny_run / "models" / "again" / "model.keras").exists()
    assert again.card["test_tunes"] == first.card["test_tunes"]
    for name, array in first.weights.items():
        assert np.array_equal(again.weights[name], array), name


def test_evaluate_refuses_a_directory_without_a_split(tmp_path, capsys):
    from tests.helpers import write_model

    directory = write_model(tmp_path / "m")
    assert main(["evaluate", str(directory), "--json"]) == 2
    assert "model.json: no settings/test_tunes" in capsys.readouterr().err


def test_missing_model_directory_is_one_clear_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nowhere"), "--json"]) == 2
    assert capsys.readouterr().err.strip() == f"improvd-train: {tmp_path / 'nowhere'}: not a model directory " + (
        "(it does not exist or is not a folder)"
    )


def test_fine_tuning_resumes_from_an_exported_model(tiny_run):
    import keras

    exported = tiny_run / "models" / "tiny" / "model.keras"
    assert getattr(keras.models.load_model(exported), "optimizer", None) is None  # no optimizer state
    args = ["fit", "--files", "kinder0", "--max-tunes", "40", "--epochs", "1", "--sequence-length", "32"]
    args += [
        "--batch-size",
        "16",
        "--name",
        "tuned",
        "--seed",
        "3",
        "--learning-rate",
        "3e-4",
        "--resume",
        str(exported),
    ]
    args += ["--models-dir", str(tiny_run / "models"), "--run-dir", str(tiny_run / "tuned-run")]
    assert main([*args, "--cache-dir", str(tiny_run / "cache"), "--no-keras"]) == 0
    tuned, first = load_model(tiny_run / "models" / "tuned"), load_model(tiny_run / "models" / "tiny")
    assert tuned.lstm_units == first.lstm_units == [12, 8] and tuned.card["training"]["resumed_from"] == str(exported)
    assert not np.array_equal(tuned.weights["dense_kernel"], first.weights["dense_kernel"])  # it did train


def test_a_one_hot_model_starts_from_one_of_another_vocabulary(tiny_run):
    args = ["fit", "--files", "kinder0", "--max-tunes", "6", "--epochs", "1", "--lstm-units", "12", "8"]
    args += ["--sequence-length", "32", "--batch-size", "16", "--name", "warm", "--seed", "3", "--no-keras"]
    args += ["--learning-rate", "1e-9", "--init-from", str(tiny_run / "models" / "tiny")]
    args += ["--models-dir", str(tiny_run / "models"), "--run-dir", str(tiny_run / "warm-run")]
    assert main([*args, "--cache-dir", str(tiny_run / "cache")]) == 0
    warm, first = load_model(tiny_run / "models" / "warm"), load_model(tiny_run / "models" / "tiny")
    assert warm.card["settings"]["init_from"] == str(tiny_run / "models" / "tiny")
    assert warm.vocabulary.symbols != first.vocabulary.symbols  # fewer tunes, fewer pitches
    rows = [first.vocabulary.index[symbol] for symbol in warm.vocabulary.symbols]  # all of them in the tiny one's
    close = {"atol": 1e-5, "rtol": 0}  # one epoch at a learning rate of 1e-9 moves no weight further
    assert np.allclose(warm.weights["lstm_0_kernel"], first.weights["lstm_0_kernel"][rows], **close)
    assert np.allclose(warm.weights["lstm_1_recurrent_kernel"], first.weights["lstm_1_recurrent_kernel"], **close)
    assert np.allclose(warm.weights["dense_kernel"], first.weights["dense_kernel"][:, rows], **close)
    assert np.allclose(warm.weights["dense_bias"], first.weights["dense_bias"][rows], **close)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lstm-units", "2000"], r"lstm_units \[2000\] take \d+ multiply-adds a step, over the limit"),
        (["--sequence-length", "512"], r"sequence_length 512 is over the limit of 256"),
    ],
)
def test_fit_refuses_before_fitting_a_model_improvd_would_refuse(tmp_path, capsys, monkeypatch, flags, message):
    """Issue 29: hours of training gave a model that every improvd refuses at load."""
    import re

    from training import train

    def no_fit(*args, **kwargs):
        raise AssertionError("fit ran")

    monkeypatch.setattr(train, "fit", no_fit)
    args = ["fit", "--files", "kinder0", "--max-tunes", "5", "--name", "big", "--cache-dir", str(tmp_path / "cache")]
    args += ["--models-dir", str(tmp_path / "models"), "--run-dir", str(tmp_path / "run"), *flags]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error  # the corpus's progress line, then one line
    assert re.fullmatch(rf"improvd-train: improvd would refuse this model: {message}.*", error.splitlines()[-1])
    assert not (tmp_path / "models").exists()


def test_a_lookback_model_starts_from_a_one_hot_model_and_evaluates(tiny_run, capsys):
    args = ["fit", "--files", "kinder0", "--max-tunes", "40", "--epochs", "1", "--lstm-units", "12", "8"]
    args += ["--sequence-length", "32", "--batch-size", "16", "--name", "looks", "--seed", "3"]
    args += ["--input-kind", "lookback", "--init-from", str(tiny_run / "models" / "tiny")]
    args += ["--models-dir", str(tiny_run / "models"), "--run-dir", str(tiny_run / "looks-run")]
    assert main([*args, "--cache-dir", str(tiny_run / "cache")]) == 0
    looks, first = load_model(tiny_run / "models" / "looks"), load_model(tiny_run / "models" / "tiny")
    assert looks.input == "lookback" and looks.weights["lstm_0_kernel"].shape[0] > len(looks.vocabulary) * 3
    assert not np.array_equal(looks.weights["dense_kernel"], first.weights["dense_kernel"])  # it did train
    capsys.readouterr()
    args = ["evaluate", str(tiny_run / "models" / "looks"), "--json", "--cache-dir", str(tiny_run / "cache")]
    assert main([*args, "--max-continuations", "2", "--seeds", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bits_per_onset_pitch"] > 0 and report["lstm_alone"]["bits_per_step"] > 0
    assert report["as_played"]["setup"]["calls"] >= 1 and 0 <= report["as_played"]["model"]["cadence"] <= 1
