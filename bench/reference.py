"""The floor under bench/timing.py's figures: a bare python-rtmidi program run beside the daemon.

It opens the daemon's three JACK clients: an input and an output for music, and a SysEx guard doing the
daemon's probing (every ``PROBE_INTERVAL`` it reads the input and sends a lone F7 to it, from a client of its
own: improvd/daemon/ports.py). While the
daemon is played it plays a legato line of 16ths on its own grid, at the daemon's tempo, with the daemon's timer
(``improvd.daemon.timing.sleep_until``, its thread's timer slack set as the timing thread's), to the port ``--to``
on ``--channel``: on each step a note_off and a note_on, due at the same time, as the daemon sends a line. With ``--clock`` it also sends 24 pulses a quarter on the
same grid from the same thread and port, as ``--clock-out`` makes the daemon send MIDI clock: each an F9, a
one-byte system real-time message as the clock's F8 is, which the synth tells apart from the daemon's (MIDI clock
has no channel), and which reaches it through the same JACK clients. So, measured over the same seconds as the
daemon: its idle CPU is what the two JACK clients cost by themselves (each wakes every JACK period), and its send
lateness and the onset error of its notes at the receiver are what this machine gives any Python sender at that
moment. The daemon's figures divided by these say what improvd adds; with the guard beside it the idle
CPU compares like with like (each JACK client wakes every period: about 0.9% of a core here).

Commands on stdin, one a line: ``play`` starts the grid, ``idle`` stops it. At the end of input it prints its
send lateness in seconds as JSON (``{"lateness": [...], "clock_lateness": [...]}``, the notes' and the pulses')
and exits.

    python bench/reference.py --bpm 120 --to synth:in --channel 16 [--clock]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import rtmidi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from improvd.daemon.osthread import set_timer_slack
from improvd.daemon.ports import MARK, MARKS, PROBE_INTERVAL, SYSEX_END
from improvd.daemon.timing import TIMER_SLACK_NS, sleep_until

PITCH = 60
PULSES_PER_STEP = 6  # MIDI clock: 24 a quarter, 6 a 16th
PULSE = 0xF9  # the reference's clock pulse: F8's size and kind, told apart from the daemon's F8


def connect(port: rtmidi.MidiOut, name: str) -> None:
    names = port.get_ports()
    if name not in names:
        raise SystemExit(f"reference: no JACK port {name!r} among {names}")
    port.open_port(names.index(name), "out")


def play_grid(
    port: rtmidi.MidiOut,
    step: float,
    channel: int,
    playing: threading.Event,
    lateness: list[float],
    clock_lateness: list[float] | None = None,
) -> None:
    """On every step boundary, while ``playing`` is set, the previous note's note_off and the next note_on, sent
    one after the other as the daemon sends a legato line: each message's lateness is taken just before it goes.
    With ``clock_lateness``, a pulse (PULSE) every sixth of a step too, the boundary's sent before the notes (the
    daemon's order); each pulse's lateness goes there. It sleeps as the daemon's timing thread does: the same
    ``sleep_until`` and timer slack."""
    set_timer_slack(TIMER_SLACK_NS)
    at = time.monotonic() + step
    batch = [[0x80 | channel - 1, PITCH, 0], [0x90 | channel - 1, PITCH, 90]]
    pulse = 0
    while playing.is_set():
        due = at + pulse * step / PULSES_PER_STEP
        sleep_until(due)
        if clock_lateness is not None:
            clock_lateness.append(time.monotonic() - due)
            port.send_message([PULSE])
        if pulse == 0:
            for data in batch:
                lateness.append(time.monotonic() - at)
                port.send_message(data)
        pulse += 1
        if pulse == PULSES_PER_STEP or clock_lateness is None:
            at, pulse = at + step, 0
    port.send_message(batch[0])


def guard(listener: rtmidi.MidiIn, stopping: threading.Event) -> None:
    """The daemon's SysEx guard: a third JACK client that sends a lone F7 and a numbered mark to the input every
    PROBE_INTERVAL, the input read before each probe (what the daemon's loop does; its reader thread reads while
    music comes)."""
    prober = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="reference-probe")
    own = next((name for name in prober.get_ports() if name.startswith("reference") and name.endswith(":in")), None)
    if own is None:
        raise SystemExit("reference: cannot find its own input port for the SysEx guard")
    prober.open_port(prober.get_ports().index(own), "probe")
    number = 0
    while not stopping.wait(PROBE_INTERVAL):
        while listener.get_message() is not None:
            pass
        number = (number + 1) % MARKS
        prober.send_message([SYSEX_END])
        prober.send_message([MARK, number & 0x7F, number >> 7])
    prober.close_port()
    prober.delete()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bpm", type=float, required=True, help="the daemon's tempo (a step is a 16th)")
    parser.add_argument("--to", required=True, help="the JACK port the notes go to")
    parser.add_argument("--channel", type=int, default=16, choices=range(1, 17), help="their MIDI channel (1-16)")
    parser.add_argument("--clock", action="store_true", help="send 24 pulses a quarter too, as --clock-out does")
    args = parser.parse_args()
    listener = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="reference")
    listener.ignore_types(sysex=True, timing=True, active_sense=True)  # as the daemon's input
    listener.open_virtual_port("in")
    sender = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="reference")
    connect(sender, args.to)
    stopping = threading.Event()
    guarding = threading.Thread(target=guard, args=(listener, stopping))
    guarding.start()
    playing, lateness, clock_lateness, grid = threading.Event(), [], [], None
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "play" and grid is None:
            playing.set()
            step = 60 / args.bpm / 4
            grid = threading.Thread(
                target=play_grid,
                args=(sender, step, args.channel, playing, lateness, clock_lateness if args.clock else None),
            )
            grid.start()
        elif line.strip() == "idle" and grid is not None:
            playing.clear()
            grid.join()
            grid = None
    playing.clear()
    if grid is not None:
        grid.join()
    stopping.set()
    guarding.join()
    for port in (listener, sender):
        port.close_port()
        port.delete()
    print(json.dumps({"lateness": lateness, "clock_lateness": clock_lateness}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
