"""Training throughput: improvd's pipeline against the tutorial's setup, on the same tunes, in one run.

* improvd: tf.data windows of the int stream, a target at every step (return_sequences).
* tutorial: every sliding 64-step window one-hot encoded into an in-memory array, one
  target (the last step) per window.

Both use one LSTM of 256 units, dropout 0.2, Adam 1e-3, batch 64, sequence length 64.
Each setup runs in its own process so its peak RSS is its own. Prints one JSON object:
target symbols per second of each, their ratio and each peak RSS (MB).

    PYTHONPATH=. .venv/bin/python bench/train_throughput.py --tunes 150 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SEQUENCE_LENGTH = 64
BATCH = 64
UNITS = 256


def songs_and_vocabulary(tunes: int):
    from improvd.core.encoding import Vocabulary
    from training.corpus import load_corpus

    corpus = load_corpus(progress=False)
    songs = [corpus.songs[ident] for ident in sorted(corpus.songs)[:tunes]]
    vocabulary = Vocabulary.from_symbols(s for song in corpus.songs.values() for s in song)
    return songs, vocabulary


def timed_fit(model, data, steps: int, seconds: float) -> tuple[int, float]:
    """Fit one-epoch chunks of ``steps`` batches until ``seconds`` pass (after one warm-up chunk); (batches, time)."""
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    batches, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        batches += steps
    return batches, time.perf_counter() - started


def run_improvd(tunes: int, seconds: float) -> dict:
    from training.dataset import stream_of, training_dataset
    from training.model import build_model

    songs, vocabulary = songs_and_vocabulary(tunes)
    stream = stream_of(songs, vocabulary, SEQUENCE_LENGTH)
    data, _ = training_dataset(stream, SEQUENCE_LENGTH, BATCH, seed=1)
    model = build_model(len(vocabulary), (UNITS,), 0.2, "onehot")
    batches, elapsed = timed_fit(model, data.repeat(), 20, seconds)
    return {"symbols_per_second": batches * BATCH * SEQUENCE_LENGTH / elapsed, "stream_steps": len(stream)}


def run_tutorial(tunes: int, seconds: float) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from training.dataset import stream_of

    songs, vocabulary = songs_and_vocabulary(tunes)
    stream = stream_of(songs, vocabulary, SEQUENCE_LENGTH)
    count = len(stream) - SEQUENCE_LENGTH
    inputs = np.stack([stream[i : i + SEQUENCE_LENGTH] for i in range(count)])
    x = keras.utils.to_categorical(inputs, num_classes=len(vocabulary))  # (windows, 64, vocab) float32
    y = stream[SEQUENCE_LENGTH:]
    model = keras.Sequential(
        [
            keras.Input(shape=(None, len(vocabulary))),
            keras.layers.LSTM(UNITS),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(len(vocabulary), activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(4096).batch(BATCH).repeat()
    batches, elapsed = timed_fit(model, data, 20, seconds)
    return {"symbols_per_second": batches * BATCH / elapsed, "windows_in_memory": count, "array_mb": x.nbytes / 1e6}


def child(setup: str, tunes: int, seconds: float) -> None:
    result = (run_improvd if setup == "improvd" else run_tutorial)(tunes, seconds)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tunes", type=int, default=150, help="Essen tunes (sorted idents) both setups train on")
    parser.add_argument("--seconds", type=float, default=30, help="timed training per setup")
    parser.add_argument("--child", choices=("improvd", "tutorial"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tunes, args.seconds)
        return 0
    results = {}
    for setup in ("improvd", "tutorial"):
        command = [
            sys.executable,
            __file__,
            "--child",
            setup,
            "--tunes",
            str(args.tunes),
            "--seconds",
            str(args.seconds),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[setup] = json.loads(done.stdout.strip().splitlines()[-1])
    ratio = results["improvd"]["symbols_per_second"] / results["tutorial"]["symbols_per_second"]
    report = {
        "tunes": args.tunes,
        "seconds_per_setup": args.seconds,
        "model": {"lstm_units": UNITS, "batch": BATCH, "sequence_length": SEQUENCE_LENGTH, "input": "onehot"},
        **results,
        "throughput_ratio": round(ratio, 2),
        "target_ratio": 30,
        "meets_target": ratio >= 30,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
