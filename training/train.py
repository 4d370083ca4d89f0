"""Fit the model on the train split, watching validation loss, then export it.

A run folder (``--run-dir``) gets the best checkpoint (``checkpoint.keras``),
``log.csv`` (one row per epoch) and ``curve.png``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from improvd.encoding import Vocabulary

from .corpus import DEFAULT_CACHE_DIR, Corpus, load_corpus
from .dataset import evaluation_dataset, split_tunes, stream_of, training_dataset

LR_DECAY = 0.3  # the learning rate is multiplied by this when validation loss stalls ...
LR_PATIENCE = 2  # ... for this many epochs (early stopping waits longer: --patience)
MIN_LR = 1e-5


@dataclass
class Settings:
    """Everything a run depends on; saved in model.json so a run can be repeated."""

    data: str | None = None  # a folder of scores; None: music21's Essen collection
    files: list[str] = field(default_factory=list)  # file stems to use; empty: all
    max_tunes: int | None = None  # per file; None: all
    seed: int = 1
    validation: float = 0.05
    test: float = 0.05
    sequence_length: int = 64
    song_gap: int = 16  # song ends between songs in the training stream
    input_kind: str = "onehot"
    embedding_dim: int = 32
    lstm_units: list[int] = field(default_factory=lambda: [256])
    dropout: float = 0.2
    learning_rate: float = 1e-3
    batch_size: int = 64
    epochs: int = 50
    patience: int = 5
    max_minutes: float | None = None  # stop after the epoch that passes this wall-clock budget
    strategy: str = "default"  # default | mirrored | multiworker

    def corpus_options(self) -> dict:
        return {"data": self.data, "names": self.files or None, "max_tunes": self.max_tunes}


@dataclass
class Prepared:
    """A corpus with its split and vocabulary."""

    corpus: Corpus
    split: dict[str, list[str]]
    vocabulary: Vocabulary

    def songs(self, part: str) -> list[list[str]]:
        return [self.corpus.songs[ident] for ident in self.split[part]]


def prepare(settings: Settings, cache_dir: str | Path | None = DEFAULT_CACHE_DIR, progress: bool = True) -> Prepared:
    """Load the corpus and split it; the vocabulary covers every symbol of every kept song."""
    corpus = load_corpus(**settings.corpus_options(), cache_dir=cache_dir, progress=progress)
    if len(corpus.songs) < 3:
        raise ValueError(f"{corpus.name}: only {len(corpus.songs)} usable songs; at least 3 are needed to split")
    split = split_tunes(list(corpus.songs), settings.seed, settings.validation, settings.test)
    vocabulary = Vocabulary.from_symbols(s for song in corpus.songs.values() for s in song)
    return Prepared(corpus, split, vocabulary)


def _strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":  # machines and roles come from the TF_CONFIG environment variable
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"strategy must be default, mirrored or multiworker, got {name!r}")


def _time_limit(max_minutes: float | None):
    import keras

    class TimeLimit(keras.callbacks.Callback):
        """Stop training after the epoch in which the wall-clock budget runs out."""

        def on_train_begin(self, logs=None) -> None:
            self.start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None) -> None:
            if max_minutes is not None and time.monotonic() - self.start > 60 * max_minutes:
                print(f"time limit of {max_minutes} minutes reached after epoch {epoch + 1}", file=sys.stderr)
                self.model.stop_training = True

    return TimeLimit()


def fit(settings: Settings, run_dir: str | Path, prepared: Prepared, resume: str | Path | None = None):
    """Train; returns (best Keras model, history dict). The best epoch's weights are restored."""
    import keras

    from .model import build_model, compile_model

    # first of all: MultiWorkerMirroredStrategy configures collective ops, which must come before any TensorFlow op
    strategy = _strategy(settings.strategy)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(settings.seed)
    vocabulary = prepared.vocabulary
    train_stream = stream_of(prepared.songs("train"), vocabulary, settings.song_gap)
    val_stream = stream_of(prepared.songs("validation"), vocabulary, settings.song_gap)
    train_data, steps = training_dataset(train_stream, settings.sequence_length, settings.batch_size, settings.seed)
    val_data = evaluation_dataset(val_stream, settings.sequence_length, settings.batch_size)
    with strategy.scope():
        if resume:  # fine-tuning at this run's learning rate; a checkpoint keeps its optimizer state
            model = keras.models.load_model(resume)
            if getattr(model, "optimizer", None) is None:  # an exported model.keras holds only the weights
                compile_model(model, settings.learning_rate)
            model.optimizer.learning_rate.assign(settings.learning_rate)
        else:
            model = build_model(
                len(vocabulary),
                tuple(settings.lstm_units),
                settings.dropout,
                settings.input_kind,
                settings.embedding_dim,
                settings.learning_rate,
            )
    callbacks = [
        keras.callbacks.EarlyStopping("val_loss", patience=settings.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=LR_DECAY, patience=LR_PATIENCE, min_lr=MIN_LR),
        keras.callbacks.ModelCheckpoint(run / "checkpoint.keras", monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(run / "log.csv"),
        _time_limit(settings.max_minutes),
    ]
    (run / "settings.json").write_text(json.dumps(asdict(settings), indent=2) + "\n", encoding="utf-8")
    started = time.monotonic()
    history = model.fit(
        train_data,
        steps_per_epoch=steps,
        epochs=settings.epochs,
        validation_data=val_data,
        callbacks=callbacks,
        verbose=1 if sys.stderr.isatty() else 2,
    )
    seconds = time.monotonic() - started
    if (run / "checkpoint.keras").is_file():  # the time limit may stop before early stopping restores
        best = keras.models.load_model(run / "checkpoint.keras")
        model.set_weights(best.get_weights())
    plot_curve(history.history, run / "curve.png")
    symbols = len(history.history["loss"]) * steps * settings.batch_size * settings.sequence_length
    summary = {
        "epochs_run": len(history.history["loss"]),
        "best_epoch": int(np.argmin(history.history["val_loss"])) + 1,
        "best_val_loss_nats": float(np.min(history.history["val_loss"])),
        "train_seconds": round(seconds, 1),
        "target_symbols_per_second": round(symbols / seconds, 1),
        "train_steps": len(train_stream),
        "resumed_from": str(resume) if resume else None,
    }
    return model, summary


def plot_curve(history: dict, path: Path) -> None:
    """Training and validation loss per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history["loss"]) + 1)
    axes.plot(epochs, history["loss"], label="train")
    axes.plot(epochs, history["val_loss"], label="validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel("cross-entropy (nats per step)")
    axes.legend()
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, path)


def card_of(settings: Settings, prepared: Prepared, summary: dict | None = None) -> dict:
    """The model.json entries that describe data, split, settings and training."""
    return {
        "corpus": prepared.corpus.summary(),
        "settings": asdict(settings),
        "split": {
            "seed": settings.seed,
            "validation": settings.validation,
            "test": settings.test,
            "counts": {part: len(idents) for part, idents in prepared.split.items()},
        },
        "test_tunes": prepared.split["test"],
        "training": summary or {},
    }
