"""The timing thread: the one thread that calls the engine and sends on the output, on time.

``TimingThread`` drains player input, clock bytes, settings changes and actions
from the other threads between sends, ticks the engine at each grid step (from
the internal clock or MIDI clock) and sends each queued message at its due time; between ticks it wakes the engine
at its deadline (``next_deadline``: the bar line's grace), the input queued before it heard first.
Its time (``SystemTime``: now, sleep-until, wait) is a parameter, so tests run
its real code in virtual time. Nothing it holds is shared with slow work: the
lateness statistics (``LatenessStats``) are recorded without a lock, changes
are merged before they reach it, the other threads keep off the interpreter
around each send and no garbage collection starts near one (``quiet``:
improvd.daemon.quiet; what was made before the loop is frozen out of the
collections, so a full one is short), and it takes the interpreter back from
a busy thread within SWITCH_INTERVAL. What falls due within SPIN_SECONDS, a
queued message or a MIDI clock pulse (each on its own deadline, the earlier
first), is sent before any other work: input, settings changes and the grid
tick wait for it, and the inbox is drained only up to the next of them. A
loop that finds itself more than STALE_AFTER behind (the process was stopped
or starved) does not play the missed stretch in a burst: it drops what is too
late and sends the releases (``late`` event).

After a send the grid tick (the answer's drawing: 1-4 ms of CPU) waits, asleep, until the JACK cycle that takes
the send has run (``cycles``: the output client's process thread has run since, and HAND_OVER_AFTER more; at
most HAND_OVER_MAX). With the machine's other cores busy, Linux woke that cycle's JACK threads (jackd's and the
clients': not real-time, or improvd's own) on the CPU where the tick computed and let the tick run on for 1-2 ms
first (a thread of the same priority is not preempted before its slice ends): the whole cycle, and the note in
it, reached the synth a JACK period or two late.

``sleep_until`` waits on an Event (so another thread can wake it early) until
SLEEP_SPIN before the deadline, then spins on ``time.monotonic`` for the rest:
a bare sleep wakes up late by the thread's timer slack (50 µs unless set) and
the scheduler's latency, while the spin lands within microseconds. The timing
thread sets its timer slack to TIMER_SLACK_NS, so that short spin covers the
scheduler alone (bench/reference.py's sender does the same): a spin of 1 ms
before each of 96 MIDI clock pulses a second at 240 BPM cost 10% of a core.
"""

from __future__ import annotations

import gc
import math
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mido

from improvd.core.clock import PULSES_PER_STEP, InternalClock, MidiClockFollower
from improvd.core.engine import Event, explicit
from improvd.daemon.osthread import name_this_thread, set_timer_slack
from improvd.daemon.quiet import COLLECTOR_AHEAD, CollectorPause, QuietWindow
from improvd.daemon.reports import Changed, Events, Failed, Report, SendFailed, Tempo, Warned

SPIN_SECONDS = 0.001  # a send due within this is near: the loop wakes this far ahead and starts no other work
SAME_TIME = 1e-6  # seconds apart at most for a message to be due with a clock pulse (the same boundary, in floats)
SLEEP_SPIN = 0.0002  # sleep_until sleeps to this stretch before its deadline and spins the rest
TIMER_SLACK_NS = 1_000  # the timing thread's timer slack: a timed sleep ends within this of its time (Linux: 50 µs)
WINDOW = 20_000  # lateness samples kept for the percentiles
MAX_WAIT = 1.0  # seconds: the loop wakes at least this often, so its heartbeat shows it is alive (the watchdog
# looks every 5 s); the internal clock wakes it at every grid step anyway
START_DELAY = 0.05  # the internal clock's first step begins this long after the loop starts
RELEASE_AGAIN = 1.0  # seconds: the start's All Notes Off is sent again then (a JACK graph still removing a killed
# run's clients delivers nothing until it is done, and the first may be lost)
SWITCH_INTERVAL = 0.0005  # seconds: how long a busy thread keeps the interpreter from a waiting one (Python: 5 ms)
STALE_AFTER = 0.1  # seconds: a note due longer ago than this is too late to play (the process was stopped or
# starved): it is dropped, its release and every other release sent at once, and a ``late`` event says so
BPM_FOLLOW = 0.5  # a followed tempo this far (BPM) from the engine's is passed on
HAND_OVER_POLL = 0.0002  # seconds between looks at the output's JACK cycles while the loop hands a send over
HAND_OVER_AFTER = 0.0003  # seconds more, once the output's client has run: the synths after it in the graph run
HAND_OVER_MAX = 0.005  # seconds after a send at most (a stopped client, a JACK period over 4 ms): then the tick
CLOCK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC


def sleep_until(deadline: float, wake: threading.Event | None = None, spin: float = SLEEP_SPIN) -> bool:
    """Wait until ``time.monotonic() >= deadline``, sleeping to ``spin`` seconds before it and spinning the rest;
    False when ``wake`` was set first (it is cleared). Its precision is the calling thread's timer slack
    (``set_timer_slack``) and the scheduler's latency, up to ``spin``."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= spin:
            break
        if wake is not None:
            if wake.wait(remaining - spin):
                wake.clear()
                return False
        else:
            time.sleep(remaining - spin)
    while time.monotonic() < deadline:
        pass
    return True


class SystemTime:
    """The daemon's time: ``time.monotonic``, a spinning ``sleep_until``, ``Event.wait``. The timing thread takes
    its time as a parameter, so tests run its real code in virtual time (tests/virtual.py)."""

    @staticmethod
    def now() -> float:
        return time.monotonic()

    @staticmethod
    def sleep_until(deadline: float) -> None:
        sleep_until(deadline)

    @staticmethod
    def wait(event: threading.Event, timeout: float) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; True when it was set."""
        return event.wait(timeout)


@dataclass(frozen=True)
class Summary:
    sends: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict:
        return {"sends": self.sends, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms}

    def __str__(self) -> str:
        return (
            f"{self.sends} sends, lateness p50 {self.p50_ms:.3f} ms, p99 {self.p99_ms:.3f} ms, max {self.max_ms:.3f} ms"
        )


class LatenessStats:
    """How late each send was against its due time: percentiles over a recent window, maximum over all.

    One thread records (the timing thread, before each send); any thread may take a ``summary``. Nothing is
    locked: ``record`` writes one slot of a ring, and ``summary`` copies the ring in one step (a list slice, under
    the interpreter lock) and sorts the copy, so a send never waits for a summary.
    """

    def __init__(self, window: int = WINDOW) -> None:
        self._ring = [0.0] * window
        self._count = 0
        self._max = 0.0

    def record(self, lateness: float) -> None:
        """Record one send, ``lateness`` seconds after its due time (negative: early). One recording thread only."""
        self._ring[self._count % len(self._ring)] = lateness
        self._count += 1
        if lateness > self._max:
            self._max = lateness

    def summary(self) -> Summary:
        """The percentiles over the window, from a copy: a record landing meanwhile is in the next summary."""
        count, peak = self._count, self._max
        ordered = sorted(self._ring[: min(count, len(self._ring))])
        if not ordered:
            return Summary(count, 0.0, 0.0, 0.0)
        return Summary(count, _ms(_percentile(ordered, 50)), _ms(_percentile(ordered, 99)), _ms(peak))


def _percentile(ordered: list[float], percent: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


Action = Callable[[float], list]  # run in the timing thread with the current time; returns Timed to send at once


class TimingThread(threading.Thread):
    """The real-time side: the only thread that calls the engine and sends on the output.

    Player input (from rtmidi's thread) and actions (from the asyncio loop) wait
    in one queue that this thread drains between sends. Queued output is sent
    on time with ``sleep_until``'s spin (its timer slack set to TIMER_SLACK_NS); the grid ticks need no spin (the engine
    schedules a response one step ahead). ``report`` receives engine events
    and errors; it must only hand them over (the daemon's loop logs them).
    When it runs, it sets the interpreter's switch interval to SWITCH_INTERVAL: a thread woken for a send then
    waits at most that long for a busy MQTT loop or input reader to let go of the interpreter. ``cycles`` counts
    the JACK cycles the output's client has run (None: it cannot be counted, as under ALSA, which delivers at
    once): after each timed send the grid tick waits for the next (the module's docstring).
    """

    def __init__(
        self,
        engine: Any,
        send: Callable[[list[int]], bool],
        report: Callable[[Report], None],
        clock: str = "internal",
        clock_out: bool = False,
        stats: LatenessStats | None = None,
        before_tick: Callable[[], bool] | None = None,
        time_source: Any = SystemTime,
        cycles: Callable[[], int | None] = lambda: None,
    ) -> None:
        super().__init__(name="improvd-timing", daemon=True)
        self.time = time_source
        self.engine = engine
        self._send = send
        self._report = report
        self.follower = MidiClockFollower() if clock == "midi" else None
        self.internal: InternalClock | None = None
        self.clock_out = clock_out and clock in ("internal", "follow")
        self.stats = stats or LatenessStats()
        self.click_stats = LatenessStats()
        self.heartbeat = self.time.now()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._changes: dict[str, Any] = {}  # engine settings not yet applied (see ``change``)
        self._changes_lock = threading.Lock()
        self._wake = threading.Event()
        self.quiet = QuietWindow()  # when the next send is due: the other threads keep off the interpreter then
        self.collector = CollectorPause()  # and no garbage collection starts in any thread
        self._stopping = False
        self._pulses: deque[float] = deque()
        self.recording: Any = None  # an improvd.daemon.recorder.Session while recording: the daemon swaps it
        self._before_tick = before_tick  # hands on input queued before the boundary (True if any): its step hears it
        self._cycles = cycles
        self._handed: int | None = None  # the output's cycles counted just after the last send, until one more ran
        self._handed_until = -math.inf  # the grid tick waits until then at the latest (``_handing_over``)

    def feed(self, message: mido.Message, arrival: float) -> None:
        """Player input, already filtered (thread-safe)."""
        self._inbox.put((arrival, message))
        self._wake.set()

    def clock_message(self, status: int, arrival: float) -> None:
        """A MIDI clock, Start, Continue or Stop byte (thread-safe)."""
        self._inbox.put((arrival, status))
        self._wake.set()

    def submit(self, action: Action) -> None:
        """Run ``action(now)`` in this thread; the Timed it returns are sent at once (thread-safe)."""
        self._inbox.put((None, action))
        self._wake.set()

    def change(self, settings: dict[str, Any]) -> None:
        """Engine settings to apply, already validated (thread-safe). Those not yet applied are merged, later keys
        winning, and applied in one ``engine.update`` before the inbox is next drained: a flood of changes costs
        this thread one update per look, not one per message."""
        with self._changes_lock:
            self._changes.update(explicit(settings))
        self._wake.set()

    def stop(self, timeout: float = 0.5) -> None:
        """Release every note, send Stop when sending clock, and end the thread."""
        self._stopping = True
        self._wake.set()
        self.join(timeout)

    def run(self) -> None:
        name_this_thread()
        set_timer_slack(TIMER_SLACK_NS)  # sleep_until's short spin then covers the scheduler's latency alone
        sys.setswitchinterval(SWITCH_INTERVAL)
        gc.freeze()  # what was made before the loop (imports, model, engine) is left out of every collection: a
        # full one walked it for 11-18 ms of CPU here, more than a MIDI clock pulse's period at 240 BPM (10.4 ms)
        try:
            self.begin()
            while not self._stopping:
                self._step()
        except Exception as error:  # the loop must never die silently; its death stops the watchdog
            self._report(Failed(error))
        finally:
            self.finish()

    def begin(self) -> None:
        """What the loop does first: All Notes Off (now and again a second later) and the grid's origin. ``run``
        calls it; a driver in virtual time calls it, then ``run_until``."""
        now = self.time.now()
        self._send_now(self.engine.all_notes_off(now))  # what a killed earlier run left sounding
        self.engine.schedule(self.engine.all_notes_off(now + RELEASE_AGAIN))  # JACK may not deliver the first
        self._start_clock()

    def run_until(self, until: float) -> None:
        """Run the loop, in this thread, until its time reaches ``until`` (for a driver in virtual time)."""
        while self.time.now() < until:
            self._step()

    def _start_clock(self) -> None:
        if self.follower is not None:
            return
        origin = self.time.now() + START_DELAY
        self.engine.start(origin)
        self._bar_one(origin)
        self.internal = InternalClock(origin)
        if self.clock_out:
            self._pulses.extend([origin])
            self._send_raw([START])

    def _step(self) -> None:
        self.heartbeat = self.time.now()
        if not self._send_near(self.time.now()):  # nothing waits for the inbox's work when a send is near
            self._drain(self._drain_until())
        due = self.engine.next_due()
        behind = self.time.now() - self._oldest(due)
        if behind > STALE_AFTER:
            self._recover(behind)
            return
        self.quiet.next_send = self._next_send()
        now = self.time.now()
        self.collector.hold(self.quiet.next_send - COLLECTOR_AHEAD <= now)
        if self._send_near(now):
            pulse = self._pulses[0] if self._pulses else math.inf
            if due is None or pulse <= due:  # a pulse due with a note goes first, as a clock's pulse opens its step
                self._send_pulse(with_it=due is not None and due - pulse <= SAME_TIME)
            else:
                self._send_due(due)
        elif (deadline := self.engine.next_deadline()) is not None and deadline <= now:
            self._wake_engine()
        elif self.internal is not None and self.internal.next_boundary <= now:
            if self._handing_over(now):  # asleep (no spin), woken early by input
                if self.time.wait(self._wake, min(HAND_OVER_POLL, self._handed_until - now)):
                    self._wake.clear()
            else:
                self._tick_internal()
        else:
            self._wait(due, now)

    def _next_send(self) -> float:
        """When the next queued message or clock pulse is due (``math.inf`` when none is)."""
        due = self.engine.next_due()
        return min(math.inf if due is None else due, self._pulses[0] if self._pulses else math.inf)

    def _drain_until(self) -> float:
        """When the inbox's work must stop: the next send, or the step's next pulse while it is not queued yet.
        From a step's boundary pulse to its tick the step's pulses are not queued (the tick sets the step's
        tempo): the next is a sixth of a step on, and no work holds the loop past it meanwhile."""
        if self._pulses or not self.clock_out or self.internal is None:
            return self._next_send()
        return min(self._next_send(), self.internal.next_boundary + self.engine.step_seconds() / PULSES_PER_STEP)

    def _send_near(self, now: float) -> bool:
        """A message or pulse is due within SPIN_SECONDS: it is sent before any other work."""
        return self._next_send() - SPIN_SECONDS <= now

    def _oldest(self, due: float | None) -> float:
        """The earliest of the next send, clock pulse and internal tick: the loop is that far behind, if past."""
        oldest = math.inf if due is None else due
        if self._pulses:
            oldest = min(oldest, self._pulses[0])
        if self.internal is not None:
            oldest = min(oldest, self.internal.next_boundary)
        return oldest

    def _recover(self, behind: float) -> None:
        """The loop was ``behind`` by more than STALE_AFTER (the process was stopped, or starved): tick the
        missed grid steps (nothing was heard in them), drop what is too late to play, send the releases at once
        and say so in one ``late`` event, instead of playing the missed stretch in a burst."""
        now = self.time.now()
        stale = now - STALE_AFTER
        while self.internal is not None and self.internal.next_boundary <= stale:
            self._tick_internal()  # the grid keeps its bar lines; an answer drawn in the stretch is dropped too
        pulses = len(self._pulses)
        while self._pulses and self._pulses[0] <= stale:
            self._pulses.popleft()
        dropped = self.engine.drop_late(stale) + pulses - len(self._pulses)
        released = self.engine.pop_due(stale)
        self._send_now(released)
        data = {"behind_ms": round(behind * 1000), "dropped": dropped, "released": len(released)}
        self._report(Events([Event(now, "late", data)]))

    def _wait(self, due: float | None, now: float) -> None:
        deadline = now + MAX_WAIT
        if due is not None:
            deadline = min(deadline, due - SPIN_SECONDS)
        if self._pulses:
            deadline = min(deadline, self._pulses[0] - SPIN_SECONDS)
        if self.internal is not None:
            deadline = min(deadline, self.internal.next_boundary)
        if (engine := self.engine.next_deadline()) is not None:
            deadline = min(deadline, engine)
        if not self.collector.near:  # wake to hold the collector off before the send
            deadline = min(deadline, self.quiet.next_send - COLLECTOR_AHEAD)
        if self.time.wait(self._wake, max(0.0, deadline - now)):
            self._wake.clear()

    def _hand_over(self, sent: float) -> None:
        """A timed send went at ``sent``: a grid tick due within HAND_OVER_MAX waits for the output's next JACK
        cycle (``_handing_over``). The cycles are counted (a read of /proc) only when such a tick is due: not after
        a clock pulse or a note inside a step."""
        tick = math.inf if self.internal is None else self.internal.next_boundary
        self._handed = self._cycles() if tick < sent + HAND_OVER_MAX else None
        self._handed_until = -math.inf if self._handed is None else sent + HAND_OVER_MAX

    def _handing_over(self, now: float) -> bool:
        """Whether the JACK cycle that takes the last send is still to come: the output's client has not run since
        it, or ran less than HAND_OVER_AFTER ago; never past HAND_OVER_MAX after the send."""
        if now >= self._handed_until:
            return False
        if self._handed is not None and self._cycles() != self._handed:
            self._handed = None  # it ran (or is gone): the clients after it in the graph have HAND_OVER_AFTER
            self._handed_until = min(self._handed_until, now + HAND_OVER_AFTER)
        return now < self._handed_until

    def _send_due(self, due: float, slack: float = 0.0) -> None:
        """Send what is due by ``due`` (and ``slack`` after it). It is popped and made into bytes before the spin,
        so that after the spin nothing but the sends remain; the statistics and the recording follow them."""
        batch = [(timed, timed.message.bytes()) for timed in self.engine.pop_due(due + slack)]
        self.time.sleep_until(due)
        lateness = []
        for timed, data in batch:
            lateness.append(self.time.now() - timed.time)
            self._send_raw(data)
        self._hand_over(self.time.now())
        clicks = self.engine.settings.metronome_channel
        for (timed, _), late in zip(batch, lateness, strict=True):
            self.stats.record(late)
            if timed.message.type == "note_on" and timed.message.channel == clicks:
                self.click_stats.record(late)  # the metronome's clicks, also counted with every send
            self._record(timed)

    def _bar_one(self, origin: float) -> None:
        """The grid's origin is bar 1 of the session being recorded too."""
        if self.recording is not None:
            self.recording.start = origin

    def _record_grid(self) -> None:
        """The grid after a boundary, for the session being recorded (its tempo map and bars)."""
        if self.recording is not None:
            step, start = self.engine.open_step()
            self.recording.grid(step, start, self.engine.step_seconds(), self.engine.settings.meter)

    def _record(self, timed: Any) -> None:
        """Keep improvd's own messages in the session being recorded (the player's were kept as they came)."""
        if self.recording is not None and timed.source == "improvd":
            self.recording.add("improvd", timed.message, timed.time)

    def _send_pulse(self, with_it: bool) -> None:
        """Send the next clock pulse; ``with_it``: and at once, in the same pass, the messages due with it (a step's
        boundary, whose pulse opens it), which then wait for no other work of the loop (its look at the output's
        JACK cycles, its next pass)."""
        due = self._pulses.popleft()
        self.time.sleep_until(due)
        self.stats.record(self.time.now() - due)
        self._send_raw([CLOCK])
        if with_it:
            self._send_due(due, SAME_TIME)
        else:
            self._hand_over(self.time.now())

    def _tick_internal(self) -> None:
        if self._before_tick is not None and self._before_tick():
            self._drain(self._drain_until())
        boundary = self.internal.next_boundary
        self.engine.tick(boundary)
        self._record_grid()
        step = self.engine.step_seconds()
        self.internal.advance(self.engine.next_boundary())
        if self.clock_out:
            self._pulses.extend([*InternalClock.pulses(boundary, step)[1:], self.internal.next_boundary])
        self._events()

    def _wake_engine(self) -> None:
        """The engine's deadline between ticks (``next_deadline``) has come: the input queued before it is heard
        first, as before a tick, then the engine decides (its answer's first note is then due). Where the inbox's
        work had to stop for a send, the engine waits for the next pass: a note queued before the deadline must be
        heard before it (the tick does it at the latest; one fed later than the deadline meets it first)."""
        if self._before_tick is not None:
            self._before_tick()
        if not self._drain(self._drain_until()):
            return
        self.engine.wake(self.time.now())
        self._events()

    def _drain(self, until: float) -> bool:
        """Handle what waits in the inbox, but stop SPIN_SECONDS before ``until``, the next send (a message or a
        clock pulse; ``math.inf``: none). True when it found the inbox empty, False when it stopped for the send."""
        self._apply_changes()
        while self.time.now() < until - SPIN_SECONDS:
            try:
                arrival, item = self._inbox.get_nowait()
            except queue.Empty:
                return True
            try:
                self._handle(arrival, item)
            except Exception as error:  # one bad message or request must not end the loop
                self._report(Warned(error))
        self._events()
        return False

    def _apply_changes(self) -> None:
        if not self._changes:  # the usual case, read without the lock
            return
        with self._changes_lock:
            changes, self._changes = self._changes, {}
        if not changes:
            return
        try:
            self._send_now(self.engine.update(self.time.now(), **changes))
        except ValueError as error:  # validated by the caller against settings that changed since
            self._report(Warned(error))
            return
        self._report(Changed())

    def _handle(self, arrival: float | None, item: Any) -> None:
        if arrival is None:
            self._send_now(item(self.time.now()))
            self._report(Changed())
        elif isinstance(item, int):
            self._clock(item, arrival)
        elif self.follower is None or self.follower.running:
            if self.recording is not None:
                self.recording.add("player", item, arrival)
            self._send_now(self.engine.feed(item, arrival))

    def _clock(self, status: int, arrival: float) -> None:
        if self.follower is None:
            return
        handler = {
            CLOCK: self.follower.pulse,
            START: self.follower.start,
            CONTINUE: self.follower.continue_,
            STOP: self.follower.stop,
        }[status]
        for action in handler(arrival):
            if action.name == "start":
                self.engine.start(action.time)
                self._bar_one(action.time)
            elif action.name == "tick":
                self._follow_tempo()
                self.engine.tick(action.time)
                self._record_grid()
            else:
                self._send_now(self.engine.stop(action.time))
        self._events()

    def _follow_tempo(self) -> None:
        bpm = self.follower.bpm
        if bpm is not None and abs(bpm - self.engine.settings.bpm) >= BPM_FOLLOW:
            self.engine.update(bpm=round(bpm, 1))
            self._report(Tempo(round(bpm, 1)))

    def _events(self) -> None:
        events = self.engine.drain_events()
        if events:
            self._report(Events(events))

    def _send_now(self, messages: list) -> None:
        for timed in messages or ():
            self._send_raw(timed.message.bytes())
            self._record(timed)

    def _send_raw(self, data: list[int]) -> None:
        try:
            self._send(data)
        except Exception as error:  # a port that vanished mid-send: the port watcher reconnects it
            self._report(SendFailed(error))

    def finish(self) -> None:
        """The last word on the output: every sounding note off, All Notes Off, sustain off, clock Stop. ``run``
        ends with it, whatever ended the loop; a driver in virtual time calls it after ``run_until``."""
        self.collector.hold(False)
        now = self.time.now()
        try:
            self._send_now(self.engine.stop(now))
        except Exception as error:
            self._report(Failed(error))
        if self.clock_out:
            self._send_raw([STOP])
