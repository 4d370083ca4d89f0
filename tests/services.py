"""Real services for tests: a JACK server with the dummy driver and a mosquitto broker on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def require_binary(name: str, package: str) -> str:
    """Path of ``name``; skip without it, but fail under CI=true (a missing install step must show)."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found: install the Debian package {package} (make test does)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def terminate(process: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


class JackServer:
    """``jackd --no-realtime -d dummy`` under a unique server name (JACK_DEFAULT_SERVER)."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        jackd = require_binary("jackd", "jackd2")
        self.process = subprocess.Popen(
            [jackd, "-n", self.name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "64"],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"},
        )
        wait_for(self._ready, 10, f"jackd server {self.name} ({self.log})")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"jackd exited: {self.log.read_text()}")
        env = {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}
        return subprocess.run(["jack_lsp"], env=env, capture_output=True).returncode == 0

    def ports(self) -> list[str]:
        env = {**os.environ, "JACK_DEFAULT_SERVER": self.name}
        out = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True).stdout
        return out.split("\n")

    def stop(self) -> None:
        terminate(self.process)


class Mosquitto:
    """A mosquitto broker on a free loopback port, with a config file of its own."""

    def __init__(self, directory: Path, password: tuple[str, str] | None = None) -> None:
        self.directory = directory
        self.host = "127.0.0.1"
        self.port = free_port()
        self.password = password
        self.process: subprocess.Popen | None = None

    def _config(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to its own user, who cannot read the test's files
        if self.password:
            passwd = self.directory / "passwd"
            user, secret = self.password
            subprocess.run(
                [require_binary("mosquitto_passwd", "mosquitto"), "-b", "-c", str(passwd), user, secret], check=True
            )
            passwd.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> None:
        mosquitto = require_binary("mosquitto", "mosquitto")
        config = self._config()
        self.process = subprocess.Popen(
            [mosquitto, "-c", str(config)],
            stdout=(self.directory / "mosquitto.log").open("a"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self._listening, 10, f"mosquitto on port {self.port}")

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {(self.directory / 'mosquitto.log').read_text()}")
        try:
            socket.create_connection((self.host, self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        terminate(self.process)


class Daemon:
    """`improvd run` in a subprocess with its log in a file."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict | None = None, mqtt: bool = False) -> None:
        self.log = tmp_path / f"improvd-{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", "improvd.cli", "run", "--midi-api", "jack", *args]
        command += [] if mqtt else ["--no-mqtt"]
        self.process = subprocess.Popen(
            command, stderr=self.log.open("w"), env={**os.environ, **(env or {})}, cwd=Path(__file__).parent.parent
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_log(self, needle: str, timeout: float = 15) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited ({self.process.returncode}):\n{self.text()}")
            return needle in self.text()

        wait_for(seen, timeout, f"{needle!r} in the daemon log")

    def stop(self) -> int:
        """SIGTERM, then its exit status; the log goes to stdout, which pytest shows for a failed test."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        finally:
            print(f"--- {self.log.name}\n{self.text()}")
