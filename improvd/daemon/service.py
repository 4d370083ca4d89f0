"""``improvd run``: the daemon's life. Wires the MIDI ports, the engine's timing thread, signals, systemd and MQTT.

Threads: rtmidi's input thread hands each message to ``InputFilter``
(``improvd.daemon.input_filter``) and carries out its decision: player input
goes to the timing thread (``improvd.daemon.timing.TimingThread``), the only
one that calls the engine and sends; this asyncio loop does everything slow —
signals, configuration reload, model loading (``improvd.daemon.controller``),
port watching, the systemd watchdog, statistics and logging, MQTT. Every way
out releases every sounding note.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import faulthandler
import functools
import gc
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from improvd import __version__
from improvd.core.grid import parse_meter
from improvd.core.model import Model, ModelError
from improvd.core.styles import load_style
from improvd.daemon import config as configuration
from improvd.daemon.aside import Aside
from improvd.daemon.config import Config, ConfigError
from improvd.daemon.controller import Controller
from improvd.daemon.input_filter import Change, Clock, Command, Drop, Feed, InputFilter
from improvd.daemon.models import PrimedRuntimes, load_configured_model, model_dir, models_root
from improvd.daemon.notify import Notifier, watchdog_interval
from improvd.daemon.offloop import LOAD_TIMEOUT, off_loop
from improvd.daemon.ports import MidiPorts, MidiSystemError
from improvd.daemon.quiet import quiet_loop
from improvd.daemon.recorder import Recorder
from improvd.daemon.reports import Changed, Events, Failed, Report, SendFailed, Tempo, Warned
from improvd.daemon.tally import Tally, Throttle, describe
from improvd.daemon.timing import LatenessStats, TimingThread
from improvd.daemon.watcher import PortWatcher

try:
    from improvd.daemon.mqtt import OFFLINE_TIMEOUT
except ImportError:  # without aiomqtt there is no MQTT to say offline
    OFFLINE_TIMEOUT = 0.0

log = logging.getLogger("improvd")

PORT_POLL = 0.5  # seconds between looks at the port list (reconnect within 2 s)
WATCHER_CHECK = 5.0  # seconds between the loop's checks that a look at the ports has not hung for LOAD_TIMEOUT
STOP_GRACE = OFFLINE_TIMEOUT + 0.1  # seconds the MQTT task may take to say offline at exit (beside the releases)
CLOSE_WAIT = 3.0  # seconds closing the ports may take at exit (MidiPorts.close bounds itself well within it) ...
EXIT_DEADLINE = 5.0  # ... and before the process ends regardless (a JACK server wedged inside one of rtmidi's calls)
RESTART_KEYS = ("midi_api", "input", "output", "clock", "clock_out", "seed")  # a reload keeps them as they run
RECORD_FLUSH = 10.0  # seconds between writes of the session being recorded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``improvd run``: the configuration's, and MQTT's when aiomqtt is installed."""
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


class Daemon:
    """The running daemon's life: its loop, signals, systemd, port watching, MQTT, recording, reload, exit.

    What it steers is ``controller`` (``improvd.daemon.controller.Controller``,
    also what MQTT steers); what each input message is for, ``InputFilter``.
    """

    def __init__(self, config: Config, model: Model, ports: MidiPorts, args: argparse.Namespace) -> None:
        from improvd.core.engine import Engine, Settings

        self.ports = ports
        self.args = args
        runtimes = PrimedRuntimes()
        self.aside = Aside()  # a followed call's phrase-end work, off the timing thread
        settings = Settings(**config.engine_settings())
        self.engine = Engine(
            model, settings, seed=config.seed, predictor=runtimes.take, aside=self.aside, candidates=runtimes.styles
        )
        self.stats = LatenessStats()
        self.dropped: Tally = ports.dropped  # hostile or broken input (the ports count theirs), logged as counts
        self.notifier = Notifier()
        self.timing = TimingThread(
            self.engine,
            ports.send,
            self._report,
            config.clock,
            config.clock_out,
            self.stats,
            ports.read_before_tick,
            cycles=ports.output_cycles,  # a tick waits for the JACK cycle that takes the send before it
        )
        ports.quiet = self.timing.quiet  # the input reader keeps off the interpreter around each send
        self.aside.keep_off = self.timing.quiet.keep_off  # and so does the work aside
        self.aside.start()
        ports.on_overflow = lambda: self.timing.submit(self.engine.input_lost)  # a lost release: release thru notes
        self.controller = Controller(
            config, model, self.timing, ports, runtimes, self.notifier, self._schedule, self.dropped
        )
        self.throttle = Throttle()  # a flood of one kind of event is logged and published as a count
        self.input = InputFilter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._failed = False
        self._background: set[asyncio.Task] = set()
        folder = Path(config.record_dir).expanduser() if config.record_dir else None
        self.recorder = Recorder(folder, time.monotonic(), self.timing.quiet.keep_off) if folder else None
        self.timing.recording = self.recorder.session if self.recorder else None
        self._recording_dropped = 0  # messages a full session did not keep, as last logged
        self.watcher = PortWatcher(self._look_at_ports, self._watched, PORT_POLL, self.timing.quiet.keep_off)

    # --- MIDI input (whichever thread reads the port, one at a time) ---

    def on_midi(self, data: list[int], arrival: float) -> None:
        """One message from the input port: what ``InputFilter`` decides is done here; nothing is raised."""
        match self.input.decide(data, self.controller.config, self.engine.settings.thru):
            case Feed(message):
                self.timing.feed(message, arrival)
            case Clock(status):
                self.timing.clock_message(status, arrival)
            case Change(name, value):
                self.controller.change({name: value})
            case Command(name):
                self.controller.command(name)
            case Drop(reason, counted=True):
                self.dropped.add(reason)

    # --- tasks of the loop ---

    def _schedule(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a task of the loop (thread-safe); before the loop runs there is none to run it."""
        loop = self._loop
        if loop is None:
            coroutine.close()
            return
        loop.call_soon_threadsafe(self._spawn, coroutine)

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

    # --- reports from the timing thread (handed to the loop, never logged there) ---

    def _report(self, report: Report) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_report, report)

    def _on_report(self, report: Report) -> None:
        match report:
            case Events(events):
                now = time.monotonic()
                for event in events:
                    if self.throttle.allow(event.name, now):
                        (log.warning if event.name == "late" else log.info)("%s %s", event.name, event.data or "")
                        self.controller.event(event.name, dict(event.data))
                self._log_held_back(now)
                self.controller.changed()
            case Changed():
                self.controller.changed()
            case Tempo(bpm):
                log.debug("following MIDI clock at %.1f BPM", bpm)
                self.controller.changed()
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

    # --- the loop ---

    async def run(self) -> int:
        """Open the ports, start the timing thread and the tasks, wait for a signal or a failure; the exit status."""
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
        gc.freeze()  # what the start made lives as long as the daemon: collections no longer walk it
        self.timing.start()
        self.watcher.start()
        tasks = [self._spawn(c) for c in (self._watch_watcher(), self._watchdog(), self._log_stats())]
        if self.recorder is not None:
            tasks.append(self._spawn(self._record()))
        mqtt_task = self._start_mqtt()
        status, model = self.controller.ready(), self.controller.model
        log.info(
            "ready: %s (model %s, %s clock, pid %d)", status, model.path, self.controller.config.clock, os.getpid()
        )
        await self._stopped.wait()
        return await self._shutdown(tasks, mqtt_task)

    def _start_mqtt(self) -> asyncio.Task | None:
        mqtt_config = self.controller.config.mqtt
        if mqtt_config is None or not mqtt_config.enabled:
            return None
        from improvd.daemon.mqtt import ControlPlane

        self.controller.control_plane = ControlPlane(mqtt_config, self.controller, __version__, self.dropped)
        return self._spawn(self.controller.control_plane.run())

    async def _shutdown(self, tasks: list[asyncio.Task], mqtt_task: asyncio.Task | None) -> int:
        self.notifier.stopping()
        if mqtt_task is not None:
            if self.controller.control_plane is not None:
                self.controller.control_plane.request_stop()
            mqtt_task.cancel()  # it says offline while the timing thread releases the notes
        for task in tasks:
            task.cancel()
        self.watcher.stop(0)  # no look begins from now on (one under way is waited for by the ports' close)
        await off_loop(self.timing.stop)  # releases every sounding note on the output
        alive = self.timing.is_alive()
        if self.recorder is not None:
            await self._save_recording(rotate=False)
        if mqtt_task is not None:
            await asyncio.wait([mqtt_task], timeout=STOP_GRACE)
        unclosed = self._close_ports()
        log.info("stopped; timing: %s%s", self.stats.summary(), self._clicks())
        self._log_dropped()
        self._log_held_back(math.inf)
        code = 1 if alive or self._failed else 0
        if unclosed:  # the exit closes them: a process that is gone has no JACK clients
            log.warning("MIDI ports not closed (%s); exiting without them", unclosed)
            logging.shutdown()
            os._exit(code)
        return code

    def _close_ports(self) -> str | None:
        """Close the ports in a thread of their own (``MidiPorts.close``, bounded when the MIDI system hangs):
        None when closed, else why not. rtmidi holds the interpreter lock through each JACK server round trip,
        so a server that wedges in the middle of the close would hold this thread too: the process then ends
        after EXIT_DEADLINE (faulthandler's watchdog, which needs no interpreter lock, dumps the stacks and
        exits with status 1)."""
        outcome: list[str | None] = []
        closer = threading.Thread(target=lambda: outcome.append(self.ports.close()), name="improvd-close", daemon=True)
        faulthandler.dump_traceback_later(EXIT_DEADLINE, exit=True)
        try:
            closer.start()
            closer.join(CLOSE_WAIT)
        finally:
            faulthandler.cancel_dump_traceback_later()
        return outcome[0] if outcome else "closing them hangs"

    def _watched(self, outcome: list[tuple[str, str, str]] | Exception) -> None:
        """What a look of the port watcher found (in its thread): handed to the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._on_watched, outcome)

    def _on_watched(self, outcome: list[tuple[str, str, str]] | Exception) -> None:
        if self._stopped.is_set():  # the exit began during the look (the timing thread stopping is no failure)
            return
        if isinstance(outcome, Exception):
            self.controller.event("error", {"reason": str(outcome)})  # before the status goes offline
            self._fail(str(outcome) if isinstance(outcome, MidiSystemError) else f"watching the ports: {outcome!r}")
            return
        self._on_port_events(outcome)

    async def _watch_watcher(self) -> None:
        """A look at the ports that hangs (a MIDI system that stopped answering) ends the daemon after LOAD_TIMEOUT."""
        while True:
            await asyncio.sleep(WATCHER_CHECK)
            taken = self.watcher.looking_for()
            if taken > LOAD_TIMEOUT:
                reason = f"the MIDI system does not answer: a look at the ports has taken {taken:.0f} s"
                self.controller.event("error", {"reason": reason})
                self._fail(reason)
                return

    def _check_threads(self) -> None:
        """MidiSystemError when the input reader or the timing thread has died: the daemon cannot go on."""
        if self.ports.failure is not None:
            raise MidiSystemError(f"reading the MIDI input failed: {self.ports.failure!r}")
        if not self.timing.is_alive():
            raise MidiSystemError("the timing thread has ended")

    def _look_at_ports(self) -> list[tuple[str, str, str]]:
        """The JACK probe and server, lost and returned ports, and the threads: in the port watcher's thread
        (``PortWatcher``), since each reconnect and server check is a round trip to the MIDI system; what it found
        comes back to the loop as events.

        MidiSystemError when the daemon cannot go on: a JACK server that is gone, or a JACK client of improvd's
        that stopped running and that new clients could not replace (systemd restarts it; the process must go for
        jackd to drop a stopped client).
        """
        self._check_threads()
        return self.ports.probe() + self.ports.poll()

    def _on_port_events(self, events: list[tuple[str, str, str]]) -> None:
        """On the loop: the notes released for a lost port, the output's for one back or a new output client, every
        key up for a new input client, an event each (an ``error`` event for a client replaced:
        ``MidiPorts._reopen``)."""
        for name, direction, port in events:
            if name in ("input_reopened", "output_reopened"):
                self._on_client_replaced(name, direction, port)
                continue
            if name == "port_lost":
                log.warning("%s port %r is gone; notes released, reconnecting when it is back", direction, port)
                self.timing.submit(self.engine.panic)
            else:
                log.info("%s port %r is back; connected", direction, port)
                if direction == "output":  # it may have missed the releases sent while it was gone
                    self.timing.submit(self.engine.all_notes_off)
            self.controller.event(name, {"direction": direction, "port": port})
            self.controller.changed()

    def _on_client_replaced(self, name: str, direction: str, port: str) -> None:
        """improvd's JACK ``direction`` client stopped running and ``port`` replaced it: on the output, all notes
        off (what the stopped client held never left); on the input, every key counts as up and every note passed
        through is released (a release may have been lost in it: ``Engine.input_lost``). One ``error`` event."""
        count = getattr(self.ports, name)
        reason = f"improvd's JACK {direction} client stopped running; replaced by {port} ({count} times since start)"
        self.timing.submit(self.engine.all_notes_off if direction == "output" else self.engine.input_lost)
        self.controller.event("error", {"reason": reason, name: count})
        self.controller.changed()

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
            await asyncio.sleep(self.controller.config.stats_interval)
            log.info("timing: %s%s", self.stats.summary(), self._clicks())
            self._log_dropped()
            self._log_held_back(time.monotonic())

    def _log_held_back(self, now: float) -> None:
        """One line for the events of a flood that were neither logged nor published (``Throttle``)."""
        held = self.throttle.held_back(now)
        if held:
            log.warning("events not logged or published (too many a second): %s", describe(held))

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
        """Write what changed of the sessions recorded (and start a new one when ``rotate``); a failure is one
        error line."""
        if rotate:
            self.recorder.rotate(self.engine.bar_line(time.monotonic()))  # the new file's bar 1 is a bar line
            self.timing.recording = self.recorder.session
        settings = self.engine.settings
        try:
            await off_loop(self.recorder.save, settings.bpm, parse_meter(settings.meter))
        except (OSError, TimeoutError) as error:
            log.error("recording not written: %s", error)
            self.controller.event("error", {"reason": f"recording not written: {error}"})
            return
        path, session = self.recorder.path, self.recorder.session
        if path is not None and path != self.controller.recording:
            self.controller.recording = path
            log.info("recording to %s", path)
            self.controller.event("recording", {"file": path.name})
        if path is not None and session.dropped and session.dropped != self._recording_dropped:
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
        old = self.controller.config
        restart = [k for k in RESTART_KEYS if getattr(old, k) != getattr(new, k)]
        self.controller.config = dataclasses.replace(new, mqtt=old.mqtt, **{k: getattr(old, k) for k in RESTART_KEYS})
        logging.getLogger().setLevel(new.log_level.upper())
        settings = new.engine_settings()
        running = self.engine.settings
        changed = {k: v for k, v in settings.items() if getattr(running, k, v) != v}
        self.timing.change(settings)
        self.controller.event("reloaded", {"changed": changed})
        if self.recorder is not None:
            await self._save_recording(rotate=True)  # a SIGHUP starts a new recording
        if changed:
            log.info("reload changed %s", ", ".join(f"{k} to {v}" for k, v in changed.items()))
        if model_dir(new) != model_dir(old):
            self.controller.load_model_soon(model_dir(new))
        if new.style != old.style:
            self.controller.set_style(new.style)
        if restart or (new.mqtt != old.mqtt):
            log.warning(
                "reloaded; changes to %s take effect after a restart",
                ", ".join(restart + ["mqtt"] * (new.mqtt != old.mqtt)),
            )
        else:
            log.info("reloaded %s: temperature %g, %g BPM", new.source, new.temperature, new.bpm)


def main(args: argparse.Namespace) -> int:
    """``improvd run``: 0 after a clean stop, 1 when the daemon cannot run or failed, 2 for a bad configuration."""
    try:
        config = configuration.load(args)
    except ConfigError as error:
        print(f"improvd: configuration error: {error}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    faulthandler.enable()  # a crash in a C extension (rtmidi, JACK) leaves every thread's stack in the log
    try:
        model = load_configured_model(config)
        if config.style:
            model, styles = load_style(config.style, model_dir(config), models_root(config))
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
    if config.style:
        daemon.engine.set_styles(styles)  # before the timing thread starts
    with asyncio.Runner(loop_factory=functools.partial(quiet_loop, daemon.timing.quiet)) as runner:
        return runner.run(daemon.run())
