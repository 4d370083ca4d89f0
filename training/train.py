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

from improvd.core.encoding import Vocabulary, is_pitch, tonic_pitch_class
from improvd.core.keys import estimate_key

from .corpus import DEFAULT_CACHE_DIR, Corpus, load_corpus
from .dataset import evaluation_dataset, lookback_stream, split_tunes, stream_of, training_dataset

LR_DECAY = 0.3  # the learning rate is multiplied by this when validation loss stalls ...
LR_PATIENCE = 2  # ... for this many epochs (early stopping waits longer: --patience)
MIN_LR = 1e-5


@dataclass
class Settings:
    """Everything a run depends on; saved in model.json so a run can be repeated."""

    data: str | None = None  # a folder of scores; None: the music21 collection ``corpus``
    corpus: str = "essen"  # essen | british (improvd.offline.notation.COLLECTIONS)
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
    init_from: str | None = None  # a one-hot model's folder this one starts from (training.model.warm_start)

    def corpus_options(self) -> dict:
        return {"data": self.data, "names": self.files or None, "corpus": self.corpus, "max_tunes": self.max_tunes}


@dataclass
class Prepared:
    """A corpus with its split and vocabulary."""

    corpus: Corpus
    split: dict[str, list[str]]
    vocabulary: Vocabulary

    def songs(self, part: str) -> list[list[str]]:
        return [self.corpus.songs[ident] for ident in self.split[part]]

    def stream(self, part: str, settings: Settings) -> np.ndarray:
        """The part's training stream (training.dataset): symbols, and for a lookback model their bars."""
        if settings.input_kind != "lookback":
            return stream_of(self.songs(part), self.vocabulary, settings.song_gap)
        bars = [self.corpus.bars.get(ident, []) for ident in self.split[part]]
        return lookback_stream(self.songs(part), bars, self.vocabulary, settings.song_gap)


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

    from .model import build_model, compile_model, warm_start

    # first of all: MultiWorkerMirroredStrategy configures collective ops, which must come before any TensorFlow op
    strategy = _strategy(settings.strategy)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(settings.seed)
    vocabulary = prepared.vocabulary
    train_stream, val_stream = prepared.stream("train", settings), prepared.stream("validation", settings)
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
            if settings.init_from:
                source = Path(settings.init_from)
                card = json.loads((source / "model.json").read_text(encoding="utf-8"))
                source_model = keras.models.load_model(source / "model.keras")
                warm_start(model, source_model, vocabulary.symbols, card["vocabulary"])
    callbacks = [
        keras.callbacks.EarlyStopping("val_loss", patience=settings.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=LR_DECAY, patience=LR_PATIENCE, min_lr=MIN_LR),
        keras.callbacks.ModelCheckpoint(run / "checkpoint.keras", monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(run / "log.csv"),
        _time_limit(settings.max_minutes),
    ]
    (run / "settings.json").write_text(json.dumps(asdict(settings), indent=2) + "\n", encoding="utf-8")
    started = time.monotonic()
    if settings.strategy == "multiworker":
        history = _fit_across_workers(model, strategy, train_data, steps, val_data, settings, run)
    else:
        history = model.fit(
            train_data,
            steps_per_epoch=steps,
            epochs=settings.epochs,
            validation_data=val_data,
            callbacks=callbacks,
            verbose=1 if sys.stderr.isatty() else 2,
        ).history
    seconds = time.monotonic() - started
    if settings.strategy != "multiworker" and (run / "checkpoint.keras").is_file():  # a time limit stops early
        best = keras.models.load_model(run / "checkpoint.keras")
        model.set_weights(best.get_weights())
    if _is_chief(strategy):
        plot_curve(history, run / "curve.png")
    symbols = len(history["loss"]) * steps * settings.batch_size * settings.sequence_length
    summary = {
        "chief": _is_chief(strategy),
        "epochs_run": len(history["loss"]),
        "best_epoch": int(np.argmin(history["val_loss"])) + 1,
        "best_val_loss_nats": float(np.min(history["val_loss"])),
        "train_seconds": round(seconds, 1),
        "target_symbols_per_second": round(symbols / seconds, 1),
        "train_steps": len(train_stream),
        "resumed_from": str(resume) if resume else None,
    }
    return model, summary


def _is_chief(strategy) -> bool:
    """Whether this process writes the run folder and exports: always, but for a multi-worker cluster's workers
    other than the first."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return (
        resolver is None
        or not resolver.task_type
        or (resolver.task_type, resolver.task_id)
        in (
            ("chief", 0),
            ("worker", 0),
        )
    )


def _fit_across_workers(model, strategy, train_data, steps: int, val_data, settings: Settings, run: Path) -> dict:
    """Train with ``tf.distribute.MultiWorkerMirroredStrategy`` in a loop of our own: Keras 3's ``fit`` fails there
    on the first batch (keras-team/keras#20585). Each step runs on every worker's replicas and reduces the
    gradients across the cluster; every worker computes the same validation loss; early stopping keeps the best
    epoch's weights, and the chief (worker 0) writes log.csv. Returns the history (loss and val_loss per epoch)."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    batches = iter(strategy.experimental_distribute_dataset(train_data))

    @tf.function
    def train_step(batch):
        def replica(x, y):
            with tf.GradientTape() as tape:
                per_window = tf.reduce_mean(loss_fn(y, model(x, training=True)), axis=-1)
                loss = tf.nn.compute_average_loss(per_window, global_batch_size=settings.batch_size)
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        return strategy.reduce("SUM", strategy.run(replica, args=batch), axis=None)

    @tf.function
    def validation_loss(x, y):
        return tf.reduce_mean(loss_fn(y, model(x, training=False)))

    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    best, best_weights, waited = np.inf, model.get_weights(), 0
    started = time.monotonic()
    for epoch in range(settings.epochs):
        loss = float(np.mean([float(train_step(next(batches))) for _ in range(steps)]))
        val = float(np.mean([float(validation_loss(x, y)) for x, y in val_data]))
        history["loss"].append(loss)
        history["val_loss"].append(val)
        if _is_chief(strategy):
            with (run / "log.csv").open("a", encoding="utf-8") as log:
                log.write(f"{epoch},{loss},{val}\n")
        print(f"epoch {epoch + 1}: loss {loss:.4f}, val_loss {val:.4f}", file=sys.stderr)
        if val < best:
            best, best_weights, waited = val, model.get_weights(), 0
        else:
            waited += 1
        over_time = settings.max_minutes is not None and time.monotonic() - started > 60 * settings.max_minutes
        if waited >= settings.patience or over_time:
            break
    model.set_weights(best_weights)
    return history


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
        "minor_tonic": minor_tonic(prepared.songs("train")),
        "training": summary or {},
    }


def minor_tonic(songs: list[list[str]]) -> str:
    """The tonic the minor tunes among ``songs`` (as transposed for training) sit on, which style auto hears a
    minor call in too (improvd.core.styles): among the songs whose key estimate (improvd.core.keys.estimate_key,
    music21's analysis) is minor and whose last note is that tonic, the tonic most of them end on; A (the white
    keys' minor, where a corpus whose keys name their mode puts its minor tunes) when it ties for the most, or when
    none does."""
    counts: dict[str, int] = {}
    for song in songs:
        tonic, mode = estimate_key(song)
        last = next((int(symbol) for symbol in reversed(song) if is_pitch(symbol)), None)
        if mode == "minor" and last is not None and last % 12 == tonic_pitch_class(tonic):
            counts[tonic] = counts.get(tonic, 0) + 1
    return max(counts, key=lambda tonic: (counts[tonic], tonic == "A"), default="A")
