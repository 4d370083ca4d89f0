"""The timing thread's real loop in virtual time: the messages it sends and when, exactly.

``tests/virtual.py`` moves the clock only when the loop sleeps or waits, so every due time is met to the
microsecond and each assertion is about order and time as the product computed them, never about a wake-up.
"""

from __future__ import annotations

import math

import mido
import pytest

from improvd.core.engine import Engine, Settings, Timed
from improvd.core.model import load_model
from improvd.core.simulate import drive
from improvd.daemon.aside import Aside
from improvd.daemon.reports import Tempo
from improvd.daemon.timing import (
    CLOCK,
    HAND_OVER_AFTER,
    HAND_OVER_MAX,
    HAND_OVER_POLL,
    START,
    START_DELAY,
    STOP,
    TimingThread,
)
from tests.helpers import PHRASE, call
from tests.virtual import VirtualTime

BPM = 120
STEP = 60 / BPM / 4
NOTES = ("note_on", "note_off")


def daemon_loop(engine: Engine, virtual: VirtualTime, sent: list, reports: list, **options) -> TimingThread:
    """A TimingThread on ``engine`` whose sends land in ``sent`` as (virtual time, bytes)."""
    return TimingThread(
        engine,
        lambda data: sent.append((virtual.now(), list(data))) or True,
        reports.append,
        time_source=virtual,
        **options,
    )


FOUR_BARS = [((60, 65, 64, 71)[k % 4], 4 * k, 4) for k in range(16)]  # quarters to step 64: "music" ends it there


class Player:
    """Hands ``messages`` ((time, message), in order) to the loop as the virtual ``clock`` passes them, at the
    loop's look before each tick (its ``before_tick``); True when it handed one on."""

    def __init__(self, clock: VirtualTime, messages: list) -> None:
        self.clock, self.pending, self.timing = clock, list(messages), None

    def __call__(self) -> bool:
        heard = False
        while self.pending and self.pending[0][0] < self.clock.now():
            time, message = self.pending.pop(0)
            self.timing.feed(message, time)
            heard = True
        return heard


@pytest.mark.parametrize(
    ("changes", "notes"),
    [
        ({}, PHRASE),
        ({"phrase_end": "music"}, FOUR_BARS),
        ({"turns": 1}, PHRASE),
        ({"turns": 1, "follow_tempo": True}, PHRASE),
        ({"follow_tempo": True}, PHRASE),
    ],
    ids=["silence", "music", "turns", "turns followed", "silence followed"],
)
def test_the_loop_answers_a_call_exactly_as_the_simulated_driver_does(tiny_model_dir, changes, notes):
    """Same call, same seed: the daemon's loop and improvd.core.simulate.drive send the same notes at the same times,
    however the phrase end is found (followed, the loop's engine has the daemon's thread for the work aside, the
    driver's none).

    The player's messages reach the loop as the JACK reader hands them on: before the tick of the boundary after
    them (the look before each tick)."""
    model = load_model(tiny_model_dir)
    settings = Settings(bpm=BPM, min_call_steps=4, response_bars=2, **changes)
    messages = call(notes)
    expected = []
    for boundary in drive(Engine(model, settings, seed=7), messages, 110):
        expected += [(t.time, list(t.message.bytes())) for t in boundary.sent if t.message.type in NOTES]

    clock = VirtualTime(-START_DELAY)  # the grid's origin is then 0, as in the driver
    sent, reports, player = [], [], Player(clock, messages)
    aside = Aside() if settings.follow_tempo else None
    timing = daemon_loop(Engine(model, settings, seed=7, aside=aside), clock, sent, reports, before_tick=player)
    player.timing = timing
    timing.begin()
    timing.run_until(110 * STEP)
    notes = [(t, data) for t, data in sent if data[0] & 0xF0 in (0x80, 0x90)]
    assert any(data[0] & 0xF0 == 0x90 for _, data in expected)  # the driver answered
    assert [data for _, data in notes] == [data for _, data in expected]
    assert [t for t, _ in notes] == pytest.approx([t for t, _ in expected], abs=1e-9)


JACK_PERIOD = 64 / 48000  # bench/timing.py's dummy server
JACK_PHASE = 0.0004  # its cycles begin this long after each multiple of the period (virtual time)


class JackCycles:
    """The JACK cycles an output client has run by the virtual clock's time: one every ``period`` (None: a stopped
    client, which never runs); ``alsa``: None, no cycles to count (improvd.daemon.ports ``output_cycles``)."""

    def __init__(self, clock: VirtualTime, period: float | None, alsa: bool = False) -> None:
        self.clock, self.period, self.alsa = clock, period, alsa

    def __call__(self) -> int | None:
        if self.alsa:
            return None
        return 0 if self.period is None else math.floor((self.clock.now() - JACK_PHASE) / self.period)

    def next_after(self, time: float) -> float:
        """When the first cycle after ``time`` begins."""
        return JACK_PHASE + (math.floor((time - JACK_PHASE) / self.period) + 1) * self.period


@pytest.mark.parametrize("output", ["running", "stopped", "alsa"])
def test_a_tick_waits_for_the_jack_cycle_that_takes_the_send_before_it(tiny_model_dir, output):
    """A tick after a send waits, asleep, until the output's JACK client has run a cycle since it and
    HAND_OVER_AFTER more (at most HAND_OVER_MAX after the send: a stopped client; not at all under ALSA). The
    tick's work (the answer's drawing) kept that cycle's JACK threads from the CPU, and the notes reached the synth
    one or two JACK periods late (bench/timing.py). The answer is the same, sent at the same times, as
    improvd.core.simulate.drive's."""
    model = load_model(tiny_model_dir)
    settings = Settings(bpm=BPM, min_call_steps=4, response_bars=2)
    messages = call(PHRASE)
    expected, on_grid = [], set()
    for boundary in drive(Engine(model, settings, seed=7), messages, 110):
        expected += [(t.time, list(t.message.bytes())) for t in boundary.sent if t.message.type in NOTES]
        on_grid |= {t.time for t in boundary.sent if t.source == "improvd" and round(t.time / STEP, 6).is_integer()}
    clock = VirtualTime(-START_DELAY)
    cycles = JackCycles(clock, None if output == "stopped" else JACK_PERIOD, alsa=output == "alsa")
    sent, reports, player, ticks = [], [], Player(clock, messages), []
    engine = Engine(model, settings, seed=7)
    tick = engine.tick
    engine.tick = lambda boundary: ticks.append((clock.now(), boundary)) or tick(boundary)
    timing = daemon_loop(engine, clock, sent, reports, before_tick=player, cycles=cycles)
    player.timing = timing
    timing.begin()
    timing.run_until(110 * STEP)
    notes = [(t, data) for t, data in sent if data[0] & 0xF0 in (0x80, 0x90)]
    assert [data for _, data in notes] == [data for _, data in expected]
    assert [t for t, _ in notes] == pytest.approx([t for t, _ in expected], abs=1e-9)
    waited = 0
    for at, boundary in ticks:
        before = [t for t, _ in sent if boundary - 1e-9 <= t <= at]  # sent at this boundary, before its tick
        if not before:
            assert at == pytest.approx(boundary, abs=1e-9)
            continue
        waited += 1
        if output == "running":
            ran = cycles.next_after(before[-1])
            assert ran + HAND_OVER_AFTER - 1e-9 <= at < ran + HAND_OVER_AFTER + HAND_OVER_POLL
        elif output == "stopped":
            assert at == pytest.approx(before[-1] + HAND_OVER_MAX, abs=1e-9)
        else:
            assert at == pytest.approx(boundary, abs=1e-9)
    assert waited == len(on_grid)  # each of the answer's steps is sent before its boundary's tick


def test_the_jack_cycles_are_counted_only_for_a_tick_due_after_a_send(tiny_model_dir):
    """Counting the output's cycles reads /proc on the timing thread: with clock out, after each of the 6 pulses a
    16th, though only the step's first (its boundary's) has a tick after it within HAND_OVER_MAX. Now the cycles
    are counted only after a send that a tick follows that soon (and while that tick waits for them)."""
    clock = VirtualTime(-START_DELAY)
    cycles = JackCycles(clock, JACK_PERIOD)
    read_at = []

    def counted() -> int | None:
        read_at.append(clock.now())
        return cycles()

    sent: list = []
    timing = daemon_loop(
        Engine(load_model(tiny_model_dir), Settings(bpm=BPM)), clock, sent, [], clock_out=True, cycles=counted
    )
    timing.begin()
    timing.run_until(40 * STEP)
    pulses = [t for t, data in sent if data == [0xF8]]
    assert len(pulses) >= 6 * 38  # the clock ran (6 pulses a 16th)
    assert read_at and all(t % STEP < HAND_OVER_MAX + 1e-9 for t in read_at)  # after a boundary's pulse only


def test_with_clock_out_the_notes_due_with_a_boundary_s_pulse_go_out_in_the_same_pass(tiny_model_dir):
    """A step's boundary opens with its clock pulse, and the answer's notes due there follow it at once: the loop
    neither counts the output's JACK cycles (the hand-over's /proc read) nor starts another pass between them, which
    had made those notes the late sends of the clock-out case (bench/timing.py: 4x the reference's p99)."""
    model = load_model(tiny_model_dir)
    settings = Settings(bpm=BPM, min_call_steps=4, response_bars=2)
    clock = VirtualTime(-START_DELAY)
    cycles, log, player = JackCycles(clock, JACK_PERIOD), [], Player(clock, call(PHRASE))

    def counted() -> int | None:
        log.append(("read", clock.now(), []))
        return cycles()

    timing = TimingThread(
        Engine(model, settings, seed=7),
        lambda data: log.append(("sent", clock.now(), list(data))) or True,
        [].append,
        time_source=clock,
        clock_out=True,
        cycles=counted,
        before_tick=player,
    )
    player.timing = timing
    timing.begin()
    timing.run_until(110 * STEP)
    with_notes = 0
    for k, (kind, at, data) in enumerate(log):
        if kind != "sent" or data != [CLOCK] or not round(at / STEP, 6).is_integer():
            continue
        after = [entry for entry in log[k + 1 :] if entry[1] <= at + 1e-9]
        notes = [i for i, (kind, _, data) in enumerate(after) if kind == "sent" and data[0] & 0xF0 in (0x80, 0x90)]
        if notes:
            with_notes += 1
            assert all(kind == "sent" for kind, _, _ in after[: notes[-1]])
    assert with_notes >= 8  # the answer's steps, each with its boundary's pulse


@pytest.mark.parametrize(("late", "answered"), [(None, True), (0.005, False)], ids=["silent", "a note in the grace"])
def test_the_loop_wakes_for_the_bar_lines_grace_between_ticks(tiny_model_dir, late, answered):
    """A call of 4 bars released on its bar line with ``phrase_end = "music"``: the loop wakes at the grace after the
    bar line (10 ms: the call played on the grid), not at the next tick, and the answer's first note goes out then,
    at the same time as improvd.core.simulate.drive sends it. A note played 5 ms after the bar line reaches the loop
    before it decides (the look before it, as before a tick) and continues the call."""
    model = load_model(tiny_model_dir)
    settings = Settings(bpm=BPM, min_call_steps=4, response_bars=2, phrase_end="music", thru=False)
    extra = [] if late is None else [(64 * STEP + late, mido.Message("note_on", note=60, velocity=90))]
    messages = sorted(call(FOUR_BARS) + extra, key=lambda item: item[0])
    expected = [t.time for b in drive(Engine(model, settings, seed=7), messages, 70) for t in b.sent if t.time > 8.0]
    clock = VirtualTime(-START_DELAY)
    sent, reports, player = [], [], Player(clock, messages)
    timing = daemon_loop(Engine(model, settings, seed=7), clock, sent, reports, before_tick=player)
    player.timing = timing
    timing.begin()
    timing.run_until(70 * STEP)
    ons = [t for t, data in sent if data[0] & 0xF0 == 0x90 and data[2] and t > 64 * STEP - 1e-9]
    assert (ons[:1] == [pytest.approx(64 * STEP + 0.010, abs=1e-9)]) is answered
    assert [t for t, data in sent if t > 8.0 and data[0] & 0xF0 in (0x80, 0x90)] == pytest.approx(expected, abs=1e-9)


def test_midi_clock_ticks_the_engine_every_sixth_pulse_and_its_tempo_is_followed(tiny_model_dir):
    ticks: list[float] = []

    class Ticked(Engine):
        def tick(self, time: float) -> None:
            ticks.append(time)
            super().tick(time)

    clock, sent, reports = VirtualTime(0.0), [], []
    timing = daemon_loop(Ticked(load_model(tiny_model_dir), Settings(bpm=BPM)), clock, sent, reports, clock="midi")
    timing.begin()
    pulse = 60 / 100 / 24  # the master plays 100 BPM
    timing.clock_message(START, 0.0)
    for k in range(6 * 12 + 1):
        clock.time = 0.1 + k * pulse
        timing.clock_message(CLOCK, clock.time)
        timing.run_until(clock.time + 1e-6)
    assert ticks == pytest.approx([0.1 + 6 * k * pulse for k in range(1, 13)])  # the first pulse is the origin
    assert any(isinstance(report, Tempo) and report.bpm == pytest.approx(100, abs=0.5) for report in reports)
    assert timing.engine.settings.bpm == pytest.approx(100, abs=0.5)


def test_an_answer_under_midi_clock_lands_on_the_masters_pulses(tiny_model_dir):
    """A master speeding up from 200 BPM by 4% over 16 bars (the daemon's own tempo is 120), its pulses delivered at
    JACK's 64-frame period boundaries (1.3 ms): every answer note starts within 2 ms of the pulse that opens its step,
    though the answer is queued ahead: each tick moves what is queued to the grid the pulses now give."""
    clock, sent, reports = VirtualTime(0.0), [], []
    settings = Settings(bpm=BPM, min_call_steps=4, response_bars=2)
    timing = daemon_loop(Engine(load_model(tiny_model_dir), settings, seed=7), clock, sent, reports, clock="midi")
    timing.begin()
    period, count = 64 / 48000, 6 * 256
    intervals = [60 / 24 / (200 * (1 + 0.04 * k / count)) for k in range(count)]
    pulses = [math.ceil((0.1 + sum(intervals[:k])) / period) * period for k in range(count + 1)]
    player = [(pulses[0] + t, message) for t, message in call(PHRASE, step=6 * intervals[0])]
    timing.clock_message(START, 0.0)
    for at in pulses:
        timing.run_until(at)
        clock.time = max(clock.time, at)
        while player and player[0][0] <= at:
            timing.feed(player[0][1], player.pop(0)[0])
        timing.clock_message(CLOCK, at)
    timing.run_until(pulses[-1])
    answer = [t for t, data in sent if data[0] & 0xF0 == 0x90 and data[2] > 0]
    assert len(answer) >= 4
    assert max(min(abs(t - step) for step in pulses[::6]) for t in answer) < 0.002  # queued once and left: 14 ms


def test_clock_out_sends_start_then_24_pulses_a_quarter_on_the_grid(tiny_model_dir):
    clock, sent, reports = VirtualTime(0.0), [], []
    timing = daemon_loop(Engine(load_model(tiny_model_dir), Settings(bpm=BPM)), clock, sent, reports, clock_out=True)
    timing.begin()
    timing.run_until(1.0)
    timing.finish()
    system = [(t, data[0]) for t, data in sent if data[0] in (CLOCK, START, STOP)]
    assert system[0] == (0.0, START)  # at once; the first pulse is the grid's origin
    pulses = [t for t, status in system if status == CLOCK]
    assert pulses[:25] == pytest.approx([START_DELAY + k * 0.5 / 24 for k in range(25)])
    assert system[-1] == (1.0, STOP) and math.isclose(sent[-1][0], 1.0)


PULSE = 60 / 240 / 24  # a MIDI clock pulse's period at 240 BPM


def clock_out_pulses(sent: list) -> list[float]:
    return [t for t, data in sent if data == [CLOCK]]


def test_a_flood_of_input_is_handled_between_clock_pulses_not_through_them(tiny_model_dir):
    """The inbox is drained up to SPIN_SECONDS before the next send, clock pulses included: with no note queued
    for a while (no call, no answer) 200 player messages, each costing the loop 0.4 ms, were all handled at once
    and the clock pulses due meanwhile went out up to 80 ms late. Each pulse now goes at its due time, in order,
    and the flood is handled in the gaps between them."""
    clock, sent, reports = VirtualTime(0.0), [], []
    fed = []

    class Costly(Engine):
        def feed(self, message: mido.Message, time: float) -> list:
            clock.time += 0.0004  # handling one message takes the loop this long
            fed.append(clock.time)
            return super().feed(message, time)

    engine = Costly(load_model(tiny_model_dir), Settings(bpm=240))
    timing = daemon_loop(engine, clock, sent, reports, clock_out=True)
    timing.begin()
    timing.run_until(0.2)
    for k in range(200):
        timing.feed(mido.Message("control_change", control=1, value=k % 128), clock.now())
    timing.run_until(0.5)
    pulses = clock_out_pulses(sent)
    assert len(fed) == 200 and fed[-1] > 0.2 + 200 * 0.0004  # all handled, in more than one go
    assert len(pulses) == 1 + int((0.5 - START_DELAY) / PULSE)
    assert pulses == pytest.approx([START_DELAY + k * PULSE for k in range(len(pulses))], abs=1e-9)


def test_a_note_due_just_before_a_pulse_goes_first_and_each_at_its_time(tiny_model_dir):
    """The loop sends whichever is due first, a queued message or a clock pulse, each on its own deadline. A
    tick whose work ended within SPIN_SECONDS of both a pulse and a note due 0.3 ms before it sent the pulse
    first and the note after it, late by the difference."""
    clock, sent, reports = VirtualTime(0.0), [], []
    notes: list[float] = []

    class Busy(Engine):
        def tick(self, time: float) -> None:
            super().tick(time)
            if len(notes) < 4:
                notes.append(time + PULSE - 0.0003)  # just before the step's second pulse
                self.schedule([Timed(notes[-1], mido.Message("note_on", channel=5, note=60, velocity=1))])
                clock.time = time + PULSE - 0.0007  # the tick's work ends within SPIN_SECONDS of both

    timing = daemon_loop(Busy(load_model(tiny_model_dir), Settings(bpm=240)), clock, sent, reports, clock_out=True)
    timing.begin()
    timing.run_until(0.5)
    heard = [(t, data) for t, data in sent if data == [CLOCK] or data[:2] == [0x95, 60]]
    assert [t for t, data in heard if data != [CLOCK]] == pytest.approx(notes, abs=1e-9)
    assert [t for t, _ in heard] == sorted(t for t, _ in heard)
    pulses = clock_out_pulses(sent)
    assert pulses == pytest.approx([START_DELAY + k * PULSE for k in range(len(pulses))], abs=1e-9)


def test_finish_releases_what_sounds_and_sends_all_notes_off_last(tiny_model_dir):
    """Whatever ends the loop, ``finish`` has the last word: a note the player left held by thru, then the answer's
    sounding notes, are released, then All Notes Off and sustain off."""
    clock, sent, reports = VirtualTime(0.0), [], []
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=BPM, thru=True))
    timing = daemon_loop(engine, clock, sent, reports)
    timing.begin()
    timing.run_until(0.2)
    played = clock.now()
    timing.feed(mido.Message("note_on", note=64, velocity=80), played)
    timing.run_until(played + 0.01)
    assert (played, [0x90, 64, 80]) in sent  # passed through at once
    before = len(sent)
    timing.finish()
    last = [data for _, data in sent[before:]]
    assert [0x80, 64, 0] in last or [0x90, 64, 0] in last
    assert last[-2:] == [[0xB0, 123, 0], [0xB0, 64, 0]]


def test_after_a_stall_what_is_too_late_is_dropped_and_released_not_burst_out(tiny_model_dir):
    """The tester's find: SIGSTOP for 9 s mid-answer, then SIGCONT, sent the rest of the answer in one burst 9.4 s
    late. Now the notes too late to play are dropped, the sounding ones released at once, a ``late`` event says
    so, and the grid goes on where it was: a call played after the stall is answered on the grid's steps."""
    clock = VirtualTime(-START_DELAY)  # the grid's origin is 0
    sent, reports = [], []
    settings = Settings(bpm=BPM, min_call_steps=4, response_bars=2, gate=1.0, metronome=True)
    pending = call(PHRASE)

    def hand_on() -> bool:
        while pending and pending[0][0] < clock.now():
            timing.feed(pending[0][1], pending.pop(0)[0])
        return True

    timing = daemon_loop(
        Engine(load_model(tiny_model_dir), settings, seed=7), clock, sent, reports, before_tick=hand_on
    )
    timing.begin()
    for _ in range(100):
        timing.run_until(clock.now() + STEP / 2)
        if any(data[0] == 0x90 and data[2] > 0 for _, data in sent):  # an answer note sounds (clicks: 0x99)
            break
    timing.run_until(clock.now() + STEP / 4)
    stalled = clock.now()
    clock.time = resumed = stalled + 9.0  # SIGSTOP ... SIGCONT
    timing.run_until(resumed + 0.001)
    burst = [data for t, data in sent if t >= resumed and data[0] & 0xF0 in (0x80, 0x90)]
    assert burst and all(data[0] & 0xF0 == 0x80 or data[2] == 0 for data in burst)  # releases only
    assert not any(sounding(sent, resumed))
    events = [e for r in reports if hasattr(r, "events") for e in r.events]
    (late,) = [e for e in events if e.name == "late"]
    assert late.data["behind_ms"] >= 9000 and late.data["dropped"] > 0 and late.data["released"] == len(burst)
    pending += [(resumed + 1.0 + t, message) for t, message in call(PHRASE)]  # anywhere: the answer keeps to the grid
    timing.run_until(resumed + 6.0)
    again = [t for t, data in sent if t > resumed + 1.0 and data[0] == 0x90 and data[2] > 0]
    assert len(again) >= 2 and all(abs(t / STEP - round(t / STEP)) < 1e-6 for t in again)
    assert [e.name for e in events].count("late") == 1  # one event for the whole stretch


def sounding(sent: list, until: float) -> set[tuple[int, int]]:
    """(status channel, note) whose last message up to ``until`` was a note_on."""
    on: set[tuple[int, int]] = set()
    for t, data in sent:
        if t <= until and data[0] & 0xF0 in (0x80, 0x90):
            key = (data[0] & 0x0F, data[1])
            (on.add if data[0] & 0xF0 == 0x90 and data[2] > 0 else on.discard)(key)
    return on
