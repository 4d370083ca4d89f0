"""A note as played: what calls and answers are made of once they leave the engine's grid."""

from __future__ import annotations

from dataclasses import dataclass

from improvd.core.touch import DEFAULT_VELOCITY


@dataclass(frozen=True)
class PlayedNote:
    """One note as played: MIDI pitch, start and end in seconds, velocity."""

    pitch: int
    start: float
    end: float
    velocity: int = DEFAULT_VELOCITY
