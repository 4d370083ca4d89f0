"""The daemon's timing on real JACK ports: send lateness, received onsets, answer delay, RSS, CPU, start to READY.

Starts a JACK dummy server (64-frame period at 48 kHz) and a mosquitto broker on loopback and, for 120 and
240 BPM, quiet, with a flood of 10,000 junk MIDI messages a second into its input, and with a flood of 1,000
MQTT ``set/temperature`` messages a second, runs ``improvd run`` with a model and plays the first phrases of
real Essen tunes into it as a player would, for a set time. Idle CPU is measured after start, before anything
was played, and again after playing. Prints JSON with the figures and the targets; the flood runs are also
given as ratios to the quiet run at the same tempo.

Beside each run, over the same seconds, bench/reference.py measures the floor: a bare python-rtmidi program
with the daemon's two JACK clients, playing a legato line of 16ths (a note_off and a note_on due together on each
step, as the daemon sends a line) with the daemon's timer. Each run gives its
figures as ratios to the reference's (send lateness and onset error p99) and its idle CPU over the
reference's: what improvd adds to what JACK and this machine cost any Python MIDI program at that moment.
``stolen_cpu_percent_while_playing`` is the CPU time the hypervisor gave to other guests meanwhile (on a
virtual machine, stalls of several milliseconds that no program inside can avoid).

The daemon runs as its systemd unit runs it: without capabilities and with the unit's limit on locked
memory. A JACK client may lock the server's whole port graph into its memory (libjack tries, and succeeds for
root or a user allowed unlimited locked memory); ``rss_with_jack_graph_locked_mb`` is a start as root.

Four more cases: ``metronome`` (120 BPM, quiet, ``--metronome``: the clicks' send lateness and received onset
error beside all sends'), ``clockout`` (240 BPM, quiet, ``--clock-out``: how late each MIDI clock pulse reaches
the synth while playing, through the phrase ends, against the pulse grid its earliest pulses set; goal: p99 at
most ``PULSE_GOAL_MS``; the reference sends pulses too, from the same thread as its notes and through the
same JACK clients, and ``pulse_p99_ratio_to_reference`` compares the two; its send lateness counts its pulses with
its notes, as the daemon's does) and ``follow`` (``--clock follow`` at 110 BPM while the player plays 4-bar calls at 96
BPM with 8 ms of jitter: the answer's onsets against the player's grid carried on from each call, and their
share on its 8ths). ``midiclock`` (``--clock midi`` under a master speeding up from 120 BPM by 5% each 20 s:
the answer's onsets against the master's step pulses, as the synth hears both). ``--cases`` picks among tempo,
metronome, clockout, follow and midiclock. The flooded runs play for ``--flood-seconds`` (120 by default: a
flood's rare late send needs minutes to show), the others for ``--seconds``.

    PYTHONPATH=. .venv/bin/python bench/timing.py --json [--model DIR] [--seconds 20] [--flood-seconds 120]
        [--cases clockout,follow,midiclock]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import multiprocessing.synchronize
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import rtmidi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import mqtt_flood
from improvd.core.model import DEFAULT_MODEL_DIR
from tests.services import JackServer, Mosquitto

PHRASE_END_STEPS = 4
RESPONSE_STEPS = 16
MQTT_INSTANCE = "bench"
REFERENCE_CHANNEL = 16  # the daemon answers on channel 1
CLICK_CHANNEL = 10  # the metronome's
FOLLOW_BPM = 96  # the player's tempo in the follow case, off the daemon's 110 BPM grid
FOLLOW_JITTER = 0.008  # seconds, each way
MASTER_BPM, MASTER_RAMP = 120, 0.05  # the midiclock case's master: from 120 BPM, 5% faster each 20 s
MASTER_CHANNEL = 3  # its player's notes, which the synth hears too and sets apart
PULSE_GOAL_MS = 1.0  # the clockout case: MIDI clock pulses at most this late at p99
QUEUE = 16384  # messages rtmidi keeps for the synth's reader between its looks
POLL = 0.0005  # seconds between the synth's looks while nothing comes
REFERENCE_PULSE = 0xF9  # bench/reference.py's pulses
IDLE_SECONDS = 15  # CPU time is counted in 10 ms ticks: 15 s resolves 0.07% of a core
SETTLE_SECONDS = 4  # after playing: the last answer ends and the input reader goes idle (midi.IDLE_AFTER)
UNIT = Path(__file__).resolve().parent.parent / "systemd" / "improvd.service"
TUNES = ["kinder0#1", "kinder0#2", "kinder0#3", "kinder0#4", "kinder0#5"]
TARGETS = {
    "send_lateness_p99_ms": 1.0,
    "onset_error_p99_ms": 2.0,
    "rss_mb": 150,
    "start_to_ready_s": 1.5,
    "idle_cpu_percent": 2.0,
}
GOALS = {  # against the reference measured beside each run (issue 17): at most these
    "send_p99_ratio_to_reference": 1.5,
    "onset_p99_ratio_to_reference": 1.5,
    "idle_cpu_percent_over_reference": 0.5,
}


def calls(bars: int = 4) -> list[list[tuple[int, float]]]:
    """The first ``bars`` bars of 4/4 (in quarters) of TUNES, rests as pitch None: calls long enough to follow."""
    from improvd.offline.notation import essen_tune, melody_of

    result = []
    for ident in TUNES:
        tune, call, position = essen_tune(ident), [], 0.0
        for note in melody_of(tune.score, tune.ident):
            if position >= 4 * bars:
                break
            call.append((note.pitch, float(note.quarter_length)))
            position += note.quarter_length
        result.append(call)
    return result


def phrases() -> list[list[tuple[int, float]]]:
    from improvd.offline.notation import essen_tune, melody_of

    result = []
    for ident in TUNES:
        tune, phrase = essen_tune(ident), []
        for note in melody_of(tune.score, tune.ident):
            if note.pitch is None:
                break
            phrase.append((note.pitch, float(note.quarter_length)))
        if sum(length for _, length in phrase) >= 2:
            result.append(phrase)
    return result


class Receiver:
    """The synth: a JACK input whose times come from rtmidi's JACK-side deltas, not from when Python reads them.

        The daemon plays on channel 1 and its clicks on CLICK_CHANNEL, the reference on REFERENCE_CHANNEL: their
        onsets are kept apart, and a master's player's notes (MASTER_CHANNEL) are left out. The daemon's MIDI clock
        pulses (F8) are kept apart from the reference's (F9, bench/reference.py ``--clock``).

        A thread of its own reads the port (POLL): a Python callback would run in JACK's process thread and wait
        there for this process's interpreter lock, and a JACK client late in its cycle delays or loses what it hears,
        which would be the bench's lateness, not the daemon's. rtmidi stamps each message in JACK's thread (the
        time its client ran in the cycle that delivered it); the reader maps those stamps onto ``time.monotonic``
        by the smallest offset to the time each was read at (the read nearest its stamp), so a late read moves no
    time.
    """

    def __init__(self) -> None:
        self.port = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="synth", queue_size_limit=QUEUE)
        self.port.ignore_types(timing=False)  # MIDI clock: the daemon's, a master's, the reference's pulses
        self.port.open_virtual_port("in")
        self.onsets: list[float] = []
        self.reference_onsets: list[float] = []
        self.click_onsets: list[float] = []
        self.pulses: list[float] = []  # MIDI clock, from the first after a Start
        self.reference_pulses: list[float] = []  # the reference's (F9)
        self._by_channel = {
            REFERENCE_CHANNEL - 1: self.reference_onsets,
            CLICK_CHANNEL - 1: self.click_onsets,
            MASTER_CHANNEL - 1: [],
        }
        self._stream = 0.0  # the sum of rtmidi's deltas: JACK's clock
        self._offset: float | None = None  # to time.monotonic
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closing.is_set():
            event = self.port.get_message()
            if event is None:
                time.sleep(POLL)
                continue
            self._stream += event[1]
            self._offset = min(time.monotonic() - self._stream, self._offset if self._offset is not None else math.inf)
            self._on(event[0], self._offset + self._stream)

    def _on(self, data: list[int], at: float) -> None:
        if data == [0xFA]:
            self.pulses = []
        elif data == [0xF8]:
            self.pulses.append(at)
        elif data == [REFERENCE_PULSE]:
            self.reference_pulses.append(at)
        elif data[0] & 0xF0 == 0x90 and len(data) > 2 and data[2] > 0:
            self._by_channel.get(data[0] & 0x0F, self.onsets).append(at)

    def close(self) -> None:
        self._closing.set()
        self._reader.join()
        self.port.close_port()
        self.port.delete()


class Reference:
    """bench/reference.py in its own process: the floor measured over the same seconds as the daemon."""

    def __init__(self, bpm: int, clock: bool = False) -> None:
        command = [sys.executable, str(Path(__file__).with_name("reference.py")), "--bpm", str(bpm)]
        command += ["--to", "synth:in", "--channel", str(REFERENCE_CHANNEL)]
        command += ["--clock"] if clock else []
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"bench/reference.py did not start (exit status {self.process.wait()})")
        self.pid = self.process.pid

    def command(self, word: str) -> None:
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()

    def finish(self) -> tuple[list[float], list[float]]:
        """Its send lateness in seconds: its notes', its clock pulses'."""
        output, _ = self.process.communicate(timeout=10)
        sent = json.loads(output)
        return sent["lateness"], sent["clock_lateness"]


def flood(stop: multiprocessing.synchronize.Event) -> None:
    """10,000 messages a second that the daemon must survive: SysEx, clock, other channels, stray note_offs."""
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="flood")
    out.open_virtual_port("out")
    subprocess.run(["jack_connect", "flood:out", "improvd:in"], check=False)
    batch = [[0xF0, 1, 2, 3, 0xF7], [0xF8], [0x91, 60, 100], [0x81, 60, 0], [0x80, 99, 0], [0xA0, 60, 10]] * 17
    while not stop.is_set():
        started = time.monotonic()
        for message in batch[:100]:
            out.send_message(message)
        time.sleep(max(0.0, 0.01 - (time.monotonic() - started)))
    out.close_port()
    out.delete()


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * percent // 100) - 1))] if ordered else 0.0


def stolen_seconds() -> float:
    """CPU seconds the hypervisor gave to other guests (steal, summed over this machine's cores)."""
    return int(Path("/proc/stat").read_text().split()[8]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    return _cpu_of(Path(f"/proc/{pid}/stat").read_text())


def _cpu_of(stat: str) -> float:
    """User plus system CPU seconds from a /proc .../stat line."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_thread(pid: int) -> dict[str, float]:
    """CPU seconds of the daemon's threads: its named ones, the asyncio main thread, and the others by the order
    they were started (``other-1``, ...: rtmidi's JACK clients, input, output and the SysEx prober, each woken
    every JACK period, and the threads of libraries)."""
    seconds: dict[str, float] = {}
    others = 0
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda task: int(task.name)):
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # the thread ended
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if task.name == str(pid):
            key = "main"
        elif name.startswith("improvd-"):
            key = name
        else:
            others += 1
            key = f"other-{others}"
        seconds[key] = seconds.get(key, 0.0) + _cpu_of(stat)
    return seconds


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (JACK's segment) divided among the processes that map them. Reading it
    walks the process's page tables under its memory map's lock (2.6 ms median, up to 11 ms here), which stalls
    any of its threads that maps memory meanwhile: taken only when the daemon is not being timed."""
    return int(re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)[1]) / 1024


def rss_mb(pid: int) -> tuple[float, float]:
    """VmRSS, and the same without shared memory (most of that is JACK's, mapped by every JACK client)."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = {key: int(value) for key, value in re.findall(r"^(VmRSS|RssShmem):\s+(\d+) kB", status, re.M)}
    return kb.get("VmRSS", 0) / 1024, (kb.get("VmRSS", 0) - kb.get("RssShmem", 0)) / 1024


def flood_starter(flood_kind: str | None, broker):
    """Start the flood of this kind; returns its stop event and its process (None when quiet).

    Each flood runs in a process of its own: a thread would share this process's GIL with the JACK callback of
    the receiving port, stall that port's JACK client and so time the notes it hears late, which is not what is
    being measured. The MIDI flood's process is spawned, not forked: a fork would carry this process's JACK
    clients' state into a new one.
    """
    if flood_kind == "midi":
        spawn = multiprocessing.get_context("spawn")
        stop = spawn.Event()
        flooder = spawn.Process(target=flood, args=(stop,))
    elif flood_kind == "mqtt":
        stop = multiprocessing.Event()
        flooder = multiprocessing.Process(target=mqtt_flood.flood, args=(stop, broker.port, 1000, MQTT_INSTANCE))
    else:
        return threading.Event(), None
    flooder.start()
    return stop, flooder


def run_one(
    model: Path, bpm: int, flood_kind: str | None, seconds: float, workdir: Path, tunes: list, broker, extra=()
) -> dict:
    """One daemon run; ``flood_kind`` None (quiet), "midi" (junk into its input) or "mqtt" (set/temperature);
    ``extra`` flags (``--metronome``: the clicks' onset error beside the answer notes')."""
    step = 60 / bpm / 4
    name = "-".join([str(bpm), str(flood_kind), *(flag.lstrip("-") for flag in extra)])
    notify_path = workdir / f"notify-{name}"
    notify = notify_socket(notify_path)
    clock_out = "--clock-out" in extra
    receiver = Receiver()
    reference = Reference(bpm, clock=clock_out)
    player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="player")
    player.open_virtual_port("out")
    log = workdir / f"daemon-{name}.log"
    command = daemon_command(model)
    if flood_kind == "mqtt":
        command += ["--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--instance", MQTT_INSTANCE]
    else:
        command += ["--no-mqtt"]
    command += ["--bpm", str(bpm), "--input", "player", "--output", "synth", "--input-channel", "1"]
    command += ["--phrase-end-steps", str(PHRASE_END_STEPS), "--response-steps", str(RESPONSE_STEPS), "--seed", "1"]
    command += list(extra)
    daemon, ready = start_daemon(as_service() + command, log, notify, notify_path)
    (idle_at_start, idle_threads_at_start), (floor_at_start, _) = idle_cpu(daemon.pid, reference.pid)
    stop_flood, flooder = flood_starter(flood_kind, broker)
    calls, peak_rss, peak_private = [], 0.0, 0.0
    cpu1, busy0, stolen0 = cpu_seconds(daemon.pid), time.monotonic(), stolen_seconds()
    reference.command("play")
    while time.monotonic() - busy0 < seconds:
        phrase = tunes[len(calls) % len(tunes)]
        last_off = play(player, phrase, bpm)
        calls.append((last_off, len(receiver.onsets)))
        time.sleep((PHRASE_END_STEPS + RESPONSE_STEPS + 4) * step)
        rss, private = rss_mb(daemon.pid)  # counters, read without walking its memory
        peak_rss, peak_private = max(peak_rss, rss), max(peak_private, private)
    busy1 = time.monotonic()
    busy_cpu = 100 * (cpu_seconds(daemon.pid) - cpu1) / (busy1 - busy0)
    stolen = 100 * (stolen_seconds() - stolen0) / (time.monotonic() - busy0)
    reference.command("idle")
    pss = pss_mb(daemon.pid)  # once, after the timed playing
    stop_flood.set()
    if flooder is not None:
        flooder.join()
    time.sleep(SETTLE_SECONDS)
    (idle_after, idle_threads), (floor_after, _) = idle_cpu(daemon.pid, reference.pid)
    stop_daemon(daemon)
    floor_lateness, floor_pulse_lateness = reference.finish()
    receiver.close()
    player.close_port()
    player.delete()
    notify.close()
    text = log.read_text()
    lateness = re.findall(
        r"stopped; timing: (\d+) sends, lateness p50 ([\d.-]+) ms, p99 ([\d.-]+) ms, max ([\d.-]+)", text
    )
    sends, p50, p99, peak = (float(x) for x in lateness[-1]) if lateness else (0, 0, 0, 0)
    clicked = re.findall(r"clicks: (\d+) sends, lateness p50 ([\d.-]+) ms, p99 ([\d.-]+) ms, max ([\d.-]+)", text)
    errors, delays = grid_figures(receiver.onsets, calls, step)
    onset_error = spread(errors)
    floor_errors, _ = grid_figures(receiver.reference_onsets, [], step)
    floor = {
        "send_lateness_ms": spread(floor_lateness),
        "onset_error_ms": spread(floor_errors),
        "idle_cpu_percent": floor_after,
        "idle_cpu_percent_before_playing": floor_at_start,
    }
    clicks = {}
    if clock_out:
        pulses = spread(pulse_lateness([t for t in receiver.pulses if busy0 <= t <= busy1], bpm))
        floor["note_send_lateness_ms"] = floor["send_lateness_ms"]
        floor["send_lateness_ms"] = spread(floor_lateness + floor_pulse_lateness)  # as the daemon's: every send
        floor["pulse_send_lateness_ms"] = spread(floor_pulse_lateness)
        floor["pulse_lateness_ms"] = {
            "pulses": len(receiver.reference_pulses),
            **spread(pulse_lateness(receiver.reference_pulses, bpm)),
        }
        clicks["pulse_lateness_ms"] = {"pulses": sum(busy0 <= t <= busy1 for t in receiver.pulses), **pulses}
        clicks["pulse_p99_ratio_to_reference"] = _ratio(pulses["p99"], floor["pulse_lateness_ms"]["p99"])
    if receiver.click_onsets:
        click_errors, _ = grid_figures(receiver.click_onsets, [], step)
        clicks |= {"clicks": len(receiver.click_onsets), "click_onset_error_ms": spread(click_errors)}
    if clicked:
        count, c50, c99, cmax = (float(x) for x in clicked[-1])
        clicks["click_send_lateness_ms"] = {"sends": int(count), "p50": c50, "p99": c99, "max": cmax}
    return clicks | {
        "log": str(log),
        "bpm": bpm,
        "flood": flood_kind,
        "flags": list(extra),
        "calls": len(calls),
        "answered": len(delays),
        "send_lateness_ms": {"sends": int(sends), "p50": p50, "p99": p99, "max": peak},
        "onset_error_ms": onset_error,
        "answer_delay_ms": {"median": round(statistics.median(delays) * 1000, 2) if delays else None},
        "answer_delay_steps": round(statistics.median(delays) / step, 3) if delays else None,
        "rss_mb": round(peak_rss, 1),
        "rss_without_shared_memory_mb": round(peak_private, 1),
        "pss_mb": round(pss, 1),
        "idle_cpu_percent": idle_after,
        "idle_cpu_percent_by_thread": idle_threads,
        "idle_cpu_percent_before_playing": idle_at_start,
        "idle_cpu_percent_before_playing_by_thread": idle_threads_at_start,
        "busy_cpu_percent": round(busy_cpu, 2),
        "stolen_cpu_percent_while_playing": round(stolen, 2),
        "start_to_ready_s": round(ready, 3),
        "exit_status": daemon.returncode,
        "reference": floor,
        "send_p99_ratio_to_reference": _ratio(p99, floor["send_lateness_ms"]["p99"]),
        "onset_p99_ratio_to_reference": _ratio(onset_error["p99"], floor["onset_error_ms"]["p99"]),
        "idle_cpu_percent_over_reference": round(idle_after - floor_after, 2),
    }


PULSE_WINDOW = 96  # pulses fitted together: a second at 240 BPM, over which the dummy server's clock runs steadily


def pulse_lateness(pulses: list[float], bpm: float) -> list[float]:
    """How late each MIDI clock pulse came, in seconds: its time less its place on a 24-a-quarter grid fitted by
    least squares through each PULSE_WINDOW pulses, moved to the earliest of them. The synth times pulses as its
    JACK client ran, so one grid for a whole run would measure that client's wake-ups. Pulses are numbered in
    order (``pulse_numbers``), so neither a lost nor a late one moves those after it."""
    numbers = pulse_numbers(pulses, 60 / bpm / 24)
    lateness: list[float] = []
    for start in range(0, len(pulses) - 1, PULSE_WINDOW):
        ns, ts = numbers[start : start + PULSE_WINDOW], pulses[start : start + PULSE_WINDOW]
        if len(ns) < 2:
            break
        mean_n, mean_t = statistics.fmean(ns), statistics.fmean(ts)
        spread_n = sum((n - mean_n) ** 2 for n in ns)
        slope = sum((n - mean_n) * (t - mean_t) for n, t in zip(ns, ts, strict=True)) / spread_n
        offsets = [t - mean_t - (n - mean_n) * slope for n, t in zip(ns, ts, strict=True)]
        lateness += [offset - min(offsets) for offset in offsets]
    return lateness


def pulse_numbers(pulses: list[float], period: float) -> list[int]:
    """Each pulse's place on the grid, counted from the first: the next, unless the gap before it is two or more
    periods and the gap after it is not short, when the pulses between were lost on the way. A pulse more than
    half a period late has a short gap after it (the next comes on time): it was late, not the one after a
    lost one; counting it so numbered every pulse after it one on, which made a whole window of pulses look a
    period late."""
    gaps = [after - before for before, after in itertools.pairwise(pulses)]
    numbers = [0] * min(1, len(pulses))
    for index, gap in enumerate(gaps):
        following = gaps[index + 1] if index + 1 < len(gaps) else period
        lost = max(0, round(gap / period) - 1) if following >= period / 2 else 0
        numbers.append(numbers[-1] + 1 + lost)
    return numbers


def spread(seconds: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max in milliseconds."""
    return {
        "p50": round(percentile(seconds, 50) * 1000, 3),
        "p90": round(percentile(seconds, 90) * 1000, 3),
        "p99": round(percentile(seconds, 99) * 1000, 3),
        "max": round(max(seconds, default=0) * 1000, 3),
    }


def as_service() -> list[str]:
    """A command prefix giving the daemon its unit's limits: its LimitMEMLOCK and, for root, no capabilities
    (the unit's empty CapabilityBoundingSet; a non-root user has none anyway)."""
    number, unit = re.search(r"^LimitMEMLOCK=(\d+)([KMG]?)$", UNIT.read_text(), re.M).groups()
    prefix = ["prlimit", f"--memlock={int(number) << {'': 0, 'K': 10, 'M': 20, 'G': 30}[unit]}"]
    return prefix + (["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else [])


def daemon_command(model: Path) -> list[str]:
    """The daemon's command line. ``phrase_end = "silence"``: the figures measure the send path against the grid
    (``grid_figures`` counts the pause in PHRASE_END_STEPS); with ``"music"`` the answer to a call that fills 4 bars
    opens on its bar line at the grace, a first note 10-40 ms late by design (bench/dead_air.py measures that)."""
    command = [sys.executable, "-m", "improvd.cli", "run", "--midi-api", "jack", "--model", str(model)]
    return [*command, "--phrase-end", "silence"]


def notify_socket(path: Path) -> socket.socket:
    """The datagram socket the daemon sends READY=1 to (NOTIFY_SOCKET)."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(path))
    notify.settimeout(10)
    return notify


def start_daemon(command: list[str], log: Path, notify: socket.socket, notify_path: Path):
    """Start the daemon; returns it and the seconds until it sent READY=1."""
    started = time.monotonic()
    daemon = subprocess.Popen(
        command, stderr=log.open("w"), env={**os.environ, "NOTIFY_SOCKET": str(notify_path), "PYTHONFAULTHANDLER": "1"}
    )
    while b"READY=1" not in notify.recv(4096):
        pass
    return daemon, time.monotonic() - started


def stop_daemon(daemon: subprocess.Popen) -> None:
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(5)
    except subprocess.TimeoutExpired:  # hung: SIGABRT makes faulthandler write every thread's stack to the log
        daemon.send_signal(signal.SIGABRT)
        daemon.wait(5)


def idle_cpu(*pids: int) -> list[tuple[float, dict[str, float]]]:
    """Percent of a core each process uses over the same IDLE_SECONDS, in all and by thread."""
    before, idle0 = [(cpu_seconds(pid), cpu_by_thread(pid)) for pid in pids], time.monotonic()
    time.sleep(IDLE_SECONDS)
    seconds = time.monotonic() - idle0
    result = []
    for pid, (cpu0, threads0) in zip(pids, before, strict=True):
        threads = {
            name: round(100 * (used - threads0.get(name, 0.0)) / seconds, 2)
            for name, used in sorted(cpu_by_thread(pid).items())
        }
        result.append((round(100 * (cpu_seconds(pid) - cpu0) / seconds, 2), threads))
    return result


def locked_rss(model: Path, workdir: Path) -> float | None:
    """VmRSS (MB) after READY of a daemon run by root (who may lock any amount of memory); None for other users."""
    if os.geteuid() != 0:
        return None
    notify_path = workdir / "notify-locked"
    with notify_socket(notify_path) as notify:
        daemon, _ = start_daemon(
            [*daemon_command(model), "--no-mqtt"], workdir / "daemon-locked.log", notify, notify_path
        )
        time.sleep(1)
        rss = rss_mb(daemon.pid)[0]
        stop_daemon(daemon)
    return round(rss, 1)


def play(port: rtmidi.MidiOut, phrase: list[tuple[int, float]], bpm: float, jitter: float = 0.0, seed: int = 0):
    """Play ``phrase`` from now at ``bpm``, each onset moved by up to ``jitter`` seconds; the last release time."""
    return play_from(time.monotonic(), port, phrase, bpm, jitter, seed)


def play_from(at: float, port: rtmidi.MidiOut, phrase: list, bpm: float, jitter: float = 0.0, seed: int = 0) -> float:
    """``play`` with its first beat at ``at``."""
    rng = random.Random(seed)
    for pitch, length in phrase:
        if pitch is None:  # a rest
            at += length * 60 / bpm
            continue
        sleep_until(at + rng.uniform(-jitter, jitter))
        port.send_message([0x90, pitch, 90])
        at += length * 60 / bpm
        sleep_until(at - 0.01)
        port.send_message([0x80, pitch, 0])
    return time.monotonic()


def run_follow(model: Path, seconds: float, workdir: Path) -> dict:
    """``--clock follow`` at 110 BPM while the player plays at FOLLOW_BPM with FOLLOW_JITTER: each answer onset
    against the player's grid carried on from its call (16ths from the call's first beat), and the share of
    answer onsets on that grid's 8ths; the reference sends at FOLLOW_BPM beside it."""
    step = 60 / FOLLOW_BPM / 4
    receiver, reference = Receiver(), Reference(FOLLOW_BPM)
    player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="player")
    player.open_virtual_port("out")
    notify_path = workdir / "notify-follow"
    notify = notify_socket(notify_path)
    log = workdir / "daemon-follow.log"
    command = [*daemon_command(model), "--no-mqtt", "--clock", "follow", "--bpm", "110", "--input", "player"]
    command += ["--output", "synth", "--input-channel", "1", "--response-bars", "2", "--seed", "1"]
    daemon, _ = start_daemon(as_service() + command, log, notify, notify_path)
    tunes = calls()
    errors, eighths, answered, played = [], 0, 0, 0
    reference.command("play")
    busy0 = time.monotonic()
    while time.monotonic() - busy0 < seconds:
        origin, heard = time.monotonic() + 0.05, len(receiver.onsets)
        play_from(origin, player, tunes[played % len(tunes)], FOLLOW_BPM, FOLLOW_JITTER, seed=played)
        played += 1
        time.sleep(4 * 16 * step)  # the pause, up to a bar before the answer's first bar line, its two bars
        for onset in receiver.onsets[heard:]:
            position = (onset - origin) / step
            errors.append(abs(position - round(position)) * step)
            eighths += round(position) % 2 == 0
            answered += 1
    reference.command("idle")
    stop_daemon(daemon)
    floor_lateness, _ = reference.finish()
    floor_errors, _ = grid_figures(receiver.reference_onsets, [], step)
    receiver.close()
    player.close_port()
    player.delete()
    notify.close()
    tempi = re.findall(r"tempo \{'bpm': ([\d.]+)", log.read_text())
    error = spread(errors)
    floor = {"send_lateness_ms": spread(floor_lateness), "onset_error_ms": spread(floor_errors)}
    return {
        "log": str(log),
        "case": "follow",
        "player_bpm": FOLLOW_BPM,
        "calls": played,
        "answer_onsets": answered,
        "followed_bpm": [float(t) for t in tempi],
        "answer_onset_error_to_players_grid_ms": error,
        "answer_onsets_on_players_eighths": round(eighths / answered, 3) if answered else None,
        "reference": floor,
        "onset_p90_ratio_to_reference": _ratio(error["p90"], floor["onset_error_ms"]["p90"]),
    }


def run_midiclock(model: Path, seconds: float, workdir: Path) -> dict:
    """``--clock midi`` under a master speeding up from MASTER_BPM by MASTER_RAMP each 20 s (a DAW's tempo
    automation), its player's calls at the master's tempo on the same port: each answer onset against the
    master's step pulses (every 6th from the first after Start) as the synth hears both, in JACK's time."""
    receiver = Receiver()
    master = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="player")
    master.open_virtual_port("out")
    subprocess.run(["jack_connect", "player:out", "synth:in"], check=True)
    notify_path = workdir / "notify-midiclock"
    notify = notify_socket(notify_path)
    log = workdir / "daemon-midiclock.log"
    command = [*daemon_command(model), "--no-mqtt", "--clock", "midi", "--input", "player", "--output", "synth"]
    command += ["--input-channel", str(MASTER_CHANNEL), "--response-bars", "2", "--seed", "1"]
    daemon, _ = start_daemon(as_service() + command, log, notify, notify_path)
    tunes, played = calls(), 0
    clock = MasterClock(master)
    while time.monotonic() - clock.started < seconds:
        for pitch, length in tunes[played % len(tunes)]:
            quarter = 60 / clock.bpm
            if pitch is not None:
                clock.send([0x90 | MASTER_CHANNEL - 1, pitch, 90])
            time.sleep(length * quarter - 0.01)
            if pitch is not None:
                clock.send([0x80 | MASTER_CHANNEL - 1, pitch, 0])
            time.sleep(0.01)
        played += 1
        time.sleep(4 * 16 * 15 / clock.bpm)  # the pause, up to a bar before the answer, its two bars
    clock.stop()
    stop_daemon(daemon)
    steps, onsets = step_pulses(receiver.pulses), list(receiver.onsets)
    receiver.close()
    master.close_port()
    master.delete()
    notify.close()
    errors = [min(abs(onset - step) for step in steps) for onset in onsets] if steps else []
    return {
        "log": str(log),
        "case": "midiclock",
        "master_bpm": [MASTER_BPM, round(clock.bpm, 1)],
        "calls": played,
        "answer_onsets": len(onsets),
        "answer_onset_error_to_masters_steps_ms": spread(errors),
    }


def step_pulses(pulses: list[float]) -> list[float]:
    """Every 6th pulse from the first, counted through what the dummy JACK server drops or repeats under load: a
    gap of n pulse intervals (the last one's length) counts n pulses, a repeat none; a lost step pulse is put
    where the pulses around it say."""
    counted: dict[int, float] = {0: pulses[0]} if pulses else {}
    index, interval = 0, None
    for before, at in itertools.pairwise(pulses):
        gap = at - before
        count = 1 if interval is None else round(gap / interval)
        if count == 0:
            continue
        index += count
        counted[index] = at
        interval = gap / count
    steps, known = [], sorted(counted)
    for step in range(0, index + 1, 6):
        if step in counted:
            steps.append(counted[step])
        else:
            low = max(k for k in known if k < step)
            high = min(k for k in known if k > step)
            steps.append(counted[low] + (counted[high] - counted[low]) * (step - low) / (high - low))
    return steps


class MasterClock:
    """MIDI Start, then clock at MASTER_BPM rising by MASTER_RAMP each 20 s, from a thread; ``send`` shares the
    port with it."""

    def __init__(self, port: rtmidi.MidiOut) -> None:
        self.port, self.bpm, self._lock = port, float(MASTER_BPM), threading.Lock()
        self._running = threading.Event()
        self._running.set()
        self.started = time.monotonic()
        self.send([0xFA])
        self._thread = threading.Thread(target=self._pulse, daemon=True)
        self._thread.start()

    def send(self, data: list[int]) -> None:
        with self._lock:
            self.port.send_message(data)

    def _pulse(self) -> None:
        at = self.started
        while self._running.is_set():
            sleep_until(at)
            self.send([0xF8])
            self.bpm = MASTER_BPM * (1 + MASTER_RAMP * (at - self.started) / 20)
            at += 60 / self.bpm / 24

    def stop(self) -> None:
        self._running.clear()
        self._thread.join()
        self.send([0xFC])


def sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def grid_figures(onsets: list[float], calls: list[tuple[float, int]], step: float) -> tuple[list[float], list[float]]:
    """Onset errors against the grid (its phase fitted from all onsets) and delays from the phrase-end step."""
    if not onsets:
        return [], []
    origin = onsets[0]
    residuals = [((t - origin) / step + 0.5) % 1 - 0.5 for t in onsets]
    phase = statistics.median(residuals)
    errors = [abs(r - phase) * step for r in residuals]
    grid_origin = origin + phase * step
    delays = []
    for index, (last_off, first) in enumerate(calls):
        end = calls[index + 1][1] if index + 1 < len(calls) else len(onsets)
        if first >= end:
            continue
        released = round((last_off - grid_origin) / step)  # the engine counts a release on the nearest boundary
        phrase_end = grid_origin + (released + PHRASE_END_STEPS) * step  # the tick that completes the silence
        delays.append(onsets[first] - phrase_end)
    return errors, delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory (default: shipped)")
    parser.add_argument("--seconds", type=float, default=20, help="playing time per run (default 20)")
    parser.add_argument(
        "--flood-seconds", type=float, default=120, help="playing time of the flooded runs (default 120)"
    )
    parser.add_argument(
        "--cases",
        default="tempo,follow,metronome,clockout,midiclock",
        help="runs to make, of tempo (120 and 240 BPM, quiet and flooded), quiet (120 BPM quiet alone: the idle "
        "CPU in under a minute), follow, metronome, clockout and midiclock (default: all but quiet)",
    )
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    if not (args.model / "model.json").is_file():
        parser.error(f"{args.model}: no model there; train one or give --model DIR")
    workdir = Path(tempfile.mkdtemp(prefix="improvd-bench-"))
    server = JackServer(f"improvd-bench-{os.getpid()}", workdir / "jackd.log")
    server.start()
    broker = Mosquitto(workdir)
    broker.start()
    os.environ.update(JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1")
    tunes = phrases()
    try:
        runs = [
            run_one(args.model, bpm, kind, args.flood_seconds if kind else args.seconds, workdir, tunes, broker)
            for bpm in (120, 240)
            for kind in (None, "midi", "mqtt")
            if "tempo" in cases or ("quiet" in cases and (bpm, kind) == (120, None))
        ]
        if "metronome" in cases:
            runs.append(run_one(args.model, 120, None, args.seconds, workdir, tunes, broker, ["--metronome"]))
        if "clockout" in cases:
            runs.append(run_one(args.model, 240, None, args.seconds, workdir, tunes, broker, ["--clock-out"]))
        if "follow" in cases:
            runs.append(run_follow(args.model, args.seconds, workdir))
        if "midiclock" in cases:
            runs.append(run_midiclock(args.model, args.seconds, workdir))
        locked = locked_rss(args.model, workdir) if "tempo" in cases else None
    finally:
        server.stop()
        broker.stop()
    for run in runs:
        if run.get("flood"):
            quiet = next(r for r in runs if r["bpm"] == run["bpm"] and not r["flood"] and not r["flags"])
            run["p99_lateness_ratio_to_quiet"] = _ratio(
                run["send_lateness_ms"]["p99"], quiet["send_lateness_ms"]["p99"]
            )
            run["onset_p99_ratio_to_quiet"] = _ratio(run["onset_error_ms"]["p99"], quiet["onset_error_ms"]["p99"])
    for run in runs:
        if "send_lateness_ms" in run:  # the follow and midiclock cases measure following, against no goal
            run["goals_missed"] = missed_goals(run)
    report = {"model": str(args.model), "jack_period_frames": 64, "targets": TARGETS, "goals": GOALS, "runs": runs}
    print(json.dumps({**report, "rss_with_jack_graph_locked_mb": locked}, indent=2))
    return 0


def missed_goals(run: dict) -> list[str]:
    """The GOALS a run missed (a ratio without a reference figure to divide by counts as missed), and the clockout
    case's pulse goals (p99 at most PULSE_GOAL_MS, and at most the onset ratio times the reference's pulses). Idle CPU is no goal of the metronome and clockout cases, whose daemons send while idle."""
    busy_when_idle = {"--metronome", "--clock-out"} & set(run["flags"])
    skipped = {"idle_cpu_percent_over_reference"} if busy_when_idle else set()
    missed = [name for name, most in GOALS.items() if name not in skipped and (run[name] is None or run[name] > most)]
    pulses = run.get("pulse_lateness_ms")
    if pulses is not None and (not pulses["pulses"] or pulses["p99"] > PULSE_GOAL_MS):
        missed.append("pulse_lateness_p99_ms")
    ratio = run.get("pulse_p99_ratio_to_reference", 0)
    if pulses is not None and (ratio is None or ratio > GOALS["onset_p99_ratio_to_reference"]):
        missed.append("pulse_p99_ratio_to_reference")  # pulses as onsets: at most as many times the reference's
    return missed


def _ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 2) if baseline else None


if __name__ == "__main__":
    sys.exit(main())
