"""The internal clock and the MIDI clock follower, driven with exact times."""

from __future__ import annotations

import math

import pytest

from improvd.core.clock import PULSES_PER_STEP, InternalClock, MidiClockFollower


def pulses(follower: MidiClockFollower, start: float, bpm: float, count: int) -> list:
    interval = 60 / bpm / 24
    actions = []
    for i in range(count):
        actions += follower.pulse(start + i * interval)
    return actions


def test_internal_clock_steps_and_tempo_change():
    clock = InternalClock(10.0)
    assert clock.advance(10.125) == 10.125
    assert clock.advance(10.1875) == 10.1875  # where the engine's grid puts the next boundary
    with pytest.raises(ValueError, match="is not after"):
        clock.advance(10.0)
    assert InternalClock.pulses(1.0, 0.06) == pytest.approx([1.0, 1.01, 1.02, 1.03, 1.04, 1.05])


def test_start_sets_the_origin_and_every_sixth_pulse_ticks():
    follower = MidiClockFollower()
    assert follower.start(0.0) == []
    actions = pulses(follower, 1.0, 120, 25)
    interval = 60 / 120 / 24
    assert actions[0].name == "start" and actions[0].time == pytest.approx(1.0)
    ticks = [a.time for a in actions if a.name == "tick"]
    assert ticks == pytest.approx([1.0 + k * PULSES_PER_STEP * interval for k in (1, 2, 3, 4)])


def test_tempo_is_read_over_a_beat_of_pulses():
    follower = MidiClockFollower()
    interval = 60 / 100 / 24
    for i in range(200):
        jitter = 0.0008 if i % 2 else -0.0008  # a jittery sender
        follower.pulse(i * interval + jitter)
    assert follower.bpm == pytest.approx(100, abs=0.1)
    for i in range(1, 25):
        follower.pulse(1000 + i * 60 / 150 / 24)
    assert follower.bpm == pytest.approx(150)  # a beat after a tempo change (or a pause), the new tempo


def followed_tempos(stall: float) -> list[float]:
    """The tempo read at every pulse after the first beat of a 200 BPM clock that JACK delivers at its 64-frame
    period boundaries, whose sender stalled for ``stall`` seconds at 1 s and then caught up."""
    follower, period, interval = MidiClockFollower(), 64 / 48000, 60 / 200 / 24
    tempos = []
    for i in range(24 * 16):
        at = i * interval
        at = 1.0 + stall if 1.0 < at < 1.0 + stall else at
        follower.pulse(math.ceil(at / period) * period)
        if i >= 24:
            tempos.append(follower.bpm)
    return tempos


def test_a_transport_period_or_a_stalled_sender_moves_the_tempo_little():
    assert max(abs(bpm - 200) for bpm in followed_tempos(0.0)) < 0.2  # an average of single intervals strayed 2
    assert max(abs(bpm - 200) for bpm in followed_tempos(0.03)) < 4  # ... and 25 BPM


def test_pulses_before_start_tick_nothing_and_stop_releases():
    follower = MidiClockFollower()
    assert pulses(follower, 0.0, 120, 30) == []
    follower.start(1.0)
    pulses(follower, 1.0, 120, 13)
    stop = follower.stop(2.0)
    assert [(a.name, a.time) for a in stop] == [("stop", 2.0)]
    assert pulses(follower, 3.0, 120, 12) == []
    assert follower.stop(4.0) == []  # a second Stop releases nothing more


def test_continue_resumes_counting_without_a_new_origin():
    follower = MidiClockFollower()
    follower.start(0.0)
    pulses(follower, 0.0, 120, 4)  # origin + 3 pulses
    follower.stop(0.1)
    follower.continue_(0.2)
    actions = pulses(follower, 0.2, 120, 3)
    assert [a.name for a in actions] == ["tick"]  # the 6th pulse after the origin, counting across the stop


def test_a_long_gap_does_not_spoil_the_tempo():
    follower = MidiClockFollower()
    pulses(follower, 0.0, 120, 50)
    follower.pulse(10.0)  # the sender paused for seconds
    assert follower.bpm == pytest.approx(120, abs=0.5)
