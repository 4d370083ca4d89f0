"""Split songs by tune and feed them to Keras with tf.data.

Songs are joined into one stream with ``song_gap`` song-end symbols between
them (the tutorial puts a whole sequence length of them there; a bar's worth
tells the model a new song starts without filling long windows with song ends).
Each training epoch cuts the stream into
``sequence_length + 1`` windows starting at a fresh random offset, so the model
sees every song at every phase; ``x = window[:-1]``, ``y = window[1:]``: a
target at every step. Only one int32 stream is held in memory, never one-hot
windows.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np

from improvd.core.encoding import SONG_END, Vocabulary


def split_tunes(idents: list[str], seed: int, validation: float = 0.05, test: float = 0.05) -> dict[str, list[str]]:
    """Deterministic split by tune: {"train": [...], "validation": [...], "test": [...]} of idents."""
    if not 0 <= validation < 1 or not 0 <= test < 1 or validation + test >= 1:
        raise ValueError(f"validation ({validation}) and test ({test}) fractions must be in [0, 1) and sum below 1")
    shuffled = sorted(idents)
    random.Random(seed).shuffle(shuffled)
    n_test = round(len(shuffled) * test)
    n_val = round(len(shuffled) * validation)
    if len(shuffled) >= 3:  # a tiny corpus still gets one tune in each split
        n_test, n_val = max(n_test, 1 if test else 0), max(n_val, 1 if validation else 0)
    return {
        "test": sorted(shuffled[:n_test]),
        "validation": sorted(shuffled[n_test : n_test + n_val]),
        "train": sorted(shuffled[n_test + n_val :]),
    }


def stream_of(songs: list[list[str]], vocabulary: Vocabulary, song_gap: int) -> np.ndarray:
    """One int32 array: ``song_gap`` song ends, then each song followed by as many song ends."""
    if song_gap < 1:
        raise ValueError(f"song_gap must be at least 1 (song ends between songs), got {song_gap}")
    separator = [SONG_END] * song_gap
    symbols = list(separator)
    for song in songs:
        symbols.extend(song)
        symbols.extend(separator)
    return np.asarray(vocabulary.indices(symbols), np.int32)


def windows(stream: np.ndarray, sequence_length: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of shape (count, sequence_length): the stream from ``offset`` cut into non-overlapping windows."""
    count = (len(stream) - offset - 1) // sequence_length
    if count < 1:
        raise ValueError(f"the stream ({len(stream)} steps) is shorter than one window of {sequence_length + 1}")
    end = offset + count * sequence_length
    return stream[offset:end].reshape(count, -1), stream[offset + 1 : end + 1].reshape(count, -1)


def batches_per_epoch(stream: np.ndarray, sequence_length: int, batch_size: int) -> int:
    """Batches every epoch yields (the last window count of any offset, rounded up)."""
    count = (len(stream) - sequence_length - 1) // sequence_length
    return max(1, -(-count // batch_size))


def training_dataset(stream: np.ndarray, sequence_length: int, batch_size: int, seed: int):
    """An endless tf.data.Dataset of (x, y) batches; each pass uses a random offset and window order."""
    import tensorflow as tf

    per_epoch = batches_per_epoch(stream, sequence_length, batch_size)

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(seed)
        while True:
            x, y = windows(stream, sequence_length, int(rng.integers(0, sequence_length)))
            order = rng.permutation(len(x))
            order = np.resize(order, per_epoch * batch_size)  # every epoch has the same number of batches
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                yield x[chosen], y[chosen]

    spec = tf.TensorSpec(shape=(None, sequence_length), dtype=tf.int32)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=(spec, spec))
    return dataset.prefetch(tf.data.AUTOTUNE), per_epoch


def evaluation_dataset(stream: np.ndarray, sequence_length: int, batch_size: int):
    """A finite tf.data.Dataset of (x, y) windows from offset 0, in order (validation loss)."""
    import tensorflow as tf

    x, y = windows(stream, sequence_length, 0)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
