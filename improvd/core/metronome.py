"""The metronome's clicks: which grid steps click, with which General MIDI percussion note and velocity.

A click falls on every beat of the metre (``improvd.core.touch.beat_steps``: a dotted quarter in 6/8), the bar's
first beat with the first of the two notes and a stronger velocity. The engine queues each click a step
ahead, so clicks go out through the same timing path as the answer's notes.
"""

from __future__ import annotations

from improvd.core.grid import bar_steps
from improvd.core.touch import beat_steps

DEFAULT_NOTES = (76, 77)  # General MIDI Hi Wood Block (the bar's first beat), Low Wood Block (the other beats)
ACCENT_VELOCITY = 110
BEAT_VELOCITY = 75
CLICK_STEPS = 0.5  # a click's note_off comes half a step after its note_on


def click(step: int, meter: str, notes: tuple[int, int]) -> tuple[int, int] | None:
    """(note, velocity) of the click on grid step ``step``, or None where no beat starts."""
    if step % bar_steps(meter) == 0:
        return notes[0], ACCENT_VELOCITY
    if step % beat_steps(meter) == 0:
        return notes[1], BEAT_VELOCITY
    return None
