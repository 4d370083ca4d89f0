"""The daemon's controller: its state, the changes and commands it takes, model switching, the status line.

MQTT calls it in the asyncio loop (it is the control plane's ``Controller``),
so does a reload; the MIDI input reader calls ``change`` and ``command`` for
control changes. Nothing here touches the engine directly: every change is
queued to the timing thread, which reports when it has landed (the daemon's
loop then calls ``changed``, which publishes the state).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from improvd import __version__
from improvd.core.model import MODEL_JSON, Model, ModelError, load_model
from improvd.core.schema import AUTO, BY_NAME, MQTT, SETTINGS
from improvd.core.styles import Styles, models_under
from improvd.core.touch import beat_steps
from improvd.daemon.config import Config
from improvd.daemon.models import PrimedRuntimes, models_root
from improvd.daemon.notify import Notifier
from improvd.daemon.offloop import off_loop
from improvd.daemon.ports import MidiPorts
from improvd.daemon.tally import Tally
from improvd.daemon.timing import TimingThread

log = logging.getLogger("improvd")

# the engine's settings MQTT steers, from the table (enabled is applied apart)
ENGINE_KEYS = tuple(s.name for s in SETTINGS if s.engine and MQTT in s.sources and s.name != "enabled")
COMMANDS = ("respond", "panic", "forget")


class Controller:
    """What steers the running daemon: the MQTT ``Controller`` (state, apply, command, models), and what publishes.

    ``control_plane`` is the MQTT control plane once it runs (events and the
    state go there); ``recording`` is the file being recorded, if any.
    ``schedule`` runs a coroutine as a task of the daemon's loop (thread-safe).
    """

    reports_changes = True  # the timing thread applies changes and reports them: the state is published then

    def __init__(
        self,
        config: Config,
        model: Model,
        timing: TimingThread,
        ports: MidiPorts,
        runtimes: PrimedRuntimes,
        notifier: Notifier,
        schedule: Callable[[Coroutine[Any, Any, None]], None],
        dropped: Tally | None = None,
    ) -> None:
        """``dropped`` counts the repeated commands merged with one still waiting (the daemon logs the counts)."""
        self.config = config
        self.model = model
        self.timing = timing
        self.engine = timing.engine
        self.ports = ports
        self.runtimes = runtimes
        self.notifier = notifier
        self.control_plane: Any = None
        self.recording: Path | None = None
        self._schedule = schedule
        self._status = ""
        self.dropped = dropped or Tally()
        self._waiting: set[str] = set()  # commands (and enabled) queued to the timing thread, not yet run
        self._waiting_lock = threading.Lock()  # the MIDI reader and the asyncio loop both command
        self._enabled = True  # the last enabled value asked for
        self._model_wanted: tuple[Path, str | None, str | None] | None = None  # the model to load next, its name and
        # style (load_model_soon)
        self._model_loading = False  # a task loads models until none is wanted
        self.style = config.style  # "" (the model alone), auto or a model's name: the last one that took

    # --- what MQTT reads and asks ---

    def state(self) -> dict:
        """Everything the control plane publishes: the settings, the mode, the model, the ports, the timing."""
        settings = self.engine.settings
        return {
            "temperature": settings.temperature,
            "bpm": settings.bpm,
            "enabled": settings.enabled,
            "mode": self.engine.mode,
            "model": self.model.path.name,
            "style": self.style,
            "answering": self.engine.model.name,  # the model that answers: a named style's, auto's last choice
            "offset": self.engine.offset,  # ... its transposition from the call's white keys (3: essen in C minor)
            "response_steps": settings.response_steps,
            "response_bars": settings.response_bars,
            "meter": settings.meter,
            "groove": settings.groove,
            "metronome": settings.metronome,
            "count_in_bars": settings.count_in_bars,
            "thru": settings.thru,
            "beat_bpm": round(settings.bpm * 4 / beat_steps(settings.meter), 2),  # the meter's beat (6/8: dotted)
            "output_channel": settings.output_channel + 1,
            "program": None if settings.program is None else settings.program + 1,
            "key": settings.key,
            "range": list(settings.range),
            "recording": self.recording.name if self.recording else None,
            "phrase_end_steps": settings.phrase_end_steps,
            "session_memory": settings.session_memory,
            "memory_phrases": settings.memory_phrases,
            "remembered": self.engine.remembered,
            "phrase_end": settings.phrase_end,
            "turns": settings.turns,
            "clock": self.config.clock,
            "ports": self.ports.names(),
            "timing": self.timing.stats.summary().as_dict() | {"clicks": self.timing.click_stats.summary().as_dict()},
            "version": __version__,
        }

    def apply(self, changes: dict) -> None:
        """Validate all the changes (in the daemon's units, as MQTT gives them), then apply them together in the
        engine's; ValueError names what is wrong."""
        allowed = [*ENGINE_KEYS, "enabled", "model", "style"]
        unknown = sorted(set(changes) - set(allowed))
        if unknown:
            raise ValueError(f"{unknown[0]}: cannot be changed here (allowed: {', '.join(allowed)})")
        settings = {k: BY_NAME[k].to_engine(v) for k, v in changes.items() if k in ENGINE_KEYS}  # channel 1 is 0
        dataclasses.replace(self.engine.settings, **settings).validate()
        model_path = self._model_path(changes["model"]) if "model" in changes else None
        if changes.get("style") not in (None, "", AUTO):
            self._model_path(changes["style"], "style")  # a style names a model under the models path
        self.change({**settings, **{k: v for k, v in changes.items() if k in ("enabled", "style")}})
        if model_path is not None:
            self.load_model_soon(model_path, changes["model"])
        log.debug("changed: %s", ", ".join(f"{k} = {v}" for k, v in changes.items()))

    def change(self, changes: dict) -> None:
        """Queue valid changes to the timing thread: the engine settings merged with any not yet applied
        (``TimingThread.change``), then ``enabled`` (the last value asked for, when one still waits)."""
        settings = {k: v for k, v in changes.items() if k not in ("enabled", "style")}
        if "style" in changes:
            style = changes["style"]
            self.set_style(self._style_of_cc(style) if isinstance(style, float) else style)
        if settings:
            self.timing.change(settings)
        if "enabled" in changes:
            self._enabled = bool(changes["enabled"])
            self._submit_once("enabled", lambda now: self.engine.set_enabled(self._enabled, now))

    def command(self, name: str) -> None:
        """Queue ``respond`` (answer now), ``panic`` (release everything) or ``forget`` (empty the session
        memory); ValueError for any other name.

        A command that still waits for the timing thread is not queued again (a flood of them costs that thread
        one run per look); the repeats are counted in ``dropped``.
        """
        if name == "respond":
            self._submit_once(name, lambda now: self.engine.respond_now() or [])
        elif name == "panic":
            self._submit_once(name, self.engine.panic)
        elif name == "forget":
            self._submit_once(name, self.engine.forget)
        else:
            raise ValueError(f"command {name!r}: unknown (allowed: {', '.join(COMMANDS)})")

    def _submit_once(self, key: str, action: Callable[[float], list]) -> None:
        """Submit ``action`` to the timing thread unless one of the same ``key`` waits there (thread-safe)."""
        with self._waiting_lock:
            if key in self._waiting:
                self.dropped.add("repeated commands merged with one still waiting")
                return
            self._waiting.add(key)

        def run(now: float) -> list:
            with self._waiting_lock:
                self._waiting.discard(key)
            return action(now)

        self.timing.submit(run)

    def models(self) -> list[str]:
        """The names ``set/model`` accepts: the folders holding a model.json under the models path."""
        root = self._models_root()
        try:
            return sorted(p.name for p in root.iterdir() if (p / MODEL_JSON).is_file())
        except OSError:
            return []

    def _models_root(self) -> Path:
        return models_root(self.config)

    def _model_path(self, name: str, setting: str = "model") -> Path:
        """The model directory ``name`` under the models path, symbolic links resolved; it must stay inside.

        The error names the setting that asked for it (``model`` or ``style``) and only the model asked for: MQTT
        clients learn nothing of the folders on this machine.
        """
        root = self._models_root()
        path = (root / name).resolve()
        if not path.is_relative_to(root.resolve()) or not (path / MODEL_JSON).is_file():
            log.warning("%s %r: no model directory %s under the models path %s", setting, name, path, root)
            raise ValueError(f"{setting} {name!r}: no such model under the models path")
        return path

    # --- model switching, off the timing path ---

    def set_style(self, style: str) -> None:
        """Answer in ``style`` from the next answer (thread-safe): auto (every model under the models path primed
        off the loop, then handed to the engine), a model's name (loaded as ``set/model`` loads it) or "" (the
        configured model alone); a failure is an error event and leaves the style (and ``self.style``) as it was."""
        self._schedule(self._apply_style(style))

    def _style_of_cc(self, fraction: float) -> str:
        """A CC's place (0 to 1) across auto and the models under the models path, in name order."""
        choices = [AUTO, *self.models()]
        return choices[min(len(choices) - 1, int(fraction * len(choices)))]

    async def _apply_style(self, style: str) -> None:
        if style == AUTO:
            await self._apply_auto()
            return
        try:
            path = self._model_path(style, "style") if style else self.model.path
        except ValueError as error:
            self.event("error", {"reason": str(error)})
            return
        self.load_model_soon(path, style or None, style=style)

    async def _apply_auto(self) -> None:
        try:
            styles = await off_loop(self._prepare_styles)
        except (ModelError, TimeoutError) as error:
            log.error("style not changed: %s", error)
            self.event("error", {"reason": f"style {AUTO!r}: {_unplaced(str(error), self._models_root())}"})
            return
        self.timing.submit(lambda now: self.engine.set_styles(styles) or [])
        self.style = AUTO
        self.changed()
        log.info("style auto: %s", ", ".join(styles.names))

    def _prepare_styles(self) -> Styles:
        """Every model under the models path, loaded and primed (in a loader thread)."""
        return Styles(models_under(self._models_root()))

    def load_model_soon(self, path: Path, name: str | None = None, style: str | None = None) -> None:
        """Load the model at ``path`` in a task of the loop, then switch to it; a failure is an error event that names
        the model as ``name`` (as it was asked for; its folder's name by default), not its path on this machine.
        With ``style`` (a model's name, or "" for the configured model alone) it answers alone and becomes the
        style once it has loaded.

        Called in the loop. While a model loads, only the last one asked for waits: a flood of ``set/model``
        loads two models at most, one after the other, and the last one asked for is the one that plays.
        """
        waiting, self._model_wanted = self._model_wanted, (path, name, style)
        if waiting is not None:
            self.dropped.add("model changes replaced by a later one before they loaded")
        if not self._model_loading:
            self._model_loading = True
            self._schedule(self._load_wanted())

    async def _load_wanted(self) -> None:
        try:
            while self._model_wanted is not None:
                (path, name, style), self._model_wanted = self._model_wanted, None
                await self._load_model(path, name, style)
        finally:
            self._model_loading = False

    async def _load_model(self, path: Path, name: str | None = None, style: str | None = None) -> None:
        """Load the model at ``path`` and switch to it (answering alone, as ``style``, when one is given), or leave
        the running one with an error event that names the model as ``name`` (its folder's name by default) and
        none of the folders of this machine."""
        name = path.name if name is None else name
        try:
            model = await off_loop(self._prepare_model, path)
        except (ModelError, TimeoutError) as error:
            log.error("%s not changed: %s", "model" if style is None else "style", error)
            asked = f"model {name!r}" if style is None else f"style {name!r}"
            self.event("error", {"reason": f"{asked}: {_unplaced(str(error), path, 'its folder')}"})
            return

        def switch(now: float) -> list:
            if style is not None:
                self.engine.set_styles(None)
            return self.engine.set_model(model) or []

        self.timing.submit(switch)
        self.model = model
        if style is not None:
            self.style = style
            self.changed()
        log.info("model %s loaded; it answers from the next response", path)

    def _prepare_model(self, path: Path) -> Model:
        """Load a model and prime its LSTM (in a loader thread): the timing thread only swaps it in."""
        model = load_model(path)
        self.runtimes.prepare(model)
        return model

    # --- what the daemon tells MQTT and systemd ---

    def event(self, name: str, data: dict) -> None:
        """Publish an event, when MQTT runs."""
        if self.control_plane is not None:
            self.control_plane.publish_event(name, data)

    def changed(self) -> None:
        """State changed: tell MQTT and systemd (the status line only when it reads differently)."""
        if self.control_plane is not None:
            self.control_plane.publish_state()
        status = self.status_line()
        if status != self._status:
            self._status = status
            self.notifier.status(status)

    def ready(self) -> str:
        """Tell systemd the daemon is ready, with the status line; returns the line."""
        self._status = self.status_line()
        self.notifier.ready(self._status)
        return self._status

    def status_line(self) -> str:
        """One line: the mode, tempo, temperature and ports (systemctl status shows it)."""
        settings, names = self.engine.settings, self.ports.names()
        ports = ", ".join(
            f"{side} {name or 'waiting for ' + repr(self.ports.wanted()[side])}" for side, name in names.items()
        )
        return f"{self.engine.mode}, {settings.bpm:g} BPM, temperature {settings.temperature:g}, {ports}"


def _unplaced(text: str, path: Path, placeholder: str = "the models path") -> str:
    """``text`` (an error) with ``path`` and the folders above it left out: MQTT clients learn nothing of the folders
    on this machine (``path/bad/model.json`` is ``bad/model.json``, ``path`` alone ``placeholder``)."""
    return text.replace(f"{path}{os.sep}", "").replace(str(path), placeholder)
