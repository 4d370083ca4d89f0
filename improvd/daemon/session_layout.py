"""Where a recorded session's times fall in its MIDI file: the tempo map and the bars, from the grids the music
was played on (improvd.daemon.recorder.Session.grid). Each grid's bar lines are the file's: where a grid starts
mid-bar (a metre changed, a followed phrase began on its own beat), the bar before it is written short, with a
time signature of its own.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass

import mido

TICKS_PER_BEAT = 480
TICKS_PER_STEP = TICKS_PER_BEAT // 4


@dataclass(frozen=True)
class Grid:
    """From ``time`` on, step ``step`` (fractional: between boundaries) falls at ``time`` and each step lasts
    ``step_seconds``, in ``meter``; ``renumbered``: a grid of its own (a followed phrase, a MIDI Start), not the
    last one going on at a new tempo or metre."""

    time: float
    step: float
    step_seconds: float
    meter: tuple[int, int]
    renumbered: bool


@dataclass(frozen=True)
class Layout:
    """Where times fall in the file: anchors (time, tick, seconds per tick), and the tempo track's events."""

    times: list[float]
    anchors: list[tuple[int, float]]  # (tick, seconds per tick) from each time on
    meta: list[tuple[int, mido.MetaMessage]]

    def tick(self, time: float) -> int:
        index = bisect.bisect_right(self.times, time) - 1
        if index < 0:
            return 0  # before bar 1: at its start
        tick, seconds = self.anchors[index]
        return max(0, tick + round((time - self.times[index]) / seconds))


def _signature(steps: int) -> tuple[int, int]:
    """A bar of ``steps`` 16ths as a time signature: 4 -> 1/4, 6 -> 3/8, 12 -> 3/4, 5 -> 5/16."""
    denominator = 16
    while steps % 2 == 0 and denominator > 4:
        steps, denominator = steps // 2, denominator // 2
    return steps, denominator


def layout(grids: list[Grid], start: float, bpm: float, meter: tuple[int, int]) -> Layout:
    """The file's tempo map and bars for ``grids`` (bar 1 at ``start``; ``bpm`` and ``meter`` without grids)."""
    first = grids[0] if grids else Grid(start, 0, 15.0 / bpm, meter, True)
    at_start = first.step + (start - first.time) / first.step_seconds  # the first grid, carried to bar 1
    grids = [dataclasses.replace(first, time=start, step=at_start, renumbered=True), *grids[1:]]
    bars = _Bars()
    times, anchors = [], []
    previous, position = None, 0.0
    for g in grids:
        if previous is not None:
            position += (g.time - previous.time) / previous.step_seconds if g.renumbered else g.step - previous.step
        if previous is None or g.renumbered or g.meter != previous.meter:
            position = bars.begin(g, position, anchors[-1][0] / TICKS_PER_STEP if anchors else 0.0)
        tick = round(position * TICKS_PER_STEP)
        bars.meta.append((tick, mido.MetaMessage("set_tempo", tempo=round(g.step_seconds * 4e6))))
        times.append(g.time)
        anchors.append((tick, g.step_seconds / TICKS_PER_STEP))
        previous = g
    bars.meta.sort(key=lambda item: item[0])  # stable: a bar's signature before its tempo
    return Layout(times, anchors, bars.meta)


class _Bars:
    """The file's bar lines as the grids come: the last bar line and the bar's length, in steps."""

    def __init__(self) -> None:
        self.line, self.length = 0, 0
        self.meta: list[tuple[int, mido.MetaMessage]] = []

    def begin(self, grid: Grid, position: float, anchored: float) -> float:
        """Bars of ``grid`` from its first bar line on, ``grid.time`` falling at ``position`` (steps into the
        file); the bar before that line is written short where needed. Where ``grid.time`` falls now (never
        before ``anchored``, the last grid's place)."""
        steps = grid.meter[0] * 16 // grid.meter[1]
        rest = math.ceil(grid.step / steps - 1e-6) * steps - grid.step  # steps to the grid's next bar line
        if self.length:
            self.line += math.floor((position - self.line) / self.length + 1e-6) * self.length
        gap = round(position + rest - self.line)
        while self.length and gap > self.length:
            self.line, gap = self.line + self.length, gap - self.length
        if gap and gap != self.length:
            self.meta.append((self.line * TICKS_PER_STEP, _time_signature(_signature(gap))))
        self.line, self.length = self.line + gap, steps
        self.meta.append((self.line * TICKS_PER_STEP, _time_signature(grid.meter)))
        return max(self.line - rest, anchored)


def _time_signature(signature: tuple[int, int]) -> mido.MetaMessage:
    return mido.MetaMessage("time_signature", numerator=signature[0], denominator=signature[1])
