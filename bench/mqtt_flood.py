"""MQTT flood: how late a 10 ms timer in the control plane's asyncio loop fires, without and with 1,000 msg/s.

A real mosquitto on a free loopback port, a ControlPlane (which parses and
checks each message with improvd.daemon.control, as in the daemon) steering a
controller that only stores the changes, and a publisher in another process
sending ``set/temperature`` at 1,000 messages a second. The figure is the
lateness of a timer that wants to wake every 10 ms in the same asyncio loop (in
the daemon the loop of the port watcher, the systemd watchdog and the
statistics; notes are sent by the timing thread, whose lateness under this
flood bench/timing.py measures), as p50/p99/max in ms for both runs and their
ratio, as JSON.

    python bench/mqtt_flood.py [--seconds 5] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from improvd.daemon.mqtt import ControlPlane, MqttConfig

TICK = 0.010


class Controller:
    """Stores each change; the control plane has parsed and checked it with improvd.daemon.control first."""

    def __init__(self) -> None:
        self.settings = {"temperature": 1.0, "bpm": 120.0, "enabled": True, "mode": "listening"}
        self.applied = 0

    def state(self) -> dict:
        return dict(self.settings)

    def apply(self, changes: dict) -> None:
        self.settings.update(changes)
        self.applied += 1

    def command(self, name: str) -> None:
        pass


def flood(stop: threading.Event, port: int, rate: int = 1000, instance: str = "bench") -> int:
    """Publish ``set/temperature`` at ``rate`` a second until ``stop`` is set; returns how many were sent.

    bench/timing.py runs it in a process of its own against the daemon's instance.
    """
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    start, sent = time.monotonic(), 0
    while not stop.is_set():
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
        client.publish(f"improvd/{instance}/set/temperature", f"{0.1 + (sent % 150) / 100:.2f}", qos=1)
        sent += 1
    client.loop_stop()
    client.disconnect()
    return sent


def _flood_for(port: int, rate: int, seconds: float) -> None:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    flood(stop, port, rate)


async def lateness(seconds: float) -> list[float]:
    late = []
    loop = asyncio.get_running_loop()
    target = loop.time() + TICK
    end = loop.time() + seconds
    while target < end:
        await asyncio.sleep(max(0.0, target - loop.time()))
        late.append((loop.time() - target) * 1000)
        target += TICK
    return late


def figures(late: list[float]) -> dict:
    values = np.array(late)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
    }


async def bench(port: int, rate: int, seconds: float) -> dict:
    controller = Controller()
    config = MqttConfig.from_table({"host": "127.0.0.1", "port": port, "instance": "bench"})
    plane = ControlPlane(config, controller, "bench")
    task = asyncio.ensure_future(plane.run())
    while not plane.connected:
        await asyncio.sleep(0.05)
    quiet = await lateness(seconds)
    publisher = multiprocessing.Process(target=_flood_for, args=(port, rate, seconds))
    publisher.start()
    busy = await lateness(seconds)
    publisher.join()
    await asyncio.sleep(0.5)
    task.cancel()
    quiet_figures, busy_figures = figures(quiet), figures(busy)
    return {
        "case": "mqtt_flood",
        "rate_per_s": rate,
        "seconds": seconds,
        "applied": controller.applied,
        "quiet": quiet_figures,
        "flood": busy_figures,
        "p99_ratio": busy_figures["p99_ms"] / max(quiet_figures["p99_ms"], 1e-3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=1000)
    args = parser.parse_args()
    mosquitto = shutil.which("mosquitto")
    if mosquitto is None:
        print("mosquitto not found: sudo apt-get install mosquitto", file=sys.stderr)
        return 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "mosquitto.conf"
        config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen([mosquitto, "-c", str(config)], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            result = asyncio.run(bench(port, args.rate, args.seconds))
        finally:
            broker.terminate()
            broker.wait(5)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
