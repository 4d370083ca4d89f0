"""The metronome's clicks: which grid steps click, with which General MIDI percussion note and velocity.

A click falls on every beat of the metre (``improvd.core.touch.beat_steps``: a dotted quarter in 6/8), the bar's
first beat with the first of the two notes and a stronger velocity; the count-in's last bar clicks Claves on every
beat instead, so it is heard apart from the metronome and its end (where improvd listens) is known. The engine queues each click a step
ahead, so clicks go out through the same timing path as the answer's notes.
"""

from __future__ import annotations

from improvd.core.grid import bar_steps
from improvd.core.touch import beat_steps

DEFAULT_NOTES = (76, 77)  # General MIDI Hi Wood Block (the bar's first beat), Low Wood Block (the other beats)
COUNT_IN_NOTE = 75  # General MIDI Claves: every beat of the count-in's last bar
ACCENT_VELOCITY = 110
BEAT_VELOCITY = 75
CLICK_STEPS = 0.5  # a click's note_off comes half a step after its note_on


def click(step: int, meter: str, notes: tuple[int, int], count_in_end: bool = False) -> tuple[int, int] | None:
    """(note, velocity) of the click on grid step ``step``, or None where no beat starts; in the count-in's last
    bar (``count_in_end``) every beat clicks ``COUNT_IN_NOTE``, so the player hears where listening starts."""
    if step % bar_steps(meter) == 0:
        return (COUNT_IN_NOTE if count_in_end else notes[0]), ACCENT_VELOCITY
    if step % beat_steps(meter) == 0:
        return (COUNT_IN_NOTE if count_in_end else notes[1]), BEAT_VELOCITY
    return None
