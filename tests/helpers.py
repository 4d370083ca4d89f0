"""What the tests share: the engine in simulated time, a call on the grid, a player and a synth on real JACK
ports, an MQTT probe, and small files (a MIDI file, a model directory, ABC and Humdrum text).

Test modules import from here and from tests.services, never from each other.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mido
import numpy as np

from improvd.core.engine import Engine, Timed
from improvd.core.model import MODEL_FORMAT, MODEL_FORMAT_VERSION, Model, expected_shapes
from improvd.core.simulate import drive
from tests.services import wait_for

BPM = 120
STEP = 60 / BPM / 4

# --- the engine in simulated time (improvd.core.simulate.drive: the daemon's loop without the waiting) ---------


def run(
    engine: Engine, messages: list[tuple[float, mido.Message]], steps: int, drain: bool = True
) -> tuple[list, list]:
    """Drive ``engine`` through boundaries 0 to ``steps`` with the player's ``messages``; what it sent and reported.

    With ``drain`` the output still queued after the last tick is taken too (as if time ran on).
    """
    sent, events = [], []
    for boundary in drive(engine, messages, steps):
        sent += boundary.sent
        events += boundary.events
    if drain:
        sent += engine.pop_due(math.inf)
    return sent, events


def run_until_sounding(engine: Engine, messages: list[tuple[float, mido.Message]], steps: int = 200) -> float:
    """Drive as ``run`` does until an answer note sounds; the time of that boundary (its tick has run)."""
    for boundary in drive(engine, messages, steps):
        if engine.sounding:
            return boundary.time
    raise AssertionError(f"no answer note sounded in {steps} steps")


def sounding_after(sent: list[Timed]) -> set[tuple[int, int]]:
    """(channel, note) pairs whose last message was a note_on (CC 123 releases a channel)."""
    on: set[tuple[int, int]] = set()
    for timed in sorted(sent, key=lambda t: t.time):
        m = timed.message
        if m.type == "note_on" and m.velocity > 0:
            on.add((m.channel, m.note))
        elif m.type in ("note_on", "note_off"):
            on.discard((m.channel, m.note))
        elif m.type == "control_change" and m.control == 123:
            on = {(c, n) for c, n in on if c != m.channel}
    return on


def call(
    notes: list[tuple[int, float, float]], velocity: int = 90, step: float = STEP
) -> list[tuple[float, mido.Message]]:
    """(pitch, start step, length in steps) played exactly on the grid, each released 10 ms early."""
    messages = []
    for pitch, start, length in notes:
        messages.append((start * step, mido.Message("note_on", note=pitch, velocity=velocity)))
        messages.append(((start + length) * step - 0.01, mido.Message("note_off", note=pitch)))
    return messages


PHRASE = [(67, 0, 2), (69, 2, 2), (71, 4, 2), (72, 6, 2), (74, 8, 4)]  # released at step 12; phrase end at 20
# the same, in 16ths: every place in the beat is in its rhythm, so an answer may start a note on any step
RUNNING = [(67, 0, 1), (69, 1, 1), (71, 2, 1), (72, 3, 1), (74, 4, 8)]


def favouring(model: Model, symbol: str) -> Model:
    """The model with its output bias pushed far towards ``symbol``."""
    bias = model.weights["dense_bias"].copy()
    bias[model.vocabulary.index[symbol]] += 60.0
    return dataclasses.replace(model, weights={**model.weights, "dense_bias": bias})


class AsideSteps:
    """The candidates' LSTM steps taken on the timing thread: ``runtime`` stands in for improvd.core.styles'
    LSTMRuntime (monkeypatch it there), ``handed`` collects the jobs the engine hands aside, ``between_ticks`` runs
    them as the daemon's thread would (their steps not counted) and ``take`` returns the steps counted since."""

    def __init__(self) -> None:
        from improvd.core.runtime import LSTMRuntime

        self.handed: list = []
        self._counted = 0
        self._aside = False
        outer = self

        class Counting(LSTMRuntime):
            def step(self, index: int) -> np.ndarray:
                outer._counted += not outer._aside
                return super().step(index)

        self.runtime = Counting

    def between_ticks(self) -> None:
        self._aside = True
        for job in self.handed:
            for _ in job.slices():
                pass
        self._aside = False
        self.handed.clear()

    def take(self) -> int:
        counted, self._counted = self._counted, 0
        return counted


# --- real JACK ports ---------------------------------------------------------------------------------------------


def first_phrase(ident: str = "kinder0#1") -> list[tuple[int, float]]:
    """The notes of a real Essen tune up to its first rest, as (pitch, quarter length)."""
    from improvd.offline.notation import essen_tune, melody_of  # music21: the offline extra

    tune = essen_tune(ident)
    phrase = []
    for note in melody_of(tune.score, tune.ident):
        if note.pitch is None:
            break
        phrase.append((note.pitch, float(note.quarter_length)))
    return phrase


def play(port, phrase: list[tuple[int, float]], bpm: float) -> list[tuple[float, mido.Message]]:
    """Play the phrase in real time, each note released 20 ms early; what was sent, with when (monotonic)."""
    quarter = 60 / bpm
    at = time.monotonic()
    sent = []
    for pitch, length in phrase:
        sleep_until(at)
        sent.append((time.monotonic(), mido.Message("note_on", note=pitch, velocity=90)))
        port.send(sent[-1][1])
        at += length * quarter
        sleep_until(at - 0.02)
        sent.append((time.monotonic(), mido.Message("note_off", note=pitch, velocity=0)))
        port.send(sent[-1][1])
    return sent


def sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class Synth:
    """A JACK input port, ``synth:in``, that keeps what arrives in order, each with its arrival time.

    A thread of the test polls rtmidi's queue (no Python runs in JACK's real-time thread, as a callback would),
    and the times come from rtmidi's JACK-side deltas. Tests wait for what they need (``wait_for``) and check
    what came and in which order, not how late.
    """

    POLL = 0.001

    def __init__(self, client_name: str = "synth") -> None:
        import rtmidi

        self._port = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=client_name, queue_size_limit=8192)
        self._port.ignore_types(sysex=True, timing=False, active_sense=True)  # MIDI clock is heard
        self._port.open_virtual_port("in")
        self._received: list[tuple[float, mido.Message]] = []
        self._lock = threading.Lock()
        self._stream = 0.0  # summed deltas
        self._offset: float | None = None  # monotonic time at delta 0: the least delayed look
        self._running = True
        self._thread = threading.Thread(target=self._poll, name="synth-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while self._running:
            item = self._port.get_message()
            if item is None:
                time.sleep(self.POLL)
                continue
            data, delta = item
            now = time.monotonic()
            self._stream += delta
            self._offset = now - self._stream if self._offset is None else min(self._offset, now - self._stream)
            message = mido.Message.from_bytes(data)
            with self._lock:
                self._received.append((self._stream, message))

    def messages(self, distinct: bool = False) -> list[tuple[float, mido.Message]]:
        """What arrived, in order, with its arrival on ``time.monotonic``. ``distinct`` drops a message equal to
        the one just before it at the same JACK time (a repeat that changes nothing)."""
        with self._lock:
            received, offset = list(self._received), self._offset or 0.0
        kept: list[tuple[float, mido.Message]] = []
        for stream, message in received:
            if distinct and kept and kept[-1][1] == message and kept[-1][0] == offset + stream:
                continue
            kept.append((offset + stream, message))
        return kept

    def controls(self) -> list[tuple[int, int]]:
        return [(m.control, m.value) for _, m in self.messages(distinct=True) if m.type == "control_change"]

    def note_ons(self, channel: int | None = None) -> list[tuple[float, int]]:
        return [
            (t, m.note)
            for t, m in self.messages()
            if m.type == "note_on" and m.velocity > 0 and channel in (None, m.channel)
        ]

    def sounding(self) -> set[int]:
        """Notes left on: note_on without a later note_off, unless All Notes Off (CC 123) came after."""
        on: set[int] = set()
        for _, m in self.messages():
            if m.type == "note_on" and m.velocity > 0:
                on.add(m.note)
            elif m.type in ("note_on", "note_off"):
                on.discard(m.note)
            elif m.type == "control_change" and m.control == 123:
                on.clear()
        return on

    def wait(self, predicate: Callable[[Synth], object], what: str, timeout: float = 10) -> None:
        """Until ``predicate(self)`` holds."""
        wait_for(lambda: predicate(self), timeout, f"{what} at the synth")

    def close(self) -> None:
        """Close the port (again: nothing)."""
        if not self._running:
            return
        self._running = False
        self._thread.join(2)
        self._port.close_port()
        self._port.delete()


# --- MQTT ----------------------------------------------------------------------------------------------------------

INSTANCE = "test"
PREFIX = f"improvd/{INSTANCE}"


class Probe:
    """A plain MQTT client that watches improvd/test/# and publishes like a user would."""

    def __init__(self, broker, username: str | None = None, password: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        import paho.mqtt.client as paho

        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([(f"{PREFIX}/#", 1), ("homeassistant/#", 1)])
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, message.retain))

    def publish(self, subtopic: str, payload: str | bytes, retain: bool = False) -> None:
        self.client.publish(f"{PREFIX}/{subtopic}", payload, qos=1, retain=retain).wait_for_publish(5)

    def payloads(self, subtopic: str) -> list[bytes]:
        with self.lock:
            return [payload for topic, payload, _ in self.messages if topic == f"{PREFIX}/{subtopic}"]

    def events(self, name: str) -> list[dict]:
        return [e for e in map(json.loads, self.payloads("events")) if e["event"] == name]

    def state(self) -> dict | None:
        states = self.payloads("state")
        return json.loads(states[-1]) if states else None

    def wait_state(self, predicate, what: str) -> dict:
        wait_for(lambda: self.state() is not None and predicate(self.state()), 10, what)
        return self.state()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(broker, subtopic: str) -> bytes:
    """The retained message on a topic, as a client connecting now sees it."""
    result = subprocess.run(
        ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", f"{PREFIX}/{subtopic}", "-C", "1", "-W", "5"]
        + (["-u", broker.password[0], "-P", broker.password[1]] if broker.password else []),
        capture_output=True,
        timeout=10,
    )
    return result.stdout.rstrip(b"\n")


# --- files ---------------------------------------------------------------------------------------------------------

VOCABULARY = ["_", "r", "/", "60", "62", "64", "65", "67"]


def write_model(directory: Path, input_kind: str = "onehot", units: list[int] | None = None) -> Path:
    """A consistent model directory with random weights (no TensorFlow needed)."""
    units = units or [6, 5]
    directory.mkdir(parents=True, exist_ok=True)
    card = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "vocabulary": VOCABULARY,
        "step_quarter_length": 0.25,
        "sequence_length": 16,
        "input": input_kind,
        "lstm_units": units,
    }
    (directory / "model.json").write_text(json.dumps(card), encoding="utf-8")
    rng = np.random.default_rng(0)
    shapes = expected_shapes(len(VOCABULARY), input_kind, units, 4 if input_kind == "embedding" else None)
    np.savez(directory / "weights.npz", **{k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()})
    return directory


def write_midi(path: Path, notes: list[tuple[int, int, int]], bpm: float = 100, ticks: int = 480) -> Path:
    """A type 0 file of (pitch, start tick, end tick) notes."""
    events = sorted(
        [(start, 1, mido.Message("note_on", note=p, velocity=70)) for p, start, _ in notes]
        + [(end, 0, mido.Message("note_off", note=p)) for p, _, end in notes],
        key=lambda e: (e[0], e[1]),
    )
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))])
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks)
    midi.tracks.append(track)
    midi.save(path)
    return path


ABC = """X:1
T:Little Tune
M:2/4
L:1/8
K:G
D | G2 AB | c2 B2 | A2 GA | B4 | d2 cB | A2 G2 |]
"""

KERN = """**kern
*M3/4
*k[f#]
=1-
4g
8a
8b
4cc
=2
2.dd
=3
4b
4g
4r
*-
"""


# --- the daemon's configuration and flags ---

EXAMPLE = Path(__file__).resolve().parent.parent / "systemd" / "improvd.toml"


def flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    from improvd.daemon import service

    service.add_arguments(parser)
    return parser.parse_args(list(argv))


def run_help() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "improvd.cli", "run", "--help"], capture_output=True, text=True, check=True, env=WIDE
    )
    return result.stdout


WIDE = {"COLUMNS": "400", "PATH": "/usr/bin:/bin"}  # one line per flag


def raised_without_blocking(call: Callable[[], object], seconds: float = 10.0) -> BaseException | None:
    """What ``call`` raised (None if nothing), run in a thread of its own that must end within ``seconds``: for
    reads that once blocked for ever (a FIFO, a device), where the wait only bounds a hang, never times a result."""
    raised: list[BaseException] = []

    def run_it() -> None:
        try:
            call()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run_it, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{call} blocked"
    return raised[0] if raised else None
