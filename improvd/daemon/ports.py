"""MIDI ports through python-rtmidi: list them, open them by name, keep them connected.

``--input``/``--output`` name an existing port by case-insensitive substring;
without one the daemon opens a virtual port of a client named ``improvd`` (under
JACK the second client of that name becomes ``improvd-01``). JACK input is read
by polling (see ``MidiPorts._poll_input``). ``MidiPorts.poll``,
called by the daemon's port watcher every half second, notices a named port
that went away and reconnects when it is back; under JACK ``MidiPorts.probe`` checks
that improvd's own JACK clients still run (the input hears its probes, the output's
process thread runs: ``improvd.daemon.schedstat``), and replaces an input or output
client that stopped (``_reopen``). Both run in the port watcher's thread
(``improvd.daemon.watcher``; one look at a time: ``_watching``, which ``close``
waits for, CLOSE_GRACE at most), never on the
asyncio loop or the timing thread: a reconnect or a server check is a round trip to
the MIDI system, seconds on a busy JACK server. Under JACK those round trips are
libjack's own calls (``improvd.daemon.jackpatch``), which leave the interpreter
lock free (all but making a new output client, rtmidi's), and improvd's own ports
stay open from ``open`` to ``close``: a named
port is connected to them. Each side has a lock of its own, held only to use or
replace its handle (an ALSA reconnect replaces it): the timing thread waits for
none of them (a send while the output is being replaced is not sent, as into a
port that is gone), nor for input being read, ports being listed or renamed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rtmidi

from improvd.daemon.jackpatch import JackGone, JackPatch, Patch
from improvd.daemon.osthread import name_this_thread, os_named
from improvd.daemon.quiet import QuietWindow
from improvd.daemon.schedstat import Threads
from improvd.daemon.tally import Tally

log = logging.getLogger("improvd.daemon.ports")

CLIENT = "improvd"
APIS = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK}
INPUT_QUEUE = 16384  # messages rtmidi's JACK input keeps for the reader (rtmidi's default: 1024, a quarter second
# of a 5,000-a-second storm); when it is full, what comes is lost: the reader notices and says so (``on_overflow``)
INPUT_POLL = 0.004  # seconds between looks at JACK input while messages come and go
IDLE_AFTER = 2.0  # once nothing was heard or sent for this long, the reader looks only every IDLE_POLL,
IDLE_POLL = 0.01  # ... or not at all while the timing thread looks before every grid tick:
TICKS_FRESH = 1.0  # ... it did so this recently (longer than the slowest step, 0.75 s at 20 BPM)
JACK_FLUSH = 0.2  # seconds for queued output to leave before the ports close (a loaded server's cycles stall)
CLOSE_GRACE = 0.5  # seconds a look under way, then the JACK server, may take to answer before the ports close
OVERFLOW = "times the MIDI input queue was full (messages lost)"
SYSEX_END = 0xF7
MARK = 0xF2  # a probe's second message: a Song Position Pointer carrying the probe's number (improvd drops a player's)
MARKS = 1 << 14  # probe numbers wrap at this (two 7-bit data bytes)
MARKS_KEPT = 64  # a mark numbered among the last this many probes sent is improvd's; any other is the player's
SYSEX_OPEN = "unterminated SysEx ended by improvd"
PROBE_INTERVAL = 1.0  # seconds between probes sent to improvd's own JACK input (see MidiPorts.probe)
PROBE_LOST = 5.0  # seconds without a probe coming back before the JACK server is checked
OUTPUT_LOST = 2.0  # seconds the JACK output's process thread may not run, after a send, before its client is replaced
FIRST_CYCLE = 2.0  # seconds a new JACK client has to run its first cycle (the output's thread runs, the input hears)
FIRST_CYCLE_POLL = 0.002  # seconds between looks at it meanwhile
REOPEN_TRIES = 3  # new clients made in a row, each given FIRST_CYCLE, before the output or input is given up
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
    """The MIDI system itself is missing or gone; the text says what to do."""


def _advice(api: str) -> str:
    server = os.environ.get("JACK_DEFAULT_SERVER")
    return ADVICE[api].format(server=f" (JACK_DEFAULT_SERVER={server})" if server else "")


def _create(kind: type, api: str) -> rtmidi.MidiIn | rtmidi.MidiOut:
    if api not in APIS:
        raise MidiSystemError(f"unknown MIDI API {api!r}: use alsa or jack")
    if APIS[api] not in rtmidi.get_compiled_api():
        raise MidiSystemError(f"this python-rtmidi was built without {api.upper()} support: reinstall python-rtmidi")
    limit = {"queue_size_limit": INPUT_QUEUE} if kind is rtmidi.MidiIn else {}
    try:
        return kind(APIS[api], name=CLIENT, **limit)
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
        self,
        api: str,
        input: str,
        output: str,
        on_message: Callable[[list[int], float], None],
        clock: bool,
        create: Callable[[type, str], Any] | None = None,
        patch: Patch | None = None,
        threads: Threads | None = None,
    ) -> None:
        """``create(kind, api)`` makes an rtmidi-like handle of ``kind`` (rtmidi.MidiIn or MidiOut); the default
        makes rtmidi's. ``patch`` makes JACK connections and checks the server (``improvd.daemon.jackpatch``'s
        ``JackPatch``, made by ``open`` under JACK by default). ``threads`` finds the output's JACK process thread
        and counts its runs (``improvd.daemon.schedstat``'s ``Threads`` on /proc/self/task by default). Tests pass
        fakes (tests/test_midi_ports.py)."""
        self.api = api
        self._create = create or _create
        self._patch = patch
        self._on_message = on_message
        self._clock = clock
        self._in_lock = threading.Lock()  # the input handle: reading it, replacing its port (ALSA)
        self._out_lock = threading.Lock()  # the output handle: sending, reconnecting it
        self._watching = threading.Lock()  # held by a look of the port watcher (probe, poll) and by close
        self._closed = False
        self._reading = threading.Event()  # set: the JACK input reader stops
        self._reader = threading.Thread(target=self._poll_input, name="improvd-midi-in", daemon=True)
        self._read_lock = threading.Lock()  # one reader of JACK's queue at a time, so messages stay in order
        self._nudge = threading.Event()  # set: the idle reader wakes up
        self._looked_at = self._active_at = time.monotonic()  # queue last found empty; last message heard or sent
        self._ticks_read_at = float("-inf")  # the timing thread's last look before a tick
        self.quiet = QuietWindow()  # the daemon gives the timing thread's: the reader keeps off around its sends
        self._threads = threads or Threads()
        self._in = _Side(self._made(rtmidi.MidiIn, "in"), "input", input)
        out, self._out_thread = self._new_output()  # ..._thread: its JACK process thread (None: not found, ALSA)
        self._out = _Side(out, "output", output)
        self._out_port: str | None = None  # JACK only, found by ``open``: the JACK name of improvd's own output port
        self._out_runs: int | None = None  # the output thread's runs at the watcher's last look (``_check_output``)
        self._out_looked_at = self._ran_after = self._ran_by = time.monotonic()  # that look; the thread last ran
        # after ..._ran_after and by ..._ran_by (the looks around its last runs)
        self._sent_at = float("-inf")  # the last send on the output
        self._prober: rtmidi.MidiOut | None = None  # JACK only, made by ``open``
        self._prober_port: str | None = None  # its port's JACK name
        self._probe_target: str | None = None  # the JACK name of improvd's own input port, once the prober is on it
        self._probe_sent_at = self._probe_back_at = time.monotonic()  # ..._back_at: the input last heard anything
        self._probe_number = 0  # the number of the last probe sent (``_is_probe``)
        self._marked = 0  # the number of the last probe whose mark was heard
        self._ended = False  # an F7 was heard since that mark (or what came was lost: nothing can be claimed)
        self._input_reaimed = False  # the input heard nothing for PROBE_LOST and the prober was connected anew
        self.dropped = Tally()  # what the input dropped, by reason (the daemon adds its own and logs the counts)
        self.on_overflow: Callable[[], None] = lambda: None  # called (in the reader's thread) when input was lost
        self._unbroken = 0  # messages read since JACK's queue was last found empty
        self.failure: BaseException | None = None  # set when reading the input failed: the daemon then exits
        self.server_gone = False
        self.output_reopened = 0  # times improvd's JACK output client was replaced (``_reopen``)
        self.input_reopened = 0  # ... its input client
        self._left: list[tuple[Any, str]] = []  # clients that stopped running, and their ports: left to the exit
        self._listen()

    def _made(self, kind: type, role: str) -> Any:
        """A handle of ``kind`` whose JACK threads (started with its client) are named ``improvd-<role>``:
        ``top -H`` tells them apart, and tests/test_jack_faults.py stops one."""
        with os_named(f"{CLIENT}-{role}"):
            return self._create(kind, self.api)

    def _new_output(self) -> tuple[Any, int | None]:
        """A new output handle, and under JACK its client's process thread (``Threads.newest``: the newest thread
        it started; None when none is found: a JACK whose threads name themselves, or no /proc)."""
        before = self._threads.ids() if self.api == "jack" else None
        handle = self._made(rtmidi.MidiOut, "out")
        return handle, None if before is None else self._threads.newest(f"{CLIENT}-out", before)

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
        try:
            self._read_until_closed()
        except Exception as error:  # the reader must never die unnoticed: the daemon watches ``failure``
            self.failure = error

    def _read_until_closed(self) -> None:
        while not self._reading.is_set():
            self.quiet.keep_off()
            with self._read_lock:
                self._hand_on(gated=True)
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

    def _hand_on(self, gated: bool = False) -> bool:
        """Hand on everything queued; True if something other than a returning probe was heard.

        ``gated`` (any thread but the timing thread): it stops early when a send is near (``quiet``), and a flood
        of input waits in rtmidi's queue, its times kept, instead of holding the interpreter from the send.
        """
        heard = False
        while not (gated and self.quiet.near()):
            looked = time.monotonic()  # what came after this may still be queued, however late the clock is read
            if not self._in_lock.acquire(blocking=gated):  # the timing thread never waits for a reconnect:
                return heard  # it looks at the next tick
            try:
                reading = self._in.connected or self.api == "jack"  # JACK: improvd's own port stays open
                event = self._in.handle.get_message() if reading else None
            finally:
                self._in_lock.release()
            now = time.monotonic()
            if event is None:
                self._looked_at, self._unbroken = looked, 0
                return heard
            self._probe_back_at, self._input_reaimed = now, False  # whatever it hears, the input runs
            self._count_unbroken()
            arrival = self._arrivals.arrival(event[1], now, self._looked_at)  # a probe's delta counts too
            if self._is_probe(event[0]):
                continue
            heard, self._active_at = True, now
            self._deliver(event[0], arrival)
        return heard

    def _count_unbroken(self) -> None:
        """rtmidi's JACK input drops what comes while its queue is full (it only prints a line): once as many
        messages as the queue holds were read without finding it empty, it was full, and input may be lost
        (a note_off among it). That is counted and ``on_overflow`` called: the daemon releases the notes it
        passed through."""
        self._unbroken += 1
        if self._unbroken >= INPUT_QUEUE - 1:  # rtmidi's ring keeps one slot free
            self._unbroken = 0
            self._ended = True  # a probe's F7 lost with the rest is no SysEx left open
            self.dropped.add(OVERFLOW)
            self.on_overflow()

    def _is_probe(self, data: list[int]) -> bool:
        """True for a probe's message heard back (the caller drops it); an F7 swallowed before its mark is counted.

        A lone F7 is never for the engine (the input filter drops a player's too); it marks that whatever SysEx was
        open has ended. A mark (``MARK``, numbered) heard with no F7 since the mark before means the probe's F7 was
        taken as the end of a SysEx left open: the one case counted as ``SYSEX_OPEN``. A probe late or lost on its
        way (a stalled or overloaded JACK server) claims nothing: its mark, if it comes, comes after its F7.
        """
        if data == [SYSEX_END]:
            self._ended = True
            return True
        if len(data) != 3 or data[0] != MARK:
            return False
        age = (self._probe_number - (data[1] | data[2] << 7)) % MARKS  # probes sent since this one
        if age >= MARKS_KEPT:
            return False  # not one of improvd's: the player's Song Position Pointer, for the input filter to drop
        if age >= (self._probe_number - self._marked) % MARKS:
            return True  # this mark, or an earlier one, again: the server doubled it
        if not self._ended:
            self.dropped.add(SYSEX_OPEN)
        self._marked, self._ended = (self._probe_number - age) % MARKS, False
        return True

    def _callback(self, event: tuple[list[int], float], _data: object = None) -> None:
        self._deliver(event[0], self._arrivals.arrival(event[1], time.monotonic()))

    def _deliver(self, data: list[int], arrival: float) -> None:
        """Hand one message on; an exception there is kept in ``failure`` (the daemon exits on it), never lost."""
        try:
            self._on_message(data, arrival)
        except Exception as error:
            if self.failure is None:
                self.failure = error

    def open(self) -> None:
        """Open both sides: virtual ports, or the named ports when they exist (else they wait for ``poll``); under
        JACK make the prober too, and check that the output runs (MidiSystemError when the server is gone meanwhile).

        Every JACK client and port is made here, before anything is timed: python-rtmidi holds the interpreter lock
        through each JACK server round trip, and on a busy server making a client held every thread of improvd for
        1.2-2 s (a play test, the prober made at the port watcher's look a second after ready: ``late {'behind_ms':
        1973}``). Under JACK improvd's own ports stay as they are until ``close``: a named port is connected to
        them, and connected anew, by ``JackPatch`` (without the interpreter lock), never by opening a port.
        """
        with self._in_lock, self._out_lock:
            for side in (self._in, self._out):
                if not side.wanted or self.api == "jack":
                    side.handle.open_virtual_port(side.label)
                if not side.wanted:
                    side.connected = "virtual"
                    log.info("opened virtual %s port %r of client %r", side.direction, side.label, CLIENT)
        if self.api == "jack":
            self._start_probing()
        for side, lock in ((self._in, self._in_lock), (self._out, self._out_lock)):
            if side.wanted and not self._connect(side, side.handle.get_ports(), lock):
                log.warning("%s port matching %r not found; waiting for it", side.direction, side.wanted)
                side.lost_logged = True
        if self.api == "jack":
            self._reader.start()

    def _connect(self, side: _Side, names: list[str], lock: threading.Lock) -> bool:
        """Connect ``side`` to the first of ``names`` that matches what it wants: under JACK improvd's own port to
        it (no lock: the handle is not touched), under ALSA by opening it (holding ``lock``, the side's)."""
        index = match_port(names, side.wanted)
        if index is None:
            return False
        if self.api == "jack":
            own = self._probe_target if side is self._in else self._out_port
            ends = (names[index], own) if side is self._in else (own, names[index])
            if own is None or not self._patched(self._patch.connect, *ends):
                return False
        else:
            with lock:
                if side.handle.is_port_open():
                    side.handle.close_port()
                side.handle.open_port(index, side.label)
                if side is self._in:  # rtmidi's input forgets its callback when its port is closed
                    self._listen()
        side.connected = names[index]
        return True

    def _patched(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)`` of the JackPatch; MidiSystemError (and ``server_gone``) when no JACK server answers."""
        try:
            return call(*args)
        except JackGone:
            self.server_gone = True
            raise MidiSystemError("the JACK server is gone") from None

    def _aim_probe(self) -> None:
        """Connect the prober to improvd's own JACK input (anew: a patchbay may have cut it)."""
        if self._prober_port is None or self._probe_target is None:
            return
        if self._patched(self._patch.connect, self._prober_port, self._probe_target):
            self._marked, self._ended = self._probe_number, False  # marks sent before count as doubled
        self._probe_back_at = time.monotonic()  # a prober aimed afresh has PROBE_LOST to hear its first probe back

    def probe(self) -> list[tuple[str, str, str]]:
        """JACK only, every PROBE_INTERVAL: the SysEx guard, and the check that improvd's JACK clients still run.

        rtmidi's JACK input takes every message after a SysEx start without its
        end as part of that SysEx, and drops them all until an F7 comes: one
        unterminated SysEx would deafen improvd for good. So a probe is sent to
        improvd's own input port: a lone F7 (SysEx end), which ends such a SysEx
        within a second, then a numbered mark; a mark heard without its F7 before
        it counts one SysEx left open (``_is_probe``). A probe that comes late, or
        never (a stalled server, an input queue that overflowed), claims nothing.

        When the input has heard nothing (not even a probe) for PROBE_LOST
        seconds, the JACK server is checked with a fresh client (gone, or
        restarted: improvd's ports are not in it: MidiSystemError, the daemon
        cannot go on); when it runs, the probe is connected anew (a patchbay may
        have cut it), and if the input stays silent just as long again, its JACK
        client has stopped running (jackd logs ``client = improvd was not
        finished``). The output's client has stopped when its process thread has
        not run for OUTPUT_LOST while improvd sent something (``_check_output``),
        and the server runs. A client that stopped is replaced by a new client
        (``_reopen``; MidiSystemError when new ones do not run either): the event
        ``("input_reopened", "input", its port)`` or ``("output_reopened",
        "output", its port)`` is returned. Called by the port watcher, in its
        thread.
        """
        with self._watching:
            return [] if self._closed else self._probe(time.monotonic())

    def _probe(self, now: float) -> list[tuple[str, str, str]]:
        if self.api != "jack" or now - self._probe_sent_at < PROBE_INTERVAL:
            return []
        events = self._check_output(now)
        if self._probe_target is None or self._prober_port is None:  # no probes: only the server can be checked
            if now - self._probe_back_at > PROBE_LOST:
                self._probe_back_at = now
                self._check_server()
            return events
        with self._read_lock:
            self._hand_on(gated=True)
        if now - self._probe_back_at > PROBE_LOST:
            events += self._check_input(now)
        self._send_probe(now)
        return events

    def _send_probe(self, now: float) -> None:
        """Send a probe: a lone F7, then its mark (``_is_probe``)."""
        # numbered before it is sent: a reader may hear it back before send_message has returned
        self._probe_number, self._probe_sent_at = (self._probe_number + 1) % MARKS, now
        number = self._probe_number
        self._prober.send_message([SYSEX_END])  # the prober is only used by the port watcher
        self._prober.send_message([MARK, number & 0x7F, number >> 7])

    def _check_input(self, now: float) -> list[tuple[str, str, str]]:
        """The input heard nothing for PROBE_LOST: the server checked, then the prober connected anew, then the
        input's client replaced (its event returned)."""
        silent = now - self._probe_back_at
        self._check_server()
        self._probe_back_at = now
        if self._input_reaimed:
            self._reopen(
                self._in,
                f"has heard nothing, not even its own probes, for {silent + PROBE_LOST:.0f} s ({self._probe_target})",
            )
            return [("input_reopened", "input", self._probe_target)]
        self._input_reaimed = True
        self._aim_probe()
        return []

    def _check_output(self, now: float) -> list[tuple[str, str, str]]:
        """Count the output's process thread's runs: once it has not run for OUTPUT_LOST while something improvd
        sent may not have left (sent after the look before its last runs), the server is checked, and if the thread
        does not run within FIRST_CYCLE of the server's answer either (a server stopped for a while runs its clients
        again once it answers), the output's client is replaced (its event returned). An idle output is left as it
        is, however long."""
        if self._out_thread is None or self._out_port is None:
            return []
        runs = self._threads.runs(self._out_thread)  # None: the thread is gone, its client with it
        if runs is not None and runs != self._out_runs:
            self._out_runs, self._ran_after, self._ran_by = runs, self._out_looked_at, now
        self._out_looked_at = now
        if now - self._ran_by < OUTPUT_LOST or self._sent_at <= self._ran_after:
            return []
        self._check_server()
        if self._first_cycle(self._out_thread):  # the server had stopped (SIGSTOP, a stalled machine), not the client
            self._watch_output(time.monotonic())
            return []
        self._reopen(self._out, f"its JACK client has not run for {now - self._ran_by:.1f} s ({self._out_port})")
        return [("output_reopened", "output", self._out_port)]

    def _reopen(self, side: _Side, why: str) -> None:
        """Replace improvd's JACK client of ``side``, which stopped running (``why``), by a new one: its port takes
        over every connection of the old one (the prober's, a named port's, a patchbay's), which is cut from them
        all (a client next to a stopped one waits for it), and once the new client is seen to run (``_took_over``:
        the output's process thread runs, the input hears the prober) it is used. The old client, and each new one
        that did not run, is left to the process's exit (``close``), never deleted: rtmidi frees a client's queue
        before closing it, so a process thread that runs again later (stopped, not dead) would use freed memory;
        the daemon crashed at its exit in a test that resumed the thread after its client was replaced.
        MidiSystemError when REOPEN_TRIES new clients in a row do not run either (for the input, the prober's own
        client may be the one stopped).

        Seen in play tests: now and then a JACK client of improvd's never runs its first cycle, or stops running
        (gdb: its thread waits in ``JackClient::DummyCycle``; jackd logs ``client = improvd-01 was not finished``).
        Making a client holds the interpreter lock for its server round trips (rtmidi), and a stopped client slows
        them (each graph change waits for jackd's client timeout): every thread waited 1 s here, 3.4 s with both
        cores busy, once; nothing sent meanwhile was heard anyway.
        """
        output = side is self._out
        if output:
            self.output_reopened += 1
        else:
            self.input_reopened += 1
        said = f"improvd's JACK {side.direction} {'delivers nothing: ' if output else ''}{why}"
        log.warning("%s; replacing its client, which stopped running", said)
        old, was = side.handle, self._out_port if output else self._probe_target
        lister = self._in.handle if output else self._prober  # an input lists the outputs, an output the inputs
        self._left.append((old, was or side.label))  # replaced or not, it stopped running
        for _ in range(REOPEN_TRIES):
            handle, thread = self._new_output() if output else (self._made(rtmidi.MidiIn, side.label), None)
            handle.open_virtual_port(side.label)
            name = _jack_name(handle, side.label, lister)
            if name is not None:
                moved = self._patched(self._patch.move, was, name)
                if not output:
                    self._patched(self._patch.connect, self._prober_port, name)  # were they cut apart meanwhile
                if self._took_over(side, handle, name, thread):
                    break
                self._patched(self._patch.move, name, was)  # back to the old port, or the next try loses them
            self._left.append((handle, name or side.label))
        else:
            heard = "run" if output else "hear the prober"
            raise MidiSystemError(
                f"{said}, and {REOPEN_TRIES} new JACK clients made for it did not {heard} either"
                + ("" if output else " (its JACK client stopped running, or a patchbay keeps cutting them apart)")
            )
        log.warning("improvd's JACK %s is now %s, connected to %s", side.direction, name, ", ".join(moved) or "nothing")

    def _took_over(self, side: _Side, handle: Any, name: str, thread: int | None) -> bool:
        """Whether the new client ``handle`` (port ``name``; for the output, its process thread ``thread``, which
        is not checked when it was not found) of ``side`` runs; if it does, it is ``side``'s now."""
        if side is self._out:
            if thread is not None and not self._first_cycle(thread):
                return False
            with self._out_lock:  # a send meanwhile is not sent (``send`` never waits)
                self._out.handle, self._out_port, self._out_thread = handle, name, thread
            self._watch_output(time.monotonic())
            return True
        old, target = self._in.handle, self._probe_target
        self._use_input(handle, name)
        if self._hears_a_probe():
            return True
        self._use_input(old, target)
        return False

    def _use_input(self, handle: Any, name: str | None) -> None:
        """Read ``handle`` (JACK port ``name``) as the input from now on, the prober aimed at it afresh."""
        with self._read_lock, self._in_lock:
            self._in.handle, self._probe_target = handle, name
            self._listen()
        self._marked, self._ended = self._probe_number, False  # marks sent before count as doubled

    def _hears_a_probe(self) -> bool:
        """Whether the input hears anything (a probe sent now at least) within FIRST_CYCLE: whatever it hears is
        handed on as always (``_hand_on`` clears ``_input_reaimed``)."""
        self._input_reaimed = True
        self._send_probe(time.monotonic())
        for _ in range(max(1, round(FIRST_CYCLE / FIRST_CYCLE_POLL))):
            with self._read_lock:
                self._hand_on(gated=True)
            if not self._input_reaimed:
                return True
            time.sleep(FIRST_CYCLE_POLL)
        return False

    def _first_cycle(self, thread: int) -> bool:
        """Whether the JACK client whose process thread is ``thread`` runs: the thread runs (a JACK cycle) within
        FIRST_CYCLE."""
        first = self._threads.runs(thread)
        for _ in range(max(1, round(FIRST_CYCLE / FIRST_CYCLE_POLL))):
            time.sleep(FIRST_CYCLE_POLL)
            runs = self._threads.runs(thread)
            if runs is not None and runs != first:
                return True
        return False

    def _watch_output(self, now: float) -> None:
        """Count the output's process thread's runs from ``now`` on (``_check_output``)."""
        self._out_runs = None if self._out_thread is None else self._threads.runs(self._out_thread)
        self._out_looked_at = self._ran_after = self._ran_by = now

    def _start_probing(self) -> None:
        """Make the prober (a JACK client of its own; MidiSystemError when the server is gone), learn the JACK names
        of improvd's three ports (``_jack_name``), connect the prober to the input, and check that the output's
        client runs its first JACK cycle (replaced where it does not)."""
        if self._patch is None:
            self._patch = JackPatch()
        try:
            self._prober = self._made(rtmidi.MidiOut, "probe")
        except MidiSystemError:
            self.server_gone = True
            raise MidiSystemError("the JACK server is gone") from None
        self._prober.open_virtual_port("probe")
        self._probe_target = _jack_name(self._in.handle, "in", self._prober)  # an output lists the inputs
        self._out_port = _jack_name(self._out.handle, "out", self._in.handle)  # ... an input the outputs
        self._prober_port = _jack_name(self._prober, "probe", self._in.handle)
        if self._probe_target is None or self._prober_port is None:
            log.warning("cannot find improvd's own JACK input port; unterminated SysEx will not be cleared")
        if self._out_port is None:
            log.warning("cannot find improvd's own JACK output port; it plays to no named port, and stops unnoticed")
        elif self._out_thread is None:
            log.warning("cannot find the JACK process thread of improvd's output; an output that stops goes unnoticed")
        self._aim_probe()
        if self._out_thread is not None and self._out_port is not None and not self._first_cycle(self._out_thread):
            self._reopen(self._out, "its first JACK cycle never ran")
        self._watch_output(time.monotonic())
        self._probe_sent_at = self._probe_back_at = time.monotonic()

    def _check_server(self) -> None:
        """Raise MidiSystemError when the JACK server is gone or is a new one (improvd's input not in it)."""
        if not self._patched(self._patch.has_port, self._probe_target):
            self.server_gone = True
            raise MidiSystemError(f"the JACK server was restarted: improvd's port {self._probe_target} is gone")

    def send(self, message: list[int]) -> bool:
        """Send raw bytes on the output; False when the output is not connected, or its port is being replaced (an
        ALSA reconnect, under the output's lock: the timing thread never waits for it; the port was not connected
        meanwhile, and the daemon releases every note once it is back)."""
        if not self._out_lock.acquire(blocking=False):
            return False
        try:
            if self._out.connected is None:
                return False
            self._sent_at = now = time.monotonic()  # before the send: the watcher may look at once
            self._out.handle.send_message(message)
        finally:
            self._out_lock.release()
        self._active_at = now  # a player may barge in: the reader stays quick
        return True

    def output_cycles(self) -> int | None:
        """How many JACK cycles improvd's output client has run: its process thread's runs (``Threads.runs``); None
        under ALSA (which delivers at once) or where they cannot be counted. Any thread may ask; the timing thread
        does after each send, and ticks once the cycle that takes it has run (improvd.daemon.timing)."""
        thread = self._out_thread  # replaced in one step by the watcher's reopen
        return None if thread is None else self._threads.runs(thread)

    def poll(self) -> list[tuple[str, str, str]]:
        """Notice lost and returned named ports: ``(event, direction, port name)`` with event port_lost/port_back.

        The ports are listed without a lock (touching nothing a send or a read uses); a side's lock is taken only
        when its port is closed or opened. Called by the port watcher, in its thread.
        """
        with self._watching:
            return [] if self._closed else self._poll()

    def _poll(self) -> list[tuple[str, str, str]]:
        events = []
        for side, lock in ((self._in, self._in_lock), (self._out, self._out_lock)):
            if side.wanted:
                events += self._poll_side(side, side.handle.get_ports(), lock)
        return events

    def _poll_side(self, side: _Side, names: list[str], lock: threading.Lock) -> list[tuple[str, str, str]]:
        if side.connected is not None and side.connected not in names:
            lost, side.connected = side.connected, None
            if self.api != "jack":  # under JACK the connection went with the port; improvd's own port stays
                with lock:
                    if side.handle.is_port_open():
                        side.handle.close_port()
            return [("port_lost", side.direction, lost)]
        if side.connected is None and self._connect(side, names, lock):
            side.lost_logged = False
            return [("port_back", side.direction, side.connected)]
        return []

    def names(self) -> dict[str, str | None]:
        """What each side is connected to (None: waiting for the named port)."""
        return {"input": self._in.connected, "output": self._out.connected}

    def wanted(self) -> dict[str, str]:
        return {"input": self._in.wanted, "output": self._out.wanted}

    def close(self, grace: float = CLOSE_GRACE) -> str | None:
        """Close both ports, once a look of the port watcher under way has ended; None when they are closed (or
        were left to a JACK server that is gone: nothing is called on its clients, libjack may crash), else why
        nothing was closed, or which clients that stopped running (``_reopen``) are left to the exit.

        rtmidi holds the interpreter lock through each JACK server round trip, so closing on a wedged server (jackd
        stopped) would hang the whole process. So nothing is closed when a look still hangs after ``grace`` seconds,
        or the server does not answer a fresh client (libjack through ctypes, without the interpreter lock) within
        ``grace``: the caller then exits without closing (``os._exit``; the server drops the clients of a process
        that is gone). The releases sent before are in the output's queue meanwhile, and leave if the server runs.
        """
        if not self._watching.acquire(timeout=grace):
            self._closed = True  # the look under way ends the watcher's work when it returns
            return f"a look at the ports has hung for {grace:g} s"
        self._closed = True
        self._watching.release()
        if self.server_gone:
            self._reading.set()
            return None
        if self.api == "jack":
            time.sleep(JACK_FLUSH)  # the last releases leave in JACK's next cycles, after send_message returns
        self._reading.set()
        self._nudge.set()
        if self._reader.is_alive():
            self._reader.join(1)
        if self.api == "jack" and not self._answers(grace):
            return f"the JACK server has not answered for {grace:g} s"
        with self._in_lock, self._out_lock:
            self._in.handle.cancel_callback()
            for side in (self._in, self._out):
                side.connected = None
                if any(side.handle is handle for handle, _ in self._left):
                    continue  # no new client took over from it
                if side.handle.is_port_open():
                    side.handle.close_port()
                side.handle.delete()
            if self._prober is not None:
                self._prober.delete()
        if self._left:
            return f"{', '.join(name for _, name in self._left)} stopped running: left to the exit"
        return None

    def _answers(self, grace: float) -> bool:
        """Whether the JACK server answers a fresh client within ``grace`` seconds (in a thread of its own, which
        is abandoned when it does not: a daemon thread waiting in libjack without the interpreter lock)."""
        answered = threading.Event()

        def check() -> None:
            with contextlib.suppress(JackGone, OSError):  # gone, or no libjack: no answer
                (self._patch or JackPatch()).has_port(None)
                answered.set()

        threading.Thread(target=check, name="improvd-close", daemon=True).start()
        return answered.wait(grace)


def _jack_name(handle: Any, label: str, lister: Any) -> str | None:
    """The JACK name of ``handle``'s own port ``label``, found among the ports ``lister`` lists (None: not found).

    rtmidi cannot name its own ports, so the port is renamed for a moment to a
    name no other client has, found in ``lister``'s list, and renamed back.
    """
    marker = f"{label}-improvd-{os.getpid()}-{time.monotonic_ns()}"
    handle.set_port_name(marker)
    try:
        names = lister.get_ports()
    finally:
        handle.set_port_name(label)
    found = next((name for name in names if name.endswith(":" + marker)), None)
    return None if found is None else found.rsplit(":", 1)[0] + ":" + label


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
