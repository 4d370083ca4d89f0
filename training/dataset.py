"""Split songs by tune and feed them to Keras with tf.data.

Songs are joined into one stream with ``song_gap`` song-end symbols between
them (the tutorial puts a whole sequence length of them there; a bar's worth
tells the model a new song starts without filling long windows with song ends).
Each training epoch cuts the stream into
``sequence_length + 1`` windows starting at a fresh random offset, so the model
sees every song at every phase; ``x = window[:-1]``, ``y = window[1:]``: a
target at every step. Only one int32 stream is held in memory, never one-hot
windows. A lookback model's stream has five columns a step (``lookback_stream``):
the symbol, and the lookback inputs of the step after it (improvd.core.lookback).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np

from improvd.core.encoding import SONG_END, Vocabulary
from improvd.core.lookback import PLACES


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


def lookback_stream(
    songs: list[list[str]], bars: list[list[tuple[int, int, int]]], vocabulary: Vocabulary, song_gap: int
) -> np.ndarray:
    """``stream_of``'s steps as rows of five int32 columns: the symbol, then for the step after it the symbols
    one and two bars back (the song end before the song's start), its position in the bar and the 16ths left in
    it (improvd.core.lookback); a step after which no bar is known (song ends, a song without ``bars``) has
    ``len(vocabulary)`` and ``PLACES`` there (no row of the one-hot)."""
    symbols = stream_of(songs, vocabulary, song_gap)
    count, end = len(symbols), vocabulary.index[SONG_END]
    position, bar, start = np.full(count, -1), np.zeros(count, np.int64), np.zeros(count, np.int64)
    cursor = song_gap
    for song, places in zip(songs, bars, strict=True):
        steps = slice(cursor, cursor + len(song))
        position[steps], bar[steps] = bar_positions(places, len(song))
        start[steps] = cursor
        cursor += len(song) + song_gap
    rows = np.empty((count, 5), np.int32)
    rows[:, 0] = symbols
    after = np.arange(1, count + 1).clip(max=count - 1)  # the step each input predicts (the last: none)
    known = (position[after] >= 0) & (np.arange(count) < count - 1)
    for column, bars_back in ((1, 1), (2, 2)):
        back = after - bars_back * bar[after]
        inside = back >= start[after]
        rows[:, column] = np.where(known, np.where(inside, symbols[back.clip(min=0)], end), len(vocabulary))
    rows[:, 3] = np.where(known, position[after].clip(max=PLACES - 1), PLACES)
    rows[:, 4] = np.where(known, (bar[after] - 1 - position[after]).clip(max=PLACES - 1), PLACES)
    return rows


def bar_positions(places: list[tuple[int, int, int]], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(position, bar length) of each of a song's ``steps`` from its measures' (first step, position, 16ths);
    -1 and 0 before the first measure or for a song without measures."""
    position, bar = np.full(steps, -1), np.zeros(steps, np.int64)
    bounds = [start for start, _, _ in places[1:]] + [steps] if places else []
    for (start, first, length), stop in zip(places, bounds, strict=True):
        span = np.arange(max(start, 0), min(max(stop, start), steps))
        position[span], bar[span] = (first + span - start) % length, length
    return position, bar


def windows(stream: np.ndarray, sequence_length: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of shape (count, sequence_length) (x: (count, sequence_length, 5) for a lookback stream): the stream
    from ``offset`` cut into non-overlapping windows; y is the symbol of the step after each."""
    count = (len(stream) - offset - 1) // sequence_length
    if count < 1:
        raise ValueError(f"the stream ({len(stream)} steps) is shorter than one window of {sequence_length + 1}")
    end = offset + count * sequence_length
    symbols = stream if stream.ndim == 1 else stream[:, 0]
    x = stream[offset:end].reshape(count, sequence_length, *stream.shape[1:])
    return x, symbols[offset + 1 : end + 1].reshape(count, -1)


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
    x_spec = tf.TensorSpec(shape=(None, sequence_length, *stream.shape[1:]), dtype=tf.int32)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=(x_spec, spec))
    return dataset.prefetch(tf.data.AUTOTUNE), per_epoch


def evaluation_dataset(stream: np.ndarray, sequence_length: int, batch_size: int):
    """A finite tf.data.Dataset of (x, y) windows from offset 0, in order (validation loss)."""
    import tensorflow as tf

    x, y = windows(stream, sequence_length, 0)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
