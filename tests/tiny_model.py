"""A tiny model really trained (a few seconds) on real Essen tunes, for tests that need a model directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from improvd.core.encoding import SONG_END, Vocabulary, encode, transpose, transposition_to_c, unacceptable_durations
from improvd.offline.notation import essen_files, key_of, melody_of, tunes_in

TINY_FILE = "kinder0"  # Essen children's songs: short tunes, parse in seconds
SEQUENCE_LENGTH = 32
SONG_GAP = 32  # song ends between songs in its training stream (not the default of cards without one, 16)


def essen_symbols(file_stem: str = TINY_FILE, limit: int = 60) -> list[list[str]]:
    """Encoded, transposed tunes of one Essen file (acceptable durations only)."""
    path = next(p for p in essen_files() if p.stem == file_stem)
    songs: list[list[str]] = []
    for tune in tunes_in(path):
        melody = melody_of(tune.score, tune.ident)
        if unacceptable_durations(melody):
            continue
        songs.append(encode(transpose(melody, transposition_to_c(*key_of(tune.score)))))
        if len(songs) == limit:
            break
    return songs


def train_tiny_model(directory: Path, lstm_units=(24,), input_kind: str = "onehot", epochs: int = 3) -> Path:
    """Fit a tiny LSTM on next-step prediction over a few tunes and export it in improvd's format."""
    import keras

    from training.export import export_model
    from training.model import build_model

    keras.utils.set_random_seed(1)
    songs = essen_symbols()
    stream = [s for song in songs for s in [*song, *[SONG_END] * SONG_GAP]]
    vocabulary = Vocabulary.from_symbols(stream)
    indices = np.array(vocabulary.indices(stream), np.int32)
    count = (len(indices) - 1) // SEQUENCE_LENGTH
    x = indices[: count * SEQUENCE_LENGTH].reshape(count, SEQUENCE_LENGTH)
    y = indices[1 : count * SEQUENCE_LENGTH + 1].reshape(count, SEQUENCE_LENGTH)
    model = build_model(len(vocabulary), lstm_units, dropout=0.1, input_kind=input_kind, learning_rate=1e-2)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    card = {
        "corpus": {"files": [TINY_FILE], "tunes": len(songs)},
        "purpose": "tests",
        "settings": {"song_gap": SONG_GAP},
    }
    return export_model(model, vocabulary, directory, SEQUENCE_LENGTH, card=card, save_keras=False)
