"""MIDI ports through python-rtmidi: list them, open them by name, keep them connected.

``--input``/``--output`` name an existing port by case-insensitive substring;
without one the daemon opens a virtual port of a client named ``improvd`` (under
JACK the second client of that name becomes ``improvd-01``). JACK input is read
by polling (see ``MidiPorts._poll_input``). ``MidiPorts.poll``,
called from the daemon's asyncio loop every half second, notices a named port
that went away and reconnects when it is back. Every call on the output port is
made under one lock, so the timing thread's sends never meet a reconnect.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import rtmidi

from improvd.osthread import name_this_thread

log = logging.getLogger("improvd.midi")

CLIENT = "improvd"
APIS = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK}
INPUT_POLL = 0.004  # seconds between looks at JACK input while messages come and go
IDLE_AFTER = 2.0  # once nothing was heard or sent for this long, the reader looks only every IDLE_POLL,
IDLE_POLL = 0.01  # ... or not at all while the timing thread looks before every grid tick:
TICKS_FRESH = 1.0  # ... it did so this recently (longer than the slowest step, 0.75 s at 20 BPM)
JACK_FLUSH = 0.05  # seconds for queued output to leave before the ports close
OWN_PORT = re.compile(rf"^{CLIENT}(-\d+)?:")
ADVICE = {
    "alsa": (
        "no ALSA sequencer (/dev/snd/seq cannot be opened): load the kernel module (sudo modprobe snd-seq), "
        "give a container the device (--device /dev/snd), or use --midi-api jack with a running JACK server"
    ),
    "jack": (
        "no JACK server is running{server}: start one (jackd -d alsa, qjackctl, or PipeWire's pipewire-jack), "
        "or use --midi-api alsa"
    ),
}


class MidiSystemError(RuntimeError):
    """The MIDI system itself is missing; the text says what to do."""


def _advice(api: str) -> str:
    server = os.environ.get("JACK_DEFAULT_SERVER")
    return ADVICE[api].format(server=f" (JACK_DEFAULT_SERVER={server})" if server else "")


def _create(kind: type, api: str) -> rtmidi.MidiIn | rtmidi.MidiOut:
    if api not in APIS:
        raise MidiSystemError(f"unknown MIDI API {api!r}: use alsa or jack")
    if APIS[api] not in rtmidi.get_compiled_api():
        raise MidiSystemError(f"this python-rtmidi was built without {api.upper()} support: reinstall python-rtmidi")
    try:
        return kind(APIS[api], name=CLIENT)
    except rtmidi.SystemError:
        raise MidiSystemError(_advice(api)) from None


class ArrivalClock:
    """Arrival times on ``time.monotonic`` from rtmidi's deltas, which its MIDI thread stamps.

    Python hands a message on late (a callback waits for the interpreter, a
    poller for its next look); the delta between messages is not late. The
    offset between the summed deltas and the hand-on clock is the smallest one
    seen (the least delayed hand-on), allowed to creep up by DRIFT per second so
    a drifting sound card clock is followed.
    """

    DRIFT = 1e-4  # seconds per second
    MAX_CREEP = 0.001  # seconds per message: a long silence does not let a late hand-on pull the offset
    RESYNC = 0.02  # a message this much earlier than it can have come means the deltas lost time: start anew

    def __init__(self) -> None:
        self._stream = 0.0  # summed deltas
        self._offset: float | None = None
        self._last = 0.0

    @property
    def settled(self) -> bool:
        """A message has been timed: later ones are timed from the deltas, however late they are handed on."""
        return self._offset is not None

    def arrival(self, delta: float, now: float, earliest: float | None = None) -> float:
        """The arrival of a message handed on at ``now``; a poller passes ``earliest``, when it last found
        the queue empty, since the message came after that."""
        self._stream += max(0.0, delta)
        latest = now - self._stream  # the offset if the message came just now
        first = (now if earliest is None else earliest) - self._stream  # ... at the first moment it could have
        if self._offset is None or first - self._offset > self.RESYNC:
            self._offset = latest
        else:
            creep = min(self.DRIFT * (now - self._last), self.MAX_CREEP)
            self._offset = min(latest, self._offset + creep)
            if earliest is not None:
                self._offset = max(self._offset, first)
        self._last = now
        return self._offset + self._stream


def match_port(names: list[str], wanted: str) -> int | None:
    """Index of the first port (not one of improvd's own) whose name holds ``wanted``, ignoring case."""
    needle = wanted.lower()
    for index, name in enumerate(names):
        if needle in name.lower() and not OWN_PORT.match(name):
            return index
    return None


@dataclass
class _Side:
    """One direction: the rtmidi object, what the user asked for, and what it is connected to."""

    handle: rtmidi.MidiIn | rtmidi.MidiOut
    direction: str  # "input" or "output"
    wanted: str  # "" = virtual
    connected: str | None = None  # the port name it is connected to, "virtual", or None
    lost_logged: bool = False

    @property
    def label(self) -> str:
        return "in" if self.direction == "input" else "out"


class MidiPorts:
    """The daemon's input and output ports (see the module docstring)."""

    def __init__(
        self, api: str, input: str, output: str, on_message: Callable[[list[int], float], None], clock: bool
    ) -> None:
        self.api = api
        self._on_message = on_message
        self._clock = clock
        self._lock = threading.Lock()
        self._reading = threading.Event()  # set: the JACK input reader stops
        self._reader = threading.Thread(target=self._poll_input, name="improvd-midi-in", daemon=True)
        self._read_lock = threading.Lock()  # one reader of JACK's queue at a time, so messages stay in order
        self._nudge = threading.Event()  # set: the idle reader wakes up
        self._looked_at = self._active_at = time.monotonic()  # queue last found empty; last message heard or sent
        self._ticks_read_at = float("-inf")  # the timing thread's last look before a tick
        self._in = _Side(_create(rtmidi.MidiIn, api), "input", input)
        self._out = _Side(_create(rtmidi.MidiOut, api), "output", output)
        self._listen()

    def _listen(self) -> None:
        # sysex and active sensing never reach Python; clock messages only when following MIDI clock
        self._in.handle.ignore_types(sysex=True, timing=not self._clock, active_sense=True)
        self._arrivals = ArrivalClock()  # a new port's first delta is 0
        if self.api == "jack":
            return  # read by _poll_input: rtmidi would call Python from JACK's process thread
        self._in.handle.cancel_callback()
        self._in.handle.set_callback(self._callback)

    def _poll_input(self) -> None:
        """JACK input: rtmidi queues messages in JACK's thread, this thread hands them on.

        A Python callback would run in JACK's real-time thread, waiting for the
        interpreter lock; that stalls JACK's graph and can deadlock a port close.
        Arrival times come from rtmidi's own deltas, so a slow look only delays
        when the engine hears a message, not its time. Idle, once a message has
        been timed, the reader sleeps while the timing thread looks before each
        grid tick (``read_before_tick``): a note is still heard before its step
        closes, with a few wakeups a second instead of a hundred.
        """
        name_this_thread()
        while not self._reading.is_set():
            with self._read_lock:
                self._hand_on()
            now = time.monotonic()
            if now - self._active_at < IDLE_AFTER:
                time.sleep(INPUT_POLL)  # cheaper than an Event wait
            elif self._arrivals.settled and now - self._ticks_read_at < TICKS_FRESH:
                self._nudge.wait(TICKS_FRESH)
                self._nudge.clear()
            else:
                time.sleep(IDLE_POLL)

    def read_before_tick(self) -> bool:
        """Hand on what JACK has queued: the timing thread's look ahead of each internal clock tick.

        True if it found something; then it wakes the reader too. It never waits
        for the reader (who is then handing everything on itself).
        """
        if self.api != "jack" or not self._read_lock.acquire(blocking=False):
            return False
        try:
            heard = self._hand_on()
        finally:
            self._read_lock.release()
        self._ticks_read_at = time.monotonic()
        if heard:
            self._nudge.set()
        return heard

    def _hand_on(self) -> bool:
        heard = False
        while True:
            with self._lock:
                event = self._in.handle.get_message() if self._in.connected else None
            now = time.monotonic()
            if event is None:
                self._looked_at = now
                return heard
            heard, self._active_at = True, now
            self._on_message(event[0], self._arrivals.arrival(event[1], now, self._looked_at))

    def _callback(self, event: tuple[list[int], float], _data: object = None) -> None:
        self._on_message(event[0], self._arrivals.arrival(event[1], time.monotonic()))

    def open(self) -> None:
        """Open both sides: virtual ports, or the named ports when they exist (else they wait for ``poll``)."""
        with self._lock:
            for side in (self._in, self._out):
                if not side.wanted:
                    side.handle.open_virtual_port(side.label)
                    side.connected = "virtual"
                    log.info("opened virtual %s port %r of client %r", side.direction, side.label, CLIENT)
                elif not self._connect(side):
                    log.warning("%s port matching %r not found; waiting for it", side.direction, side.wanted)
                    side.lost_logged = True
        if self.api == "jack":
            self._reader.start()

    def _connect(self, side: _Side) -> bool:
        names = side.handle.get_ports()
        index = match_port(names, side.wanted)
        if index is None:
            return False
        if side.handle.is_port_open():
            side.handle.close_port()
        side.handle.open_port(index, side.label)
        if side is self._in:  # rtmidi's JACK input forgets its callback when its port is closed
            self._listen()
        side.connected = names[index]
        return True

    def send(self, message: list[int]) -> bool:
        """Send raw bytes on the output; False when the output is not connected."""
        with self._lock:
            if self._out.connected is None:
                return False
            self._out.handle.send_message(message)
            self._active_at = time.monotonic()  # a player may barge in: the reader stays quick
            return True

    def poll(self) -> list[tuple[str, str, str]]:
        """Notice lost and returned named ports: ``(event, direction, port name)`` with event port_lost/port_back."""
        events = []
        with self._lock:
            for side in (self._in, self._out):
                if side.wanted:
                    events += self._poll_side(side)
        return events

    def _poll_side(self, side: _Side) -> list[tuple[str, str, str]]:
        names = side.handle.get_ports()
        if side.connected is not None and side.connected not in names:
            lost, side.connected = side.connected, None
            if side.handle.is_port_open():
                side.handle.close_port()
            return [("port_lost", side.direction, lost)]
        if side.connected is None and self._connect(side):
            side.lost_logged = False
            return [("port_back", side.direction, side.connected)]
        return []

    def names(self) -> dict[str, str | None]:
        """What each side is connected to (None: waiting for the named port)."""
        return {"input": self._in.connected, "output": self._out.connected}

    def wanted(self) -> dict[str, str]:
        return {"input": self._in.wanted, "output": self._out.wanted}

    def close(self) -> None:
        if self.api == "jack":
            time.sleep(JACK_FLUSH)  # the last releases leave in JACK's next cycles, after send_message returns
        self._reading.set()
        self._nudge.set()
        if self._reader.is_alive():
            self._reader.join(1)
        with self._lock:
            self._in.handle.cancel_callback()
            for side in (self._in, self._out):
                if side.handle.is_port_open():
                    side.handle.close_port()
                side.connected = None
                side.handle.delete()


def list_ports(api: str) -> dict[str, list[str]]:
    """The ports of ``api``: ``inputs`` the daemon can listen to, ``outputs`` it can play to."""
    source, sink = _create(rtmidi.MidiIn, api), _create(rtmidi.MidiOut, api)
    try:
        return {"inputs": source.get_ports(), "outputs": sink.get_ports()}
    finally:
        source.delete()
        sink.delete()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--midi-api", choices=sorted(APIS), default="alsa", help="MIDI system (default alsa)")


def main(args: argparse.Namespace) -> int:
    try:
        ports = list_ports(args.midi_api)
    except MidiSystemError as error:
        print(f"improvd ports: {error}", file=sys.stderr)
        return 1
    for title, key in (("inputs (use with --input)", "inputs"), ("outputs (use with --output)", "outputs")):
        print(f"{args.midi_api.upper()} {title}:")
        for name in ports[key]:
            print(f"  {name}")
        if not ports[key]:
            print("  (none)")
    return 0
