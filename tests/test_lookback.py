"""A lookback model (improvd.core.lookback): the training stream's inputs, numpy's runtime against Keras, the warm
start, and the engine seating the runtime on its own bar lines."""

from __future__ import annotations

import itertools

import mido
import numpy as np
import pytest

from improvd.core.encoding import SONG_END, Vocabulary
from improvd.core.engine import Engine, Settings
from improvd.core.lookback import PLACES, Place
from improvd.core.model import load_model
from improvd.core.runtime import LSTMRuntime, softmax

keras = pytest.importorskip("keras")

from training.dataset import bar_positions, lookback_stream  # noqa: E402
from training.export import export_model  # noqa: E402
from training.model import build_model, warm_start  # noqa: E402

pytestmark = pytest.mark.train
VOCABULARY = Vocabulary(["_", "r", "/", *map(str, range(55, 80))])
# a 3/4 song with a one-beat pickup; a 2/4 song that changes to 3/8 at step 16
SONGS = [["60", "_", "_", "_", "62", "64", "_", "r"] * 5, ["67", "_", "65", "64"] * 8]
BARS = [[(0, 8, 12), (4, 0, 12), (16, 0, 12), (28, 0, 12)], [(0, 0, 8), (8, 0, 8), (16, 0, 6), (22, 0, 6)]]
GAP = 4


def test_the_stream_says_what_the_predicted_step_had_one_and_two_bars_back():
    rows = lookback_stream(SONGS, BARS, VOCABULARY, GAP)
    index, none = VOCABULARY.index, len(VOCABULARY)
    first = GAP  # the first song's first step
    assert rows[first - 2].tolist() == [index["/"], none, none, PLACES, PLACES]  # predicts a song end: no bar
    assert rows[first - 1].tolist() == [index["/"], index["/"], index["/"], 8, 3]  # predicts the pickup
    # step 16 starts the third bar: one bar back is step 4, two bars back before the song's start
    assert rows[first + 15].tolist() == [index[SONGS[0][15]], index[SONGS[0][4]], index["/"], 0, 11]
    assert rows[first + 29].tolist()[1:] == [index[SONGS[0][18]], index[SONGS[0][6]], 2, 9]  # step 30
    second = first + len(SONGS[0]) + GAP
    assert rows[second + 21].tolist()[1:] == [index[SONGS[1][16]], index[SONGS[1][10]], 0, 5]  # 3/8 from step 16


def test_bar_positions_follow_the_measures():
    position, bar = bar_positions(BARS[0], 20)
    assert position.tolist()[:6] == [8, 9, 10, 11, 0, 1] and bar.tolist()[:6] == [12] * 6
    assert bar_positions([], 3)[0].tolist() == [-1, -1, -1]


def _random_lookback_model(tmp_path, units=(16, 12)):
    keras.utils.set_random_seed(3)
    model = build_model(len(VOCABULARY), units, 0.2, "lookback")
    for weight in model.weights:  # larger than initial weights, so the gates leave their linear range
        weight.assign(np.random.default_rng(1).normal(0, 0.5, weight.shape).astype("float32"))
    return model, export_model(model, VOCABULARY, tmp_path / "m", 64, save_keras=False)  # a buffer of 64 steps


def _places(rows: np.ndarray) -> list[Place | None]:
    """The place each row's input predicts, as the runtime is seated with it."""
    return [None if r[3] == PLACES else Place(int(r[3]), int(r[3] + r[4] + 1)) for r in rows]


def test_numpy_runtime_gives_keras_probabilities(tmp_path):
    keras_model, directory = _random_lookback_model(tmp_path)
    rows = lookback_stream(SONGS, BARS, VOCABULARY, GAP)
    expected = keras_model.predict(rows[None].astype("int32"), verbose=0)[0]
    model = load_model(directory)
    assert model.input == "lookback"
    runtime = LSTMRuntime(model)
    got = []
    for row, place in zip(rows, _places(rows), strict=True):
        runtime.seat(place)
        got.append(softmax(runtime.step(int(row[0]))))
    assert np.abs(np.stack(got) - expected).max() < 1e-5


def test_seated_once_the_runtime_follows_the_bars_on_its_own(tmp_path):
    _, directory = _random_lookback_model(tmp_path)
    model, song = load_model(directory), [VOCABULARY.index[s] for s in SONGS[0]]
    every, once = LSTMRuntime(model), LSTMRuntime(model)
    positions, _ = bar_positions(BARS[0], len(song))
    once.seat(Place(8, 12))
    once.step(VOCABULARY.index[SONG_END])
    every.seat(Place(8, 12))
    every.step(VOCABULARY.index[SONG_END])
    for k, index in enumerate(song[:-1]):
        every.seat(Place(int(positions[k + 1]), 12))
        assert np.array_equal(every.step(index), once.step(index))


def test_a_twin_goes_on_from_its_runtime_s_state_and_place_and_apart_from_it(tmp_path):
    """``twin`` (style auto's handover and jobs aside): the same state, place in the bar and history, and stepping
    one moves the other not at all."""
    _, directory = _random_lookback_model(tmp_path)
    model, song = load_model(directory), [VOCABULARY.index[s] for s in SONGS[0]]
    runtime, first, second = LSTMRuntime(model), LSTMRuntime(model), LSTMRuntime(model)
    for each in (runtime, first, second):
        each.seat(Place(8, 12))
        for index in song[:20]:
            each.step(index)
    twin = runtime.twin()
    for index in song[20:40]:
        assert np.array_equal(twin.step(index), first.step(index))
    for index in song[20:40]:
        assert np.array_equal(runtime.step(index), second.step(index))
    fresh = runtime.twin()
    fresh.reset()
    assert np.array_equal(fresh.step(song[0]), LSTMRuntime(model).step(song[0]))


def test_a_warm_started_lookback_model_predicts_as_its_one_hot_model(tmp_path):
    keras.utils.set_random_seed(4)
    onehot = build_model(len(VOCABULARY), (12,), 0.2, "onehot")
    lookback = build_model(len(VOCABULARY), (12,), 0.2, "lookback")
    warm_start(lookback, onehot, VOCABULARY.symbols, VOCABULARY.symbols)
    rows = lookback_stream(SONGS, BARS, VOCABULARY, GAP)
    expected = onehot.predict(rows[None, :, 0].astype("int32"), verbose=0)
    assert np.abs(lookback.predict(rows[None].astype("int32"), verbose=0) - expected).max() < 1e-6


class Seats(LSTMRuntime):
    """The runtime, noting each step's symbol and the place it predicts."""

    def __init__(self, model):
        super().__init__(model)
        self.steps: list[tuple[int, Place | None]] = []

    def step(self, index):
        self.steps.append((index, self._place))
        return super().step(index)


@pytest.mark.parametrize(("meter", "bar", "follow"), [("4/4", 16, False), ("3/4", 12, False), ("6/8", 12, True)])
def test_the_engine_seats_the_runtime_on_its_own_bar_lines(tmp_path, meter, bar, follow):
    _, directory = _random_lookback_model(tmp_path)
    runtimes: list[Seats] = []

    def make(model):
        runtimes.append(Seats(model))
        return runtimes[-1]

    settings = Settings(bpm=120, meter=meter, follow_tempo=follow)
    engine = Engine(load_model(directory), settings, seed=1, predictor=make)
    step = engine.step_seconds()
    first = 5  # the call's first grid step
    events = [(k * step, 1, None) for k in range(80)]  # ticks, after the messages of the same time
    for k, pitch in enumerate([60, 62, 64, 65, 67, 65, 64, 62]):
        start = (first + 3 * k) * step
        events += [(start, 0, mido.Message("note_on", note=pitch, velocity=80))]
        events += [(start + 2 * step, 0, mido.Message("note_off", note=pitch))]
    for time, _, message in sorted(events, key=lambda e: e[:2]):
        engine.feed(message, time) if message else engine.tick(time)
    end = VOCABULARY.index[SONG_END]
    calls = [r.steps[k:] for r in runtimes for k, (i, p) in enumerate(r.steps[:-1]) if i == end != r.steps[k + 1][0]]
    assert calls, "no runtime heard a call"
    for heard in calls:  # the call's song end predicts its first step, and the places go on one a step
        again = next((k for k, (i, _) in enumerate(heard[1:], 1) if i == end), len(heard))  # heard again from there
        places = [p for _, p in heard[: min(24, again)]]
        assert places[0] == Place(first % bar, bar) or follow  # a followed call is heard again on the player's grid
        assert all(b == a.following() for a, b in itertools.pairwise(places))
