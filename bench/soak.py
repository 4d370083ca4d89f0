"""Soak: the daemon plays and is steered for a long time; does its memory grow?

A JACK dummy server and a mosquitto of their own; `improvd run` with the
shipped model; a player that plays Essen phrases into it (with a little
malformed MIDI between them), a synth port that counts the answers, and
``mosquitto_pub`` steering temperature and tempo every few seconds. RssAnon
(the daemon's own heap, from /proc) is sampled every ``--every`` seconds. The
growth is measured from the end of a warm-up (a fifth of the run, at least one
minute when the run is long enough) and split into halves: growth that levels
off shows in a second half smaller than the first. JSON on stdout.

    python bench/soak.py --minutes 60
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rtmidi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import phrases
from tests.services import JackServer, Mosquitto, wait_for

BPM = 240
JUNK = ([0xE0, 0x40], [0x90, 60], [0xF0, 0x01, 0x02, 0xF7], [0xB0, 200, 1])  # dropped and counted by the daemon


def rss_anon_kb(pid: int) -> int:
    return int(re.search(r"^RssAnon:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))


def connect(kind: type, wanted: str) -> rtmidi.MidiIn | rtmidi.MidiOut:
    """A JACK port of this process connected to the daemon's port whose name ends with ``wanted``."""
    handle = kind(rtmidi.API_UNIX_JACK, name="soak")
    names = handle.get_ports()
    index = next(i for i, name in enumerate(names) if name.startswith("improvd") and name.endswith(wanted))
    handle.open_port(index)
    return handle


def play(player: rtmidi.MidiOut, phrase: list[tuple[int, float]]) -> None:
    for pitch, quarters in phrase:
        player.send_message([0x90, pitch, 80])
        time.sleep(quarters * 60 / BPM * 0.9)
        player.send_message([0x80, pitch, 0])
        time.sleep(quarters * 60 / BPM * 0.1)


def steer(broker: Mosquitto) -> None:
    topic, value = random.choice([("temperature", f"{random.uniform(0.5, 1.5):.2f}"), ("bpm", str(BPM))])
    subprocess.run(
        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-t", f"improvd/soak/set/{topic}", "-m", value],
        check=False,
    )


def soak(minutes: float, every: float, workdir: Path) -> dict:
    jack = JackServer(f"improvd-soak-{os.getpid()}", workdir / "jackd.log")
    broker = Mosquitto(workdir)
    jack.start()
    broker.start()
    os.environ.update(JACK_DEFAULT_SERVER=jack.name, JACK_NO_START_SERVER="1")
    log = workdir / "improvd.log"
    command = [sys.executable, "-m", "improvd.cli", "run", "--midi-api", "jack", "--bpm", str(BPM)]
    command += ["--phrase-end-steps", "4", "--mqtt-host", broker.host, "--mqtt-port", str(broker.port)]
    daemon = subprocess.Popen([*command, "--instance", "soak"], stderr=log.open("w"))
    answers = [0]
    try:
        wait_for(lambda: "ready" in log.read_text(), 30, "the daemon to be ready")
        player = connect(rtmidi.MidiOut, ":in")
        synth = connect(rtmidi.MidiIn, ":out")
        synth.set_callback(lambda event, _: answers.__setitem__(0, answers[0] + (event[0][0] & 0xF0 == 0x90)))
        tunes, samples = phrases(), []
        started = time.monotonic()
        next_sample = started
        while time.monotonic() - started < minutes * 60:
            if daemon.poll() is not None:
                break
            if time.monotonic() >= next_sample:
                samples.append((round((time.monotonic() - started) / 60, 2), rss_anon_kb(daemon.pid)))
                next_sample += every
            play(player, random.choice(tunes))
            for data in JUNK:
                player.send_message(data)
            steer(broker)
            time.sleep(16 * 15 / BPM)  # the answer plays
        samples.append((round((time.monotonic() - started) / 60, 2), rss_anon_kb(daemon.pid)))
        player.delete()
        synth.delete()
    finally:
        if daemon.poll() is None:
            daemon.terminate()
        code = daemon.wait(10)
        broker.stop()
        jack.stop()
    return report(samples, minutes, answers[0], code, log)


def report(samples: list[tuple[float, int]], minutes: float, answers: int, code: int, log: Path) -> dict:
    warm = min(1.0, minutes / 5) if minutes >= 5 else minutes / 5
    kept = [s for s in samples if s[0] >= warm] or samples[-1:]
    middle = kept[len(kept) // 2]
    return {
        "minutes": round(samples[-1][0], 2),
        "warm_up_minutes": round(warm, 2),
        "rss_anon_kb_after_warm_up": kept[0][1],
        "rss_anon_kb_at_end": kept[-1][1],
        "growth_kb": kept[-1][1] - kept[0][1],
        "growth_kb_first_half": middle[1] - kept[0][1],
        "growth_kb_second_half": kept[-1][1] - middle[1],
        "growth_kb_per_minute": round((kept[-1][1] - kept[0][1]) / max(kept[-1][0] - kept[0][0], 1e-9), 1),
        "answer_notes_heard": answers,
        "daemon_exit_status": code,
        "dropped_lines_in_log": sum("dropped since the last report" in line for line in log.read_text().splitlines()),
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long to play (default 60)")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between RSS samples (default 15)")
    args = parser.parse_args()
    for binary in ("jackd", "mosquitto", "mosquitto_pub"):
        if shutil.which(binary) is None:
            print(f"{binary} not found: sudo apt-get install jackd2 mosquitto mosquitto-clients", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(soak(args.minutes, args.every, Path(folder)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
