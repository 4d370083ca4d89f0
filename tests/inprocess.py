"""The daemon in this process, without MIDI ports or a broker: fake ports record what it sends."""

from __future__ import annotations

import argparse
import functools

from improvd.core.model import DEFAULT_MODEL_DIR, Model, load_model
from improvd.daemon import config as configuration
from improvd.daemon.service import Daemon
from improvd.daemon.tally import Tally


class FakePorts:
    """What the daemon needs of ``improvd.daemon.ports.MidiPorts``; ``sent`` holds every message sent."""

    def __init__(self) -> None:
        self.sent: list[list[int]] = []
        self.dropped = Tally()
        self.failure: BaseException | None = None

    def send(self, data: list[int]) -> bool:
        self.sent.append(list(data))
        return True

    def read_before_tick(self) -> bool:
        return False

    def output_cycles(self) -> int | None:
        return None  # as under ALSA: no JACK cycle to wait for

    def names(self) -> dict[str, str | None]:
        return {"input": "virtual", "output": "virtual"}

    def wanted(self) -> dict[str, str]:
        return {"input": "", "output": ""}

    def poll(self) -> list:
        return []

    def probe(self) -> list:
        return []

    def open(self) -> None:
        pass

    def close(self) -> str | None:
        return None


@functools.cache
def shipped_model() -> Model:
    return load_model(DEFAULT_MODEL_DIR)


def make_daemon(table: dict | None = None, config_file: str | None = None) -> Daemon:
    """A daemon with the shipped model and fake ports; its timing thread is not started."""
    args = argparse.Namespace(no_mqtt=True, config=config_file)
    config = configuration.load(args) if config_file else configuration.from_table(table or {}, args)
    return Daemon(config, shipped_model(), FakePorts(), args)
