"""``improvd run``: the daemon. Wires the MIDI ports, the engine's timing thread, signals, systemd and MQTT.

Threads: rtmidi's input thread filters each message and hands it to the timing
thread (``improvd.daemon.timing.TimingThread``), the only one that calls the engine
and sends; this asyncio loop does everything slow — signals, configuration
reload, model loading (in an executor), port watching, the systemd watchdog,
statistics and logging, MQTT. Every way out releases every sounding note.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

import mido
import numpy as np

from improvd import __version__
from improvd.core.encoding import SONG_END
from improvd.core.model import DEFAULT_MODEL_DIR, MODEL_JSON, Model, ModelError, load_model
from improvd.core.runtime import LSTMRuntime
from improvd.daemon import config as configuration
from improvd.daemon.config import Config, ConfigError
from improvd.daemon.notify import Notifier, watchdog_interval
from improvd.daemon.ports import SYSTEM_COMMON, MidiPorts, MidiSystemError, well_formed
from improvd.daemon.recorder import Recorder
from improvd.daemon.reports import Changed, Events, Failed, Report, SendFailed, Tempo, Warned
from improvd.daemon.tally import Tally, describe
from improvd.daemon.timing import CLOCK, CONTINUE, START, STOP, LatenessStats, TimingThread

try:
    from improvd.daemon.mqtt import OFFLINE_TIMEOUT
except ImportError:  # without aiomqtt there is no MQTT to say offline
    OFFLINE_TIMEOUT = 0.0

GIL_SWITCH_SECONDS = 0.0005
log = logging.getLogger("improvd")

PORT_POLL = 0.5  # seconds between looks at the port list (reconnect within 2 s)
STOP_GRACE = OFFLINE_TIMEOUT + 0.1  # seconds the MQTT task may take to say offline at exit (beside the releases)
CLOSE_GRACE = 0.3  # seconds closing the ports may take at exit
CLOCK_BYTES = (CLOCK, START, CONTINUE, STOP)
LOAD_TIMEOUT = 30.0  # seconds a model load or configuration reload may take; then it is refused
RESTART_KEYS = ("midi_api", "input", "output", "clock", "clock_out", "seed")  # a reload keeps them as they run
RECORD_FLUSH = 10.0  # seconds between writes of the session being recorded
ENGINE_KEYS = (
    "temperature",
    "bpm",
    "response_steps",
    "response_bars",
    "meter",
    "groove",
    "metronome",
    "count_in_bars",
    "thru",
    "phrase_end_steps",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    configuration.add_arguments(parser)
    try:
        from improvd.daemon import mqtt
    except ImportError:
        return
    mqtt.add_arguments(parser)


def setup_logging(level: str) -> None:
    """One line per event on stderr; journald adds its own time stamps."""
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(stream=sys.stderr, format=stamp + "%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger().setLevel(level.upper())


def model_dir(config: Config) -> Path:
    return Path(config.model).expanduser() if config.model else DEFAULT_MODEL_DIR


def load_configured_model(config: Config) -> Model:
    """The configured model; a missing shipped model says how to get one."""
    path = model_dir(config)
    if not config.model and not path.is_dir():
        raise ModelError(f"the shipped model {path} is missing: train it (improvd-train) or give --model DIR")
    return load_model(path)


async def off_loop(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a thread of its own, within LOAD_TIMEOUT (TimeoutError after it).

    The thread is a daemon thread, not an executor's: a read that blocks for
    ever (a FIFO, a dead network mount) can never hold up the exit.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (function(*args), None)
        except Exception as error:
            outcome = (None, error)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits for the outcome
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="improvd-load", daemon=True).start()
    try:
        return await asyncio.wait_for(future, LOAD_TIMEOUT)
    except asyncio.TimeoutError:
        raise TimeoutError(f"{getattr(function, '__name__', 'loading')} took over {LOAD_TIMEOUT:g} s") from None


class PrimedRuntimes:
    """LSTM runtimes made and primed in a loader thread, for the engine to take when it switches to their model.

    The engine primes a new model's runtime with ``song_gap`` song ends; a
    runtime prepared here has done that already, so that first prime only
    restores its state. Any other model gets a plain ``LSTMRuntime``.
    """

    def __init__(self) -> None:
        self._ready: dict[int, tuple[Model, _PrimedRuntime]] = {}
        self._lock = threading.Lock()

    def prepare(self, model: Model) -> None:
        runtime = _PrimedRuntime(model)
        with self._lock:
            self._ready = {id(model): (model, runtime)}  # only the newest prepared model is kept

    def take(self, model: Model) -> LSTMRuntime:
        with self._lock:
            prepared, runtime = self._ready.pop(id(model), (None, None))
        return runtime if prepared is model else LSTMRuntime(model)


class _PrimedRuntime(LSTMRuntime):
    """An LSTM runtime that has heard ``song_gap`` song ends; the first prime with exactly those restores."""

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        self._primed_with = [model.vocabulary.index[SONG_END]] * model.song_gap
        self._primed_logits = super().prime(self._primed_with)
        self._primed_state: Any = self.snapshot()

    def prime(self, indices: Iterable[int]) -> np.ndarray | None:
        indices = list(indices)
        if self._primed_state is None or indices != self._primed_with:
            return super().prime(indices)
        state, self._primed_state = self._primed_state, None
        self.restore(state)
        return self._primed_logits


class Daemon:
    """The running daemon; also the MQTT ``Controller`` (state, apply, command, models)."""

    reports_changes = True  # the timing thread applies changes and reports them: the state is published then

    def __init__(self, config: Config, model: Model, ports: MidiPorts, args: argparse.Namespace) -> None:
        from improvd.core.engine import Engine, Settings

        self.config = config
        self.model = model
        self.ports = ports
        self.args = args
        self._settings_type = Settings
        self.runtimes = PrimedRuntimes()
        self.engine = Engine(
            model, Settings(**config.engine_settings()), seed=config.seed, predictor=self.runtimes.take
        )
        self.stats = LatenessStats()
        self.dropped: Tally = ports.dropped  # hostile or broken input (the ports count theirs), logged as counts
        self.notifier = Notifier()
        self.control_plane: Any = None
        self.timing = TimingThread(
            self.engine, ports.send, self._report, config.clock, config.clock_out, self.stats, ports.read_before_tick
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._status = ""
        self._failed = False
        self._background: set[asyncio.Task] = set()
        self.recorder = Recorder(Path(config.record_dir).expanduser(), time.monotonic()) if config.record_dir else None
        self.timing.recording = self.recorder.session if self.recorder else None
        self._recording_path: Path | None = None
        self._recording_dropped = 0  # messages a full session did not keep, as last logged
        self._held: set[tuple[int, int]] = set()  # (channel, note) the player holds; one input reader at a time

    # --- MIDI input (whichever thread reads the port, one at a time): drop what does not belong ---

    def on_midi(self, data: list[int], arrival: float) -> None:
        """One message from the input port: checked before it is parsed; malformed bytes are counted, never raised."""
        if not well_formed(data):
            if not data or data[0] not in SYSTEM_COMMON:
                self.dropped.add("malformed MIDI messages")
            return  # sysex pieces and song position are not for improvd
        status = data[0]
        if status >= 0xF0:
            if status in CLOCK_BYTES and self.config.clock == "midi":
                self.timing.clock_message(status, arrival)
            return  # clock under the internal clock, active sensing
        channel = status & 0x0F
        if self.config.input_channel is not None and channel != self.config.input_channel - 1:
            return
        message = mido.Message.from_bytes(data)
        if message.type == "control_change" and self._control(message):
            return
        if message.type in ("note_on", "note_off"):
            if not self._track(message):
                return
        elif not self.engine.settings.thru and (message.type != "control_change" or message.control != 64):
            return  # with thru every channel message goes on: the engine passes it to the output
        self.timing.feed(message, arrival)

    def _track(self, message: mido.Message) -> bool:
        """Keep the player's held notes; False for a note_off of a note not held (nothing to release)."""
        key = (message.channel, message.note)
        if message.type == "note_on" and message.velocity > 0:
            self._held.add(key)
            return True
        if key in self._held:
            self._held.discard(key)
            return True
        return False

    def _control(self, message: mido.Message) -> bool:
        """A configured control change (temperature, respond, panic, enable); True when it was one."""
        for name, number in self.config.cc.items():
            if number == message.control:
                self._control_action(name, message.value)
                return True
        return False

    def _control_action(self, name: str, value: int) -> None:
        if name == "temperature":
            temperature = round(0.05 + (2.0 - 0.05) * value / 127, 3)
            self.timing.submit(lambda now: self.engine.update(now, temperature=temperature))
        elif name == "enable":
            self.timing.submit(lambda now: self.engine.set_enabled(value >= 64, now))
        elif name == "metronome":
            self.timing.submit(lambda now: self.engine.update(now, metronome=value >= 64))
        elif value >= 64:  # respond and panic act on press
            self.command(name)

    # --- Controller (called in the asyncio loop by MQTT) ---

    def state(self) -> dict:
        settings = self.engine.settings
        return {
            "temperature": settings.temperature,
            "bpm": settings.bpm,
            "enabled": settings.enabled,
            "mode": self.engine.mode,
            "model": self.model.path.name,
            "response_steps": settings.response_steps,
            "response_bars": settings.response_bars,
            "meter": settings.meter,
            "groove": settings.groove,
            "metronome": settings.metronome,
            "count_in_bars": settings.count_in_bars,
            "thru": settings.thru,
            "recording": self._recording_path.name if self._recording_path else None,
            "phrase_end_steps": settings.phrase_end_steps,
            "clock": self.config.clock,
            "ports": self.ports.names(),
            "timing": self.stats.summary().as_dict() | {"clicks": self.timing.click_stats.summary().as_dict()},
            "version": __version__,
        }

    def apply(self, changes: dict) -> None:
        """Validate all the changes, then apply them together; ValueError names what is wrong."""
        unknown = sorted(set(changes) - {*ENGINE_KEYS, "enabled", "model"})
        if unknown:
            raise ValueError(
                f"{unknown[0]}: cannot be changed here (allowed: {', '.join([*ENGINE_KEYS, 'enabled', 'model'])})"
            )
        settings = {k: v for k, v in changes.items() if k in ENGINE_KEYS}
        candidate = dataclasses.replace(self.engine.settings, **settings)
        candidate.validate()
        model_path = self._model_path(changes["model"]) if "model" in changes else None
        if settings:
            self.timing.submit(lambda now: self.engine.update(now, **settings))
        if "enabled" in changes:
            enabled = bool(changes["enabled"])
            self.timing.submit(lambda now: self.engine.set_enabled(enabled, now))
        if model_path is not None:
            self._load_model_soon(model_path)
        log.debug("changed: %s", ", ".join(f"{k} = {v}" for k, v in changes.items()))

    def models(self) -> list[str]:
        """The names ``set/model`` accepts: the folders holding a model.json under the models path."""
        root = self._models_root()
        try:
            return sorted(p.name for p in root.iterdir() if (p / MODEL_JSON).is_file())
        except OSError:
            return []

    def _models_root(self) -> Path:
        return Path(self.config.models_path).expanduser() if self.config.models_path else model_dir(self.config).parent

    def _model_path(self, name: str) -> Path:
        """The model directory ``name`` under the models path, symbolic links resolved; it must stay inside.

        The error names only the model asked for: MQTT clients learn nothing of the folders on this machine.
        """
        root = self._models_root()
        path = (root / name).resolve()
        if not path.is_relative_to(root.resolve()) or not (path / MODEL_JSON).is_file():
            log.warning("set/model %r: no model directory %s under the models path %s", name, path, root)
            raise ValueError(f"model {name!r}: no such model under the models path")
        return path

    def command(self, name: str) -> None:
        if name == "respond":
            self.timing.submit(lambda now: self.engine.respond_now() or [])
        elif name == "panic":
            self.timing.submit(self.engine.panic)
        else:
            raise ValueError(f"command {name!r}: unknown (allowed: respond, panic)")

    # --- model loading, off the timing path ---

    def _load_model_soon(self, path: Path) -> None:
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(lambda: self._spawn(self._load_model(path)))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task:
        """A task of the loop, kept until it ends (the loop keeps only weak references); a failure ends the daemon."""
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._fail(f"{task.get_coro().__qualname__} failed: {task.exception()!r}")

    async def _load_model(self, path: Path) -> None:
        try:
            model = await off_loop(self._prepare_model, path)
        except (ModelError, TimeoutError) as error:
            log.error("model not changed: %s", error)
            self._event("error", {"reason": str(error)})
            return
        self.timing.submit(lambda now: self.engine.set_model(model) or [])
        self.model = model
        log.info("model %s loaded; it answers from the next response", path)

    def _prepare_model(self, path: Path) -> Model:
        """Load a model and prime its LSTM (in a loader thread): the timing thread only swaps it in."""
        model = load_model(path)
        self.runtimes.prepare(model)
        return model

    # --- reports from the timing thread (handed to the loop, never logged there) ---

    def _report(self, report: Report) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_report, report)

    def _on_report(self, report: Report) -> None:
        match report:
            case Events(events):
                for event in events:
                    log.info("%s %s", event.name, event.data or "")
                    self._event(event.name, dict(event.data))
                self._changed()
            case Changed():
                self._changed()
            case Tempo(bpm):
                log.debug("following MIDI clock at %.1f BPM", bpm)
                self._changed()
            case SendFailed(error):
                log.warning("sending failed: %s", error)
            case Warned(error):
                log.warning("ignored: %r", error)
            case Failed(error):
                self._fail(f"timing loop failed: {error!r}")

    def _fail(self, reason: str) -> None:
        """Something the daemon cannot run without broke: log it and exit with status 1 (systemd restarts it)."""
        log.error("%s; exiting", reason)
        self._failed = True
        if self._stopped is not None:
            self._stopped.set()

    def _event(self, name: str, data: dict) -> None:
        if self.control_plane is not None:
            self.control_plane.publish_event(name, data)

    def _changed(self) -> None:
        """State changed: tell MQTT and systemd (the status line only when it reads differently)."""
        if self.control_plane is not None:
            self.control_plane.publish_state()
        status = self.status_line()
        if status != self._status:
            self._status = status
            self.notifier.status(status)

    def status_line(self) -> str:
        settings, names = self.engine.settings, self.ports.names()
        ports = ", ".join(
            f"{side} {name or 'waiting for ' + repr(self.ports.wanted()[side])}" for side, name in names.items()
        )
        return f"{self.engine.mode}, {settings.bpm:g} BPM, temperature {settings.temperature:g}, {ports}"

    # --- the loop ---

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(number, self._stopped.set)
        self._loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        try:
            self.ports.open()
        except Exception as error:  # rtmidi raises its own errors (a JACK server gone meanwhile)
            log.error("cannot open the MIDI ports: %s", error)
            return 1
        self.timing.start()
        tasks = [self._spawn(c) for c in (self._watch_ports(), self._watchdog(), self._log_stats())]
        if self.recorder is not None:
            tasks.append(self._spawn(self._record()))
        mqtt_task = self._start_mqtt()
        self._status = self.status_line()
        self.notifier.ready(self._status)
        log.info(
            "ready: %s (model %s, %s clock, pid %d)", self._status, self.model.path, self.config.clock, os.getpid()
        )
        await self._stopped.wait()
        return await self._shutdown(tasks, mqtt_task)

    def _start_mqtt(self) -> asyncio.Task | None:
        mqtt_config = self.config.mqtt
        if mqtt_config is None or not mqtt_config.enabled:
            return None
        from improvd.daemon.mqtt import ControlPlane

        self.control_plane = ControlPlane(mqtt_config, self, __version__, self.dropped)
        return self._spawn(self.control_plane.run())

    async def _shutdown(self, tasks: list[asyncio.Task], mqtt_task: asyncio.Task | None) -> int:
        self.notifier.stopping()
        if mqtt_task is not None:
            if self.control_plane is not None:
                self.control_plane.request_stop()
            mqtt_task.cancel()  # it says offline while the timing thread releases the notes
        await off_loop(self.timing.stop)  # releases every sounding note on the output
        alive = self.timing.is_alive()
        if self.recorder is not None:
            await self._save_recording(rotate=False)
        for task in tasks:
            task.cancel()
        if mqtt_task is not None:
            await asyncio.wait([mqtt_task], timeout=STOP_GRACE)
        closer = threading.Thread(target=self.ports.close, name="improvd-close", daemon=True)
        closer.start()
        closer.join(CLOSE_GRACE)
        log.info("stopped; timing: %s%s", self.stats.summary(), self._clicks())
        self._log_dropped()
        code = 1 if alive or self._failed else 0
        if closer.is_alive():  # a MIDI system call that hangs must not hold the exit: the exit closes the ports
            log.warning("closing the MIDI ports hangs; exiting without waiting")
            logging.shutdown()
            os._exit(code)
        return code

    async def _watch_ports(self) -> None:
        while True:
            await asyncio.sleep(PORT_POLL)
            try:
                self._check_ports()
            except MidiSystemError as error:
                self._fail(str(error))
                return

    def _check_ports(self) -> None:
        """Lost and returned ports, the JACK input's probe and server; MidiSystemError when the daemon cannot go on.

        A dead input reader or timing thread, or a JACK server that is gone, ends the daemon (systemd restarts it).
        """
        if self.ports.failure is not None:
            raise MidiSystemError(f"reading the MIDI input failed: {self.ports.failure!r}")
        if not self.timing.is_alive():
            raise MidiSystemError("the timing thread has ended")
        self.ports.probe()
        for name, direction, port in self.ports.poll():
            if name == "port_lost":
                log.warning("%s port %r is gone; notes released, reconnecting when it is back", direction, port)
                self.timing.submit(self.engine.panic)
            else:
                log.info("%s port %r is back; connected", direction, port)
                if direction == "output":  # it may have missed the releases sent while it was gone
                    self.timing.submit(self.engine.all_notes_off)
            self._event(name, {"direction": direction, "port": port})
            self._changed()

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            if time.monotonic() - self.timing.heartbeat < interval:
                self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(self.config.stats_interval)
            log.info("timing: %s%s", self.stats.summary(), self._clicks())
            self._log_dropped()

    def _log_dropped(self) -> None:
        """One line for what was dropped since the last: counts, never a line per message."""
        counts = self.dropped.take()
        if counts:
            log.warning("dropped since the last report: %s", describe(counts))

    def _clicks(self) -> str:
        """The metronome's share of the timing line, when it clicked."""
        clicks = self.timing.click_stats.summary()
        return f"; clicks: {clicks}" if clicks.sends else ""

    # --- session recording (improvd.daemon.recorder): written off the loop, whole files only ---

    async def _record(self) -> None:
        while True:
            await asyncio.sleep(RECORD_FLUSH)
            await self._save_recording(rotate=self.recorder.due(time.monotonic()))

    async def _save_recording(self, rotate: bool) -> None:
        """Write the session being recorded (and start a new one when ``rotate``); a failure is one error line."""
        session = self.recorder.session
        if rotate:
            self.recorder.rotate(self.engine.bar_line(time.monotonic()))  # the new file's bar 1 is a bar line
            self.timing.recording = self.recorder.session
        if not len(session):
            return
        try:
            settings = self.engine.settings
            meter = tuple(int(part) for part in settings.meter.split("/"))
            path = await off_loop(session.write, self.recorder.folder, settings.bpm, meter)
        except (OSError, TimeoutError) as error:
            log.error("recording not written: %s", error)
            self._event("error", {"reason": f"recording not written: {error}"})
            return
        if path != self._recording_path:
            self._recording_path = path
            log.info("recording to %s", path)
            self._event("recording", {"file": path.name})
        if session.dropped and session.dropped != self._recording_dropped:
            self._recording_dropped = session.dropped
            log.warning("recording %s is full: %d messages not kept", path.name, session.dropped)

    async def reload(self) -> None:
        """SIGHUP: read the configuration again; an invalid one is logged and the running one kept.

        Keys that need a restart keep their running values until then. The file's engine settings replace the
        running ones, those made over MQTT included: a ``reloaded`` event names every setting that changed.
        """
        try:
            new = await off_loop(configuration.load, self.args)
        except (ConfigError, TimeoutError) as error:
            log.error("reload refused, configuration unchanged: %s", error)
            return
        old = self.config
        restart = [k for k in RESTART_KEYS if getattr(old, k) != getattr(new, k)]
        self.config = dataclasses.replace(new, mqtt=old.mqtt, **{k: getattr(old, k) for k in RESTART_KEYS})
        logging.getLogger().setLevel(new.log_level.upper())
        settings = new.engine_settings()
        running = self.engine.settings
        changed = {k: v for k, v in settings.items() if getattr(running, k, v) != v}
        self.timing.submit(lambda now: self.engine.update(now, **settings))
        self._event("reloaded", {"changed": changed})
        if self.recorder is not None:
            await self._save_recording(rotate=True)  # a SIGHUP starts a new recording
        if changed:
            log.info("reload changed %s", ", ".join(f"{k} to {v}" for k, v in changed.items()))
        if model_dir(new) != model_dir(old):
            self._load_model_soon(model_dir(new))
        if restart or (new.mqtt != old.mqtt):
            log.warning(
                "reloaded; changes to %s take effect after a restart",
                ", ".join(restart + ["mqtt"] * (new.mqtt != old.mqtt)),
            )
        else:
            log.info("reloaded %s: temperature %g, %g BPM", new.source, new.temperature, new.bpm)


def main(args: argparse.Namespace) -> int:
    try:
        config = configuration.load(args)
    except ConfigError as error:
        print(f"improvd: configuration error: {error}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    faulthandler.enable()  # a crash in a C extension (rtmidi, JACK) leaves every thread's stack in the log
    # The timing thread waits for the interpreter lock while MQTT or input work runs; the default 5 ms switch
    # interval would let that work delay a send by up to 5 ms.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    try:
        model = load_configured_model(config)
    except ModelError as error:
        log.error("cannot load the model: %s", error)
        return 1
    daemon = None
    try:
        ports = MidiPorts(
            config.midi_api, config.input, config.output, lambda d, t: daemon.on_midi(d, t), config.clock == "midi"
        )
    except MidiSystemError as error:
        log.error("%s", error)
        return 1
    daemon = Daemon(config, model, ports, args)
    return asyncio.run(daemon.run())
