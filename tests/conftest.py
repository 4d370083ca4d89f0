"""Shared fixtures: real JACK MIDI ports, a real mosquitto, real Essen tunes, a tiny trained model."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from tests.services import JackServer, Mosquitto


@pytest.fixture(autouse=True)
def collector_back_on():
    """A timing thread run in virtual time and left near a send holds the garbage collector off (improvd.daemon.quiet
    CollectorPause); the next test gets it back."""
    yield
    gc.enable()


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory) -> JackServer:
    """A JACK server with the dummy driver; JACK_DEFAULT_SERVER points this process (and children) at it."""
    name = f"improvd-test-{os.getpid()}"
    server = JackServer(name, tmp_path_factory.mktemp("jack") / "jackd.log")
    server.start()
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    yield server
    server.stop()
    if previous is None:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
    else:
        os.environ["JACK_DEFAULT_SERVER"] = previous


@pytest.fixture(scope="session")
def jack_midi(jack_server):
    """mido's rtmidi backend on the JACK API: real MIDI ports on the test's JACK server."""
    import mido

    return mido.Backend("mido.backends.rtmidi/UNIX_JACK")


@pytest.fixture
def mosquitto(tmp_path) -> Mosquitto:
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_with_password(tmp_path) -> Mosquitto:
    broker = Mosquitto(tmp_path, password=("improvd", "s3cret-test"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny LSTM really trained on Essen children's songs, exported in improvd's format (needs tensorflow)."""
    pytest.importorskip("keras", reason="the train extra (tensorflow) builds the tiny test model")
    from tests.tiny_model import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
