"""A trained model directory as the daemon sees it: ``model.json`` and ``weights.npz``.

``training/export.py`` writes these files; this module reads and checks them,
without tensorflow and without pickle.

weights.npz holds float32 arrays in Keras' own layouts (gate order i, f, c, o):

* ``embedding``                 (vocab, embedding_dim)      only when input is "embedding"
* ``lstm_<k>_kernel``           (input_dim, 4 * units_k)    input_dim = vocab for one-hot input,
                                                            improvd.core.lookback.input_width(vocab) for lookback
* ``lstm_<k>_recurrent_kernel`` (units_k, 4 * units_k)
* ``lstm_<k>_bias``             (4 * units_k,)
* ``dense_kernel``              (units_last, vocab)
* ``dense_bias``                (vocab,)
"""

from __future__ import annotations

import io
import json
import math
import stat
import sys
import zipfile
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from improvd.core.echo import ODDS
from improvd.core.encoding import SPECIAL_SYMBOLS, STEP_QUARTER_LENGTH, EncodingError, Vocabulary, tonic_pitch_class
from improvd.core.keys import WHITE_KEYS
from improvd.core.lookback import input_width

MODEL_FORMAT = "improvd-model"
MODEL_FORMAT_VERSION = 1
DEFAULT_SONG_GAP = 16  # training's default, for cards without settings.song_gap
INPUTS = ("onehot", "embedding", "lookback")  # what the first layer takes: the symbol, or also its place in the bar
MODEL_JSON = "model.json"
WEIGHTS_NPZ = "weights.npz"
MINOR_TONIC_KEY = "minor_tonic"  # the card's key of the tonic its minor tunes were trained in (A without it)
ECHO_ODDS_KEY = "echo_odds"  # the card's key of its echo's odds (improvd.core.echo.ODDS without it)
MAX_ECHO_ODDS = 1000.0  # the most a card may ask for: at 1000 the answer takes up the call's motion nearly always
MAX_CARD_BYTES = 1 << 20  # model.json
MAX_WEIGHTS_BYTES = 64 << 20  # weights.npz on disk, and its arrays as their headers declare them (float32 or not)
MAX_ARRAYS = 64  # arrays in weights.npz
MAX_SEQUENCE_LENGTH = 256  # the call's steps the engine keeps and feeds again at a key change, on the timing
# thread (the shipped model: 128; a default answer takes up to 208 steps); 10**30 raised OverflowError there
MAX_NPY_HEADER = 4096  # bytes of one array's .npy header (numpy writes 118 or so)
MAX_STEP_MACS = 1_000_000  # multiply-adds of one LSTM step (step_macs): the shipped model takes 607,104
MAX_SONG_GAP = 64  # song ends primed before each call (training's default is 16): bounded work at a model switch


def _default_model_dir() -> Path:
    """The shipped model: models/essen in a source checkout, else where a wheel installed it."""
    checkout = Path(__file__).resolve().parents[2] / "models" / "essen"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "improvd" / "models" / "essen"


DEFAULT_MODEL_DIR = _default_model_dir()


class ModelError(Exception):
    """A model directory that is missing, corrupt or inconsistent; names the file."""


@dataclass
class Model:
    """The settings and float32 weights of one trained model."""

    path: Path
    vocabulary: Vocabulary
    sequence_length: int
    input: str  # "onehot", "embedding" or "lookback" (improvd.core.lookback)
    lstm_units: list[int]
    weights: dict[str, np.ndarray]
    card: dict[str, Any] = field(default_factory=dict)
    song_gap: int = DEFAULT_SONG_GAP  # song ends between songs in training: a new song starts after as many

    @property
    def name(self) -> str:
        return self.card.get("name") or self.path.name

    @property
    def echo_odds(self) -> float:
        """How far the call's echo raises the odds of the call's symbol in this model's answers (improvd.core.echo):
        its card's ``echo_odds``, chosen on its validation split, as its collection takes up a call (British dance
        tunes repeat bars of it more than Essen's songs do); improvd.core.echo.ODDS without one."""
        return echo_odds(self.card, self.path / MODEL_JSON)


def load_model(directory: str | Path) -> Model:
    """Load and check a model directory; every problem raises ModelError naming the file."""
    path = Path(directory)
    if not path.is_dir():
        raise ModelError(f"{path}: not a model directory (it does not exist or is not a folder)")
    _check_file(path / MODEL_JSON, MAX_CARD_BYTES)
    _check_file(path / WEIGHTS_NPZ, MAX_WEIGHTS_BYTES)
    card = _read_card(path / MODEL_JSON)
    vocabulary, units = card["_vocabulary"], card["lstm_units"]
    weights = _read_weights(path / WEIGHTS_NPZ, len(vocabulary), card["input"], units)
    model = Model(
        path=path,
        vocabulary=vocabulary,
        sequence_length=card["sequence_length"],
        input=card["input"],
        lstm_units=units,
        weights=weights,
        card={k: v for k, v in card.items() if not k.startswith("_")},
        song_gap=card["_song_gap"],
    )
    return model


def _check_file(file: Path, limit: int) -> None:
    """Refuse a missing file, one that is not a regular file (a FIFO would block the read for ever), or one
    larger than ``limit`` bytes."""
    try:
        status = file.stat()
    except FileNotFoundError:
        raise ModelError(f"{file}: missing") from None
    except OSError as error:
        raise ModelError(f"{file}: cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(status.st_mode):
        raise ModelError(f"{file}: not a regular file")
    if status.st_size > limit:
        raise ModelError(f"{file}: {status.st_size} bytes, over the limit of {limit}")


def _read_card(file: Path) -> dict[str, Any]:
    try:
        card = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{file}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{file}: not readable JSON ({error})") from None
    except ValueError:  # Python's limit on the digits of an integer it reads (sys.get_int_max_str_digits)
        raise ModelError(
            f"{file}: not readable JSON (a number of over {sys.get_int_max_str_digits()} digits)"
        ) from None
    except RecursionError:
        raise ModelError(f"{file}: not readable JSON (nested too deeply)") from None
    if not isinstance(card, dict) or card.get("format") != MODEL_FORMAT:
        raise ModelError(f'{file}: not an improvd model card ("format" must be "{MODEL_FORMAT}")')
    if card.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelError(
            f"{file}: format_version {shown(card.get('format_version'))}, this improvd reads {MODEL_FORMAT_VERSION}"
        )
    if card.get("step_quarter_length") != STEP_QUARTER_LENGTH:
        raise ModelError(
            f"{file}: step_quarter_length {shown(card.get('step_quarter_length'))}, expected {STEP_QUARTER_LENGTH}"
        )
    settings = card.get("settings", {})
    card["_song_gap"] = settings.get("song_gap", DEFAULT_SONG_GAP) if isinstance(settings, dict) else None
    if not _whole(card["_song_gap"]) or not 1 <= card["_song_gap"] <= MAX_SONG_GAP:
        raise ModelError(
            f"{file}: settings.song_gap must be a whole number from 1 to {MAX_SONG_GAP}, got {shown(card['_song_gap'])}"
        )
    units = card.get("lstm_units")
    if not isinstance(units, list) or not units or not all(_whole(u) and u > 0 for u in units):
        raise ModelError(f"{file}: lstm_units must be a non-empty list of positive whole numbers, got {shown(units)}")
    if card.get("input") not in INPUTS:
        raise ModelError(f"{file}: input must be one of {', '.join(INPUTS)}, got {shown(card.get('input'))}")
    if not _whole(card.get("sequence_length")) or card["sequence_length"] < 1:
        raise ModelError(f"{file}: sequence_length must be a positive whole number")
    try:
        card["_vocabulary"] = Vocabulary(card.get("vocabulary") or [])
    except (EncodingError, TypeError, AttributeError) as error:
        raise ModelError(f"{file}: bad vocabulary ({error})") from None
    if len(card["_vocabulary"].pitches) == 0:
        raise ModelError(f"{file}: vocabulary has no pitches")
    lacking = [s for s in SPECIAL_SYMBOLS if s not in card["_vocabulary"]]
    if lacking:
        raise ModelError(f"{file}: vocabulary lacks the special symbol(s) {lacking}")
    if not any(p % 12 in WHITE_KEYS for p in card["_vocabulary"].pitches):
        raise ModelError(f"{file}: vocabulary has no pitch on a white key (answers keep to the white keys)")
    too_big = size_problem(len(card["_vocabulary"]), units, card["sequence_length"])
    if too_big:
        raise ModelError(f"{file}: {too_big}")
    minor_tonic(card, file)
    echo_odds(card, file)
    return card


def shown(value: Any) -> str:
    """``repr(value)`` cut to 40 characters, for a crafted card's value quoted in a one-line error."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int of over 4,300 digits; nesting deeper than repr goes
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else f"{text[:39]}… ({len(text)} characters)"


def echo_odds(card: dict[str, Any], file: Path) -> float:
    """The card's ``echo_odds`` (improvd.core.echo.ODDS without one); ModelError naming ``file`` for one that is no
    number from 0 to MAX_ECHO_ODDS."""
    odds = card.get(ECHO_ODDS_KEY, ODDS)
    if isinstance(odds, bool) or not isinstance(odds, (int, float)) or not 0 <= odds <= MAX_ECHO_ODDS:
        raise ModelError(f"{file}: {ECHO_ODDS_KEY} must be a number from 0 to {MAX_ECHO_ODDS:g}, got {shown(odds)}")
    return float(odds)


def minor_tonic(card: dict[str, Any], file: Path) -> int:
    """The pitch class of the tonic the card's minor tunes were trained on (its ``minor_tonic``; A without one);
    ModelError naming ``file`` for one that names no tonic."""
    tonic = card.get(MINOR_TONIC_KEY, "A")
    try:
        pitch_class = tonic_pitch_class(tonic) if isinstance(tonic, str) else None
    except EncodingError:
        pitch_class = None
    if pitch_class is None:
        raise ModelError(f"{file}: {MINOR_TONIC_KEY} must name a tonic (C, E-, F#), got {shown(tonic)}")
    return pitch_class


def size_problem(vocab: int, lstm_units: list[int], sequence_length: int) -> str | None:
    """Why the daemon cannot play a model of these sizes in time, or None (improvd-train asks before it fits)."""
    if sequence_length > MAX_SEQUENCE_LENGTH:
        return f"sequence_length {sequence_length} is over the limit of {MAX_SEQUENCE_LENGTH}"
    macs = step_macs(vocab, lstm_units)
    if macs > MAX_STEP_MACS:
        return (
            f"lstm_units {lstm_units} take {macs} multiply-adds a step, over the limit of {MAX_STEP_MACS} "
            "(too slow to answer in time at the highest tempo)"
        )
    return None


def step_macs(vocab: int, lstm_units: list[int]) -> int:
    """Multiply-adds of one LSTM step (improvd.core.runtime): each layer's recurrent product, the input product of
    every layer but the first (whose input is a row of a table), and the dense layer."""
    recurrent = sum(4 * u * u for u in lstm_units)
    inputs = sum(4 * i * u for i, u in pairwise(lstm_units))
    return recurrent + inputs + lstm_units[-1] * vocab


def _whole(value: object) -> bool:
    """A JSON whole number (``true`` is not one, though Python's bool is an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


NPY_MAGIC = b"\x93NUMPY"
NPY_LENGTH_BYTES = {(1, 0): 2, (2, 0): 4}  # .npy versions read, and the bytes of their header-length field
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # np.savez and np.savez_compressed
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


@dataclass(frozen=True)
class _Declared:
    """What one .npy member of weights.npz declares in its header, read before any of its data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    header_bytes: int  # magic, length field and header
    stored_bytes: int  # the member's size once decompressed, as the zip declares it

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _read_weights(file: Path, vocab: int, input_kind: str, lstm_units: list[int]) -> dict[str, np.ndarray]:
    """The arrays of weights.npz: their headers are read and checked against the card (names, shapes, sizes)
    before any of their data is decompressed."""
    try:
        declared = _declared_arrays(file)
        _check_declared(file, declared, vocab, input_kind, lstm_units)
        with np.load(file, allow_pickle=False) as archive:
            weights = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise ModelError(f"{file}: missing") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ModelError(f"{file}: not a readable numpy .npz archive ({error})") from None
    for name, array in weights.items():
        if not np.all(np.isfinite(array)):
            raise ModelError(f"{file}: array {name} holds NaN or infinite values")
    return {name: array.astype(np.float32) for name, array in weights.items()}


def _declared_arrays(file: Path) -> dict[str, _Declared]:
    """Each member's .npy header, by array name; a header longer than MAX_NPY_HEADER is refused unread (numpy
    reads a header whole before it checks its length: a deflated gigabyte of header took that much memory)."""
    found: dict[str, _Declared] = {}
    with zipfile.ZipFile(file) as archive:
        members = archive.infolist()
        if len(members) > MAX_ARRAYS:
            raise ModelError(f"{file}: {len(members)} arrays, over the limit of {MAX_ARRAYS}")
        for member in members:
            name = member.filename.removesuffix(".npy")
            if name == member.filename or name in found:
                raise ModelError(f"{file}: member {member.filename!r} is not an array of its own (NAME.npy)")
            if member.compress_type not in ZIP_METHODS or member.flag_bits & 1:  # zipfile raises RuntimeErrors
                raise ModelError(f"{file}: array {name} is encrypted or compressed other than as numpy does")
            with archive.open(member) as stream:
                magic = stream.read(len(NPY_MAGIC) + 2)
                version = tuple(magic[len(NPY_MAGIC) :])
                if magic[: len(NPY_MAGIC)] != NPY_MAGIC or version not in NPY_LENGTH_BYTES:
                    raise ModelError(f"{file}: array {name} is not a .npy array of format 1.0 or 2.0")
                length_field = stream.read(NPY_LENGTH_BYTES[version])
                length = int.from_bytes(length_field, "little")
                if length > MAX_NPY_HEADER:
                    raise ModelError(
                        f"{file}: array {name} has a header of {length} bytes, over the limit of {MAX_NPY_HEADER}"
                    )
                header = stream.read(length)
            shape, _, dtype = NPY_HEADERS[version](io.BytesIO(length_field + header))
            found[name] = _Declared(shape, dtype, len(magic) + len(length_field) + length, member.file_size)
    return found


def _check_declared(file: Path, declared: dict[str, _Declared], vocab: int, input_kind: str, units: list[int]) -> None:
    """Refuse arrays whose headers declare more than MAX_WEIGHTS_BYTES, other types than floats, other names or
    shapes than the card needs, or more stored data than their header declares."""
    total = sum(d.data_bytes for d in declared.values() if not d.dtype.hasobject)
    if total > MAX_WEIGHTS_BYTES:
        raise ModelError(f"{file}: its arrays declare {total} bytes, over the limit of {MAX_WEIGHTS_BYTES}")
    for name, array in declared.items():
        if array.dtype.kind != "f":
            raise ModelError(f"{file}: array {name} has dtype {array.dtype}, expected floats")
    embedding = declared.get("embedding")
    embedding_dim = embedding.shape[1] if embedding is not None and len(embedding.shape) == 2 else None
    expected = expected_shapes(vocab, input_kind, units, embedding_dim)
    missing = sorted(set(expected) - set(declared))
    extra = sorted(set(declared) - set(expected))
    if missing or extra:
        raise ModelError(f"{file}: arrays do not match {MODEL_JSON} (missing {missing}, unexpected {extra})")
    for name, shape in expected.items():
        if declared[name].shape != shape:
            raise ModelError(
                f"{file}: {name} has shape {declared[name].shape}, but {MODEL_JSON} "
                f"(vocabulary of {vocab}, lstm_units {units}) needs {shape}"
            )
        if declared[name].stored_bytes != declared[name].header_bytes + declared[name].data_bytes:
            raise ModelError(
                f"{file}: array {name} stores {declared[name].stored_bytes} bytes, but its header declares "
                f"{declared[name].header_bytes + declared[name].data_bytes}"
            )


def expected_shapes(vocab: int, input_kind: str, lstm_units: list[int], embedding_dim: int | None) -> dict[str, tuple]:
    """The weight names and shapes that a model of these sizes must have."""
    shapes: dict[str, tuple] = {}
    input_dim = input_width(vocab) if input_kind == "lookback" else vocab
    if input_kind == "embedding":
        shapes["embedding"] = (vocab, embedding_dim)
        input_dim = embedding_dim
    for k, units in enumerate(lstm_units):
        shapes[f"lstm_{k}_kernel"] = (input_dim, 4 * units)
        shapes[f"lstm_{k}_recurrent_kernel"] = (units, 4 * units)
        shapes[f"lstm_{k}_bias"] = (4 * units,)
        input_dim = units
    shapes["dense_kernel"] = (input_dim, vocab)
    shapes["dense_bias"] = (vocab,)
    return shapes
