"""Faults inside the daemon, in this process: model switches, hanging loads, model paths, background tasks."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest

from improvd.core.model import DEFAULT_MODEL_DIR, ModelError
from improvd.core.runtime import LSTMRuntime
from improvd.daemon import controller, offloop, service
from tests.helpers import write_model
from tests.inprocess import make_daemon
from tests.services import wait_for


def copy_of_shipped_model(directory: Path, song_gap: int) -> Path:
    directory.mkdir()
    shutil.copy(DEFAULT_MODEL_DIR / "weights.npz", directory)
    card = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    card["settings"]["song_gap"] = song_gap
    (directory / "model.json").write_text(json.dumps(card))
    return directory


def test_a_new_model_is_primed_off_the_timing_thread(tmp_path, monkeypatch):
    """Priming a model's song gap inside the timing thread froze it (no answers, no watchdog) for a huge gap."""
    directory = copy_of_shipped_model(tmp_path / "gap64", 64)
    daemon = make_daemon()
    steps: Counter[str] = Counter()
    switching = threading.Event()
    step = LSTMRuntime.step

    def counted(runtime, index):
        if switching.is_set() or threading.current_thread().name != "improvd-timing":
            steps[threading.current_thread().name] += 1
        return step(runtime, index)

    set_model = daemon.engine.set_model

    def watched_set_model(model):
        switching.set()
        try:
            set_model(model)
        finally:
            switching.clear()

    monkeypatch.setattr(LSTMRuntime, "step", counted)
    daemon.engine.set_model = watched_set_model

    async def switch() -> None:
        daemon._loop = asyncio.get_running_loop()
        await daemon.controller._load_model(directory)

    daemon.timing.start()
    try:
        asyncio.run(switch())
        wait_for(lambda: daemon.engine.model.path == directory, 10, "the engine to switch model")
    finally:
        daemon.timing.stop()
    assert steps["improvd-load"] >= 64  # primed in the loader thread
    assert steps["improvd-timing"] < 8  # the timing thread only re-hears the call's last notes


def test_a_model_load_that_hangs_never_holds_the_exit(monkeypatch):
    """A weights.npz that blocks (a FIFO) made SIGTERM hang after "stopped": the executor was waited for."""
    release = threading.Event()
    monkeypatch.setattr(controller, "load_model", lambda path: release.wait(60))
    daemon = make_daemon()

    async def scenario() -> None:
        daemon._loop = asyncio.get_running_loop()
        daemon.controller.load_model_soon(Path("/nowhere"))
        await asyncio.sleep(0.2)  # the load has started and hangs; the daemon exits now

    runner = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    runner.start()
    runner.join(10)
    hung = runner.is_alive()
    release.set()
    assert not hung


def test_a_load_that_takes_too_long_is_an_error_event(monkeypatch):
    monkeypatch.setattr(offloop, "LOAD_TIMEOUT", 0.1)
    release = threading.Event()
    monkeypatch.setattr(controller, "load_model", lambda path: release.wait(60))
    daemon = make_daemon()
    events: list[tuple[str, dict]] = []
    daemon.controller.event = lambda name, data: events.append((name, data))

    async def scenario() -> None:
        daemon._loop = asyncio.get_running_loop()
        await daemon.controller._load_model(Path("/nowhere"))

    asyncio.run(scenario())
    release.set()
    assert events == [("error", {"reason": "model 'nowhere': _prepare_model took over 0.1 s"})]


def test_set_model_stays_inside_the_models_path_and_names_no_folders(tmp_path):
    models = tmp_path / "models"
    write_model(models / "good")
    (models / "link").symlink_to(write_model(tmp_path / "outside"))
    daemon = make_daemon({"models_path": str(models)})
    assert daemon.controller._model_path("good") == (models / "good").resolve()
    for name in ("link", "missing"):
        with pytest.raises(ValueError) as error:
            daemon.controller._model_path(name)
        assert str(error.value) == f"model {name!r}: no such model under the models path"


def test_background_tasks_are_kept_and_their_failure_ends_the_daemon():
    daemon = make_daemon()

    async def broken() -> None:
        raise RuntimeError("a bug")

    async def scenario() -> bool:
        daemon._loop = asyncio.get_running_loop()
        daemon._stopped = asyncio.Event()
        task = daemon._spawn(broken())
        kept = task in daemon._background
        await asyncio.wait_for(daemon._stopped.wait(), 5)
        return kept

    assert asyncio.run(scenario())
    assert daemon._failed and not daemon._background


def test_the_offline_message_has_its_whole_timeout_at_a_clean_stop():
    """The retained offline could be cut by a 0.3 s stop grace while its publish waited up to 2 s."""
    daemon = make_daemon()
    said: list[str] = []

    async def plane() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.4)  # a slow broker acknowledges within the publish timeout (0.5 s)
            said.append("offline")
            raise

    async def scenario() -> int:
        daemon._loop = asyncio.get_running_loop()
        daemon._stopped = asyncio.Event()
        daemon.timing.start()
        mqtt_task = asyncio.get_running_loop().create_task(plane())
        await asyncio.sleep(0.05)
        return await daemon._shutdown([], mqtt_task)

    assert service.OFFLINE_TIMEOUT == 0.5
    assert asyncio.run(scenario()) == 0
    assert said == ["offline"]


def test_a_flood_of_model_changes_loads_the_last_one_asked_for_and_no_more_than_two(monkeypatch):
    """Every ``set/model`` started a load of its own: a flood of them loaded as many models at once."""
    started: list[Path] = []
    release = threading.Event()

    def load(path: Path) -> Path:
        started.append(path)
        release.wait(10)
        raise ModelError(f"{path.name} is no model")

    monkeypatch.setattr(controller, "load_model", load)
    daemon = make_daemon()
    daemon.controller.event = lambda name, data: None

    async def scenario() -> None:
        daemon._loop = asyncio.get_running_loop()
        for k in range(500):
            daemon.controller.load_model_soon(Path(f"/models/m{k}"))
            for _ in range(1000 if k == 0 else 0):  # until the first load has begun
                if started:
                    break
                await asyncio.sleep(0.01)
        release.set()
        while daemon._background:  # the loading tasks
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert started == [Path("/models/m0"), Path("/models/m499")]
    assert daemon.dropped.take() == {"model changes replaced by a later one before they loaded": 498}


def test_a_slow_look_at_the_ports_holds_neither_the_loop_nor_the_timing_thread(monkeypatch):
    """Reconnecting a port and checking the JACK server are round trips to the server, seconds on a busy one; the
    port watcher made them on the asyncio loop (MQTT, the systemd watchdog and signals waited). Now a look at the
    ports runs in a thread of its own and what it found comes back to the loop."""
    monkeypatch.setattr(service, "PORT_POLL", 0.001)
    daemon = make_daemon()
    looking, answered = threading.Event(), threading.Event()
    waited_out: list[bool] = []

    def slow_poll() -> list:
        if looking.is_set():
            return []
        looking.set()
        if not answered.wait(10):  # the server answers once the loop and the timing thread have run meanwhile
            waited_out.append(True)
        return [("port_back", "output", "synth:in")]

    daemon.ports.poll = slow_poll
    events: list[str] = []
    daemon.controller.event = lambda name, data: events.append(name)

    async def run_then_stop() -> int:
        running = asyncio.create_task(daemon.run())
        while not looking.is_set():
            await asyncio.sleep(0.001)
        ticked = threading.Event()
        daemon.timing.submit(lambda now: ticked.set() or [])
        while not ticked.is_set():
            await asyncio.sleep(0.001)  # the loop runs meanwhile, and the timing thread does what it is given
        answered.set()
        while "port_back" not in events:
            await asyncio.sleep(0.001)
        daemon._stopped.set()
        return await running

    assert asyncio.run(run_then_stop()) == 0
    assert waited_out == []


def test_every_look_at_the_ports_is_made_by_one_long_lived_thread(monkeypatch):
    """Each look at the ports, every half second, started a thread of its own (about 0.3-1% of a core while idle,
    docs/performance.md). Now one thread, the port watcher, makes them all."""
    monkeypatch.setattr(service, "PORT_POLL", 0.001)
    daemon = make_daemon()
    lookers: list[threading.Thread] = []

    def probe() -> list:
        lookers.append(threading.current_thread())  # kept: a thread ended is not taken for a new one
        return []

    daemon.ports.probe = probe

    async def run_then_stop() -> int:
        running = asyncio.create_task(daemon.run())
        while len(lookers) < 20:
            await asyncio.sleep(0.001)
        daemon._stopped.set()
        return await running

    assert asyncio.run(run_then_stop()) == 0
    assert len(set(lookers)) == 1 and lookers[0].name == "improvd-ports"


def test_a_look_at_the_ports_that_hangs_ends_the_daemon_and_never_holds_its_exit(monkeypatch):
    """A libjack call that waits for a wedged JACK server holds only the port watcher: the loop notices the look
    has taken over LOAD_TIMEOUT, says so in an error event and exits with status 1, the look still hanging."""
    monkeypatch.setattr(service, "PORT_POLL", 0.001)
    monkeypatch.setattr(service, "WATCHER_CHECK", 0.01)
    monkeypatch.setattr(service, "LOAD_TIMEOUT", 0.1)
    daemon = make_daemon()
    release = threading.Event()
    daemon.ports.probe = lambda: release.wait(60) and []
    events: list[tuple[str, dict]] = []
    daemon.controller.event = lambda name, data: events.append((name, data))
    try:
        assert asyncio.run(daemon.run()) == 1
        assert daemon.watcher.looking_for() > 0.1  # it hangs still
    finally:
        release.set()
    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["reason"].startswith("the MIDI system does not answer: a look at the ports has taken")


def test_an_output_client_replaced_is_one_error_event_and_all_notes_off(monkeypatch):
    """What the port watcher found: improvd's output client stopped running and a new one took its place
    (``MidiPorts._reopen``). The daemon plays on: one error event with the count, all notes off on the new
    client (the stopped one may have sent a note_on whose note_off it never sent)."""
    daemon, errors, submitted = replaced_client(monkeypatch, "output", "improvd-04:out")
    assert len(errors) == 1 and errors[0]["output_reopened"] == 1
    assert "output client stopped running; replaced by improvd-04:out" in errors[0]["reason"]
    assert daemon.engine.all_notes_off in submitted


def test_an_input_client_replaced_is_one_error_event_and_every_key_up(monkeypatch):
    """A play test on a loaded machine: improvd's input client stopped running and the daemon exited mid-session.
    Now a new one takes its place (``MidiPorts._reopen``): one error event with the count, and every key counts as
    up with every note passed through released (a note_off may have been lost in the stopped client)."""
    daemon, errors, submitted = replaced_client(monkeypatch, "input", "improvd-04:in")
    assert len(errors) == 1 and errors[0]["input_reopened"] == 1
    assert "input client stopped running; replaced by improvd-04:in" in errors[0]["reason"]
    assert daemon.engine.input_lost in submitted


def replaced_client(monkeypatch, direction: str, port: str):
    """A daemon whose port watcher reports once that ``direction``'s JACK client was replaced by ``port``, run
    until its error event: the daemon, the error events' data, the work given to the timing thread."""
    monkeypatch.setattr(service, "PORT_POLL", 0.001)
    daemon = make_daemon()
    reported = [(f"{direction}_reopened", direction, port)]
    setattr(daemon.ports, f"{direction}_reopened", 1)
    daemon.ports.probe = lambda: [reported.pop()] if reported else []
    events: list[tuple[str, dict]] = []
    daemon.controller.event = lambda name, data: events.append((name, data))
    submitted: list = []
    submit = daemon.timing.submit
    daemon.timing.submit = lambda work: submitted.append(work) or submit(work)

    async def run_then_stop() -> int:
        running = asyncio.create_task(daemon.run())
        while not [name for name, _ in events if name == "error"]:
            await asyncio.sleep(0.001)
        daemon._stopped.set()
        return await running

    assert asyncio.run(run_then_stop()) == 0
    return daemon, [data for name, data in events if name == "error"], submitted
