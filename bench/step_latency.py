"""Per-step latency of three ways to generate the next symbol, on the same weights, in one run.

(a) tutorial_window: the tutorial's way, Keras ``model.predict`` over the whole 64-step one-hot window;
(b) keras_stateful: a stateful Keras LSTM called on one step;
(c) improvd: improvd's numpy runtime step, song cache and sampling;
plus the engine's ticks as the daemon's timing thread runs them, with every shipped model loaded and primed:
listening_tick, a tick during a call (the seed buffer, one LSTM step, the song cache); phrase_end, the hold at
which the engine answers (key estimate, the first slice of the answer: the engine woken at the bar line's grace
between ticks, as the daemon's loop wakes it, or else a tick); longest_hold, the longest hold from the
call's first silent step to the answer's end (the key change heard again, the answer's slices, the cadence's
redraws); answer_work, all those ticks together (what drawing the answer costs in all).
follow_inline and follow_aside: with ``clock = "follow"``, the longest tick from a followed call's first silent step
to its phrase end (the tempo fit of 256 onsets, the call replayed on the player's grid, an LSTM hearing it again),
done at the phrase end (inline: as before the daemon's thread for it) and done aside by that thread
(improvd.daemon.aside, as the daemon runs it), ticks paced in real time through the silence as the daemon's are;
follow_respond: the same with ``respond_now`` at the call's first silent step (a phrase end no work was handed aside
for: it hands it aside then and waits FOLLOW_WAIT 16ths for it); follow_wait_note and follow_wait_note_last: a note
played in the wait's first or last 16th; follow_turns_inline, follow_turns and follow_turns_last: ``turns`` of 8 bars,
the call played up to 2 16ths before the turn's phrase end, the work done there or aside (and a note in the last
16th before it). Each ``_vs_inline_p50`` is a p50 over its inline way's.
improvd_full_memory: (c) with the session memory full (64 calls of one riff played over and over, the
worst case: every step finds the most matches it follows).
The same ticks with style auto over every shipped model (improvd.core.styles: each candidate hears the call too,
and at the phrase end the best takes over): listening_tick_auto, phrase_end_auto, longest_hold_auto,
answer_work_auto; style_choice, phrase_end_auto less phrase_end on the same call (what choosing and handing over
adds to the phrase-end tick: on a loaded machine the difference of two noisy figures), and style_choose,
``Styles.choose`` alone after a call of 64 steps and its silence (scoring every candidate, the handed-over state).
The same with the daemon's aside thread hearing for the candidates (as ``improvd run`` does): the ``_auto_aside``
figures, each tick waiting for that thread as a 16th's time would; and the model alone with that thread taking its
spare LSTM's steps (a call heard again in a moved key): the ``_aside`` figures. ``--transpositions``:
listening_tick_auto, listening_tick_auto_aside and style_choose alone, with each model heard in one transposition
and as its card has it (essen's ``minor_tonic`` C: twice), in turn, and the ratios.

Prints one JSON object (with --json) or a table. Not a test: these machines are shared, so compare the ratios.
Uses models/essen when it exists, else a default-size model (one LSTM of 256 units) with random weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the daemon runs (improvd/cli.py)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras
import mido
import numpy as np

from improvd.core.encoding import SONG_END, Vocabulary, is_pitch
from improvd.core.engine import Engine, Settings
from improvd.core.follow import FOLLOW_LEAD
from improvd.core.lookback import Place
from improvd.core.model import DEFAULT_MODEL_DIR, MINOR_TONIC_KEY, load_model
from improvd.core.recall import CALL_STEPS, SessionMemory
from improvd.core.runtime import LSTMRuntime, softmax
from improvd.core.sampler import Sampler
from improvd.core.songcache import SongCache
from improvd.core.styles import Styles, models_under
from improvd.daemon.aside import Aside
from improvd.daemon.timing import SWITCH_INTERVAL
from training.export import export_model
from training.model import build_model

WINDOW = 64
ASIDE_PAUSE = 0.0005  # seconds between looks at whether the aside thread has heard what a tick handed it
CLOCK = [time.perf_counter]  # or time.thread_time: the CPU the measured thread used, on a machine others load


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4)}


def timed(function, repeats: int) -> list[float]:
    """Seconds per call, with the garbage collector held off as the daemon's timing thread would want."""
    samples = []
    gc.disable()
    try:
        for _ in range(repeats):
            start = CLOCK[0]()
            function()
            samples.append(CLOCK[0]() - start)
    finally:
        gc.enable()
    return samples


def model_dir(workdir: Path) -> Path:
    if (DEFAULT_MODEL_DIR / "weights.npz").exists():
        return DEFAULT_MODEL_DIR
    vocabulary = Vocabulary(["_", "r", "/", *[str(p) for p in range(55, 91)]])
    return export_model(build_model(len(vocabulary)), vocabulary, workdir / "bench", WINDOW, save_keras=False)


def keras_lstm(units: int, vocab: int, weights: dict, **input_options) -> keras.Model:
    """A one-hot-input Keras LSTM stack with improvd's exported weights (first layer only stacks are enough here)."""
    inputs = keras.Input(**input_options)
    x = inputs
    last = len([k for k in weights if k.endswith("_recurrent_kernel")]) - 1
    for k in range(last + 1):
        stateful = input_options.get("batch_shape") is not None
        layer = keras.layers.LSTM(
            units[k], return_sequences=k < last, stateful=stateful and input_options["batch_shape"][1] == 1
        )
        x = layer(x)
        kernel = weights[f"lstm_{k}_kernel"]
        if k == 0 and "embedding" in weights:
            kernel = weights["embedding"] @ kernel
        layer.set_weights([kernel, weights[f"lstm_{k}_recurrent_kernel"], weights[f"lstm_{k}_bias"]])
    dense = keras.layers.Dense(vocab, activation="softmax")
    outputs = dense(x)
    dense.set_weights([weights["dense_kernel"], weights["dense_bias"]])
    return keras.Model(inputs, outputs)


def bench(repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        model = load_model(model_dir(Path(workdir)))
    vocab = len(model.vocabulary)
    rng = np.random.default_rng(0)
    window = np.eye(vocab, dtype=np.float32)[rng.integers(0, vocab, WINDOW)][None]

    # improvd first, before Keras starts its thread pools on this shared machine
    runtime, sampler = LSTMRuntime(model), Sampler(0)
    is_onset = np.array([is_pitch(s) for s in model.vocabulary.symbols])
    cache = SongCache(model.vocabulary.index[SONG_END], is_onset)
    state = {"index": 0, "count": True, "cache": cache}  # the warm-up fills the song cache, as a call would

    def improvd_step() -> None:
        """One answer step as the engine takes it: LSTM step, song cache, sampling."""
        logits = runtime.step(state["index"])
        state["cache"].add(state["index"], count=state["count"])
        state["index"] = sampler.sample(state["cache"].mix(softmax(logits)), 1.0)

    timed(improvd_step, 200)
    state["count"] = False
    improvd_times = timed(improvd_step, repeats * 50)

    memory = SessionMemory(64)
    riff = [str(s) for s in rng.integers(0, vocab, 16)]  # symbols as the vocabulary's indices
    for _ in range(64):
        memory.remember(riff * (CALL_STEPS // len(riff)), 0, 0, 16)
    memory.attune(0, lambda symbol, _shift: int(symbol))
    state["cache"] = SongCache(model.vocabulary.index[SONG_END], is_onset, memory)
    for symbol in riff:
        state["cache"].add(int(symbol))
    state["index"] = int(riff[0])
    memory_times = timed(improvd_step, repeats * 50)

    primed = models_under(DEFAULT_MODEL_DIR.parent) if len(shipped_models()) > 1 else {"bench": model}
    phrase = phrase_end_work(model, repeats)
    followed = follow_figures(model, max(3, repeats // 20))
    auto = phrase_end_work(model, repeats, Styles(primed))
    choice = [a - b for a, b in zip(auto["phrase_end"], phrase["phrase_end"], strict=True)]
    aside = phrase_end_work(model, repeats, Styles(primed), Aside())
    alone_aside = phrase_end_work(model, repeats, None, Aside())

    tutorial = keras_lstm(model.lstm_units, vocab, model.weights, shape=(WINDOW, vocab))
    tutorial.predict(window, verbose=0)
    tutorial_times = timed(lambda: tutorial.predict(window, verbose=0), repeats)

    stateful = keras_lstm(model.lstm_units, vocab, model.weights, batch_shape=(1, 1, vocab))
    one_step = window[:, :1]
    stateful(one_step, training=False)
    stateful_times = timed(lambda: stateful(one_step, training=False), repeats * 5)

    result = {
        "model": str(model.path),
        "lstm_units": model.lstm_units,
        "vocabulary": vocab,
        "tutorial_window": percentiles(tutorial_times),
        "keras_stateful": percentiles(stateful_times),
        "improvd": percentiles(improvd_times),
        "improvd_full_memory": percentiles(memory_times),
        "models_primed": sorted(primed),
        **{name: percentiles(samples) for name, samples in phrase.items()},
        **followed,
        **{f"{name}_auto": percentiles(samples) for name, samples in auto.items()},
        **{f"{name}_auto_aside": percentiles(samples) for name, samples in aside.items()},
        **{f"{name}_aside": percentiles(samples) for name, samples in alone_aside.items()},
        "style_choice": percentiles(choice),
        "style_choose": percentiles(choose_work(Styles(primed), repeats)),
    }
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    result["speedup_p50_vs_tutorial"] = round(result["tutorial_window"]["p50_ms"] / result["improvd"]["p50_ms"], 1)
    result["speedup_p50_vs_keras_stateful"] = round(result["keras_stateful"]["p50_ms"] / result["improvd"]["p50_ms"], 1)
    return result


def transposition_figures(repeats: int) -> dict:
    """Style auto's figures with every shipped model as its card has it (``two``: a model whose ``minor_tonic`` is
    not A heard in two transpositions) and with each heard in one (the card without it: ``one``), in turn (one, two,
    two, one), and each p50 and p99 of ``two`` over ``one``'s (both runs of each pooled)."""
    cards = models_under(DEFAULT_MODEL_DIR.parent)
    ways = {
        "two": cards,
        "one": {
            name: dataclasses.replace(m, card={k: v for k, v in m.card.items() if k != MINOR_TONIC_KEY})
            for name, m in cards.items()
        },
    }
    samples: dict[str, dict[str, list[float]]] = {way: {} for way in ways}
    for way in ("one", "two", "two", "one"):
        primed = ways[way]
        timed_ticks = {
            "listening_tick_auto": phrase_end_work(cards["essen"], repeats, Styles(primed))["listening_tick"],
            "listening_tick_auto_aside": phrase_end_work(cards["essen"], repeats, Styles(primed), Aside())[
                "listening_tick"
            ],
            "style_choose": choose_work(Styles(primed), repeats),
        }
        for name, seconds in timed_ticks.items():
            samples[way].setdefault(name, []).extend(seconds)
    result: dict = {"models_primed": sorted(cards)}
    for name in samples["one"]:
        one, two = percentiles(samples["one"][name]), percentiles(samples["two"][name])
        ratios = {f"{p}_ratio": round(two[f"{p}_ms"] / one[f"{p}_ms"], 3) for p in ("p50", "p99")}
        result[name] = {"one_transposition": one, "two": two, **ratios}
    return result


def shipped_models() -> list[Path]:
    """Every model folder shipped beside the default one."""
    return sorted(path.parent for path in DEFAULT_MODEL_DIR.parent.glob("*/weights.npz"))


def choose_work(styles: Styles, repeats: int) -> list[float]:
    """``styles.choose()`` after hearing a call of 64 steps (a note every 8th) and 8 silent steps, caught up."""
    rng = np.random.default_rng(2)
    samples = []
    for _ in range(repeats * 5):
        notes = [str(int(rng.integers(60, 80))) if k % 2 == 0 else "_" for k in range(WINDOW)]
        styles.restart(0, notes + ["r"] + ["_"] * 7, Place(0, 16))
        styles.advance(1 << 30)
        start = CLOCK[0]()
        styles.choose()
        samples.append(CLOCK[0]() - start)
    return samples


def woken_and_ticked(engine: Engine, time: float) -> list[tuple[float, list[str]]]:
    """The timing thread's holds up to the tick at ``time``, as the daemon's loop makes them: the engine woken at
    its deadline between ticks if one falls before ``time`` (the bar line's grace, where a phrase end answers), then
    the tick; each (seconds held, names of the events it made)."""
    holds = []
    deadline = engine.next_deadline()
    if deadline is not None and deadline <= time:
        start = CLOCK[0]()
        engine.wake(deadline)
        holds.append((CLOCK[0]() - start, [event.name for event in engine.drain_events()]))
    start = CLOCK[0]()
    engine.tick(time)
    holds.append((CLOCK[0]() - start, [event.name for event in engine.drain_events()]))
    return holds


def phrase_end_work(
    model, repeats: int, styles: Styles | None = None, aside: Aside | None = None
) -> dict[str, list[float]]:
    """Time the engine's ticks through a call of 64 steps in a random key (so the key often moves) and its answer
    of 32 steps: each tick of the call, the phrase-end hold, the longest hold from the call's first silent step to
    the answer's end, and the sum of those holds (``woken_and_ticked``: a wake between ticks is a hold of its own);
    with ``styles``, answering with style auto. The same calls, the same seeds, with or without. With ``aside`` (the daemon's thread for work off the timing thread, which hears
    for the candidates and the spare LSTM there) the next tick waits until that thread has heard what a tick handed
    it, or a 16th has passed, with the daemon's switch interval."""
    samples: dict[str, list[float]] = {"listening_tick": [], "phrase_end": [], "longest_hold": [], "answer_work": []}
    rng = np.random.default_rng(1)
    switch = sys.getswitchinterval()
    if aside is not None:
        sys.setswitchinterval(SWITCH_INTERVAL)
    for _ in range(repeats):
        engine = Engine(model, Settings(bpm=120, response_steps=32), seed=int(rng.integers(1 << 30)), aside=aside)
        engine.set_styles(styles)
        step = engine.step_seconds()
        engine.start(0.0)
        root = int(rng.integers(55, 67))
        holds: list[float] = []
        gc.disable()
        for k in range(WINDOW + 64):
            if k < WINDOW and k % 2 == 0:
                pitch = root + int(rng.choice([0, 2, 4, 5, 7, 9, 11, 12]))
                engine.feed(mido.Message("note_on", note=pitch, velocity=80), k * step)
                engine.feed(mido.Message("note_off", note=pitch), (k + 1.9) * step)
            engine.pop_due((k + 1) * step)
            names = []
            for seconds, heard in woken_and_ticked(engine, (k + 1) * step):
                names += heard
                (samples["listening_tick"] if k < WINDOW - 1 else holds).append(seconds)
                if "phrase_end" in heard:
                    samples["phrase_end"].append(seconds)
            if "response_end" in names:
                break
            if aside is not None:  # the aside thread has a 16th (not timed) to hear what the tick handed it
                waited = time.perf_counter() + step
                while engine.busy_aside and time.perf_counter() < waited:
                    time.sleep(ASIDE_PAUSE)
        gc.enable()
        samples["longest_hold"].append(max(holds))
        samples["answer_work"].append(sum(holds))
    sys.setswitchinterval(switch)
    return samples


FOLLOW_WAYS = {  # way: (aside or not, settings' changes, what the player does at the call's first silent 16th)
    "inline": (False, {}, None),
    "aside": (True, {}, None),
    "respond": (True, {}, "respond_now"),
    "wait_note": (True, {}, "respond_now, a note in the wait's first 16th"),
    "wait_note_last": (True, {}, "respond_now, a note in the wait's last 16th"),
    "turns_inline": (False, {"turns": 8}, None),
    "turns": (True, {"turns": 8}, None),
    "turns_last": (True, {"turns": 8}, "a note in the turn's last 16th"),
}


def follow_figures(model, repeats: int) -> dict:
    """follow_<way> for each of FOLLOW_WAYS (``follow_phrase_end``), and the p50 of each as a ratio of its inline
    way's (the phrase end doing the work itself, as every way did before the work went aside)."""
    figures = {}
    for way in FOLLOW_WAYS:
        holds = follow_phrase_end(model, way, repeats)
        figures[f"follow_{way}"] = {**percentiles(holds), "max_ms": round(max(holds) * 1000, 4)}
    for way in FOLLOW_WAYS:
        if not way.endswith("inline"):
            inline = "turns_inline" if way.startswith("turns") else "inline"
            ratio = figures[f"follow_{way}"]["p50_ms"] / figures[f"follow_{inline}"]["p50_ms"]
            figures[f"follow_{way}_vs_inline_p50"] = round(ratio, 3)
    return figures


FOLLOW_ONSETS = 256  # the call's onsets the tempo fit hears at most (tempo.MAX_ONSETS)


def follow_phrase_end(model, way: str, repeats: int) -> list[float]:
    """The longest tick from a followed call's first silent step to its phrase end, ``way`` one of FOLLOW_WAYS: "inline" (the
    follow work done at the phrase end) or "aside" (done by the daemon's thread for it while the silence passes, the
    ticks after the call's last onset paced in real time with the daemon's switch interval); "respond" (as "aside",
    ``respond_now`` at the first silent 16th: a phrase end no work was handed aside for, which hands it aside then
    and waits FOLLOW_WAIT 16ths for it), with a note played in the wait's first or last 16th ("wait_note",
    "wait_note_last"); "turns..." with ``turns`` 8 bars, the call played until the 16th before the tick before the
    bar line that ends the turn ("turns_last": with a note in that 16th too), timed from its last onset on. The call: 256 onsets in 16ths at 110
    BPM heard from 120 (with turns, those of the turn: 115), struck on a pad that sends no releases (so the 256
    messages the engine keeps of a call are all onsets), then the phrase-end silence."""
    holds = []
    with_aside, changes, action = FOLLOW_WAYS[way]
    aside = Aside() if with_aside else None
    switch = sys.getswitchinterval()
    rng = np.random.default_rng(2)
    for _ in range(repeats):
        settings = Settings(bpm=120, follow_tempo=True, min_call_steps=4, **changes)
        engine = Engine(model, settings, seed=int(rng.integers(1 << 30)), aside=aside)
        step, played = engine.step_seconds(), 60 / 110 / 4
        engine.start(0.0)
        strikes = [(0.3 + k * played + rng.uniform(-0.004, 0.004), 60 + 2 * (k % 4)) for k in range(FOLLOW_ONSETS)]
        if "turns" in changes:  # the tick before the turn's bar line: the player's 8th from its first beat, at 110
            phrase_end = math.floor((0.3 + 8 * 16 * played - FOLLOW_LEAD) / step) * step
            strikes = [strike for strike in strikes if strike[0] < phrase_end - 2 * step]
            if action:
                strikes.append((phrase_end - 0.5 * step, 62))
        longest, silent, k = 0.0, False, 0
        sys.setswitchinterval(SWITCH_INTERVAL if aside else switch)
        gc.disable()
        try:
            while True:
                boundary = (k + 1) * step
                while strikes and strikes[0][0] < boundary:
                    at, pitch = strikes.pop(0)
                    engine.feed(mido.Message("note_on", note=pitch, velocity=80), at)
                engine.pop_due(boundary)
                start = CLOCK[0]()
                engine.tick(boundary)
                seconds = CLOCK[0]() - start
                names = [event.name for event in engine.drain_events()]
                turns = "turns" in changes  # the turn ends by the bar line, not by silence (pads hold keys a while)
                last = turns and action is not None  # a strike to come in the turn's last 16th
                if not silent and len(strikes) <= last and (turns or engine._buffer.silent_steps > 0):
                    silent = True
                    if action and action.startswith("respond_now"):
                        engine.respond_now()  # the next tick hands the work aside and waits FOLLOW_WAIT ticks
                        if action.endswith("first 16th"):
                            strikes.append((boundary + 1.5 * step, 62))
                        elif action.endswith("last 16th"):
                            strikes.append((boundary + 2.5 * step, 62))
                if silent:
                    longest = max(longest, seconds)
                    time.sleep(step)  # the silence passes in real time: the thread aside has its time
                elif aside is not None:  # the call's ticks unpaced, but the aside thread has a 16th for a turn's fit
                    waited = time.perf_counter() + step
                    while engine.busy_aside and time.perf_counter() < waited:
                        time.sleep(ASIDE_PAUSE)
                if "phrase_end" in names:
                    break
                k += 1
        finally:
            gc.enable()
            sys.setswitchinterval(switch)
        holds.append(longest)
    return holds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--repeats", type=int, default=200, help="windows predicted by the tutorial's way (default 200)"
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time by the thread's CPU time, not the wall clock (a loaded machine preempts the wall-clock figures)",
    )
    parser.add_argument(
        "--follow", action="store_true", help="the follow figures alone, --repeats phrase ends each (no Keras)"
    )
    parser.add_argument(
        "--transpositions",
        action="store_true",
        help="style auto's figures alone, each model heard in one transposition and as its card has it (no Keras)",
    )
    args = parser.parse_args()
    if args.cpu:
        CLOCK[0] = time.thread_time
    if args.transpositions:
        result = {**transposition_figures(args.repeats), "load_average_1min": round(os.getloadavg()[0], 2)}
    elif args.follow:
        with tempfile.TemporaryDirectory() as workdir:
            model = load_model(model_dir(Path(workdir)))
        result = {"model": str(model.path), **follow_figures(model, args.repeats)}
        result["load_average_1min"] = round(os.getloadavg()[0], 2)
    else:
        result = bench(args.repeats)
    result["clock"] = "thread CPU time" if args.cpu else "wall"
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
