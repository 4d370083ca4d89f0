"""What the timing thread reports to the daemon's loop: one small frozen type per kind, dispatched by type.

The timing thread only hands a report over (``TimingThread``'s ``report``
parameter); the daemon's asyncio loop logs it, publishes it or ends the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from improvd.core.engine import Event


@dataclass(frozen=True)
class Failed:
    """The timing loop died (or releasing the notes at its end raised): the daemon cannot go on."""

    error: BaseException


@dataclass(frozen=True)
class Warned:
    """One input message or queued action raised; it was skipped and the loop goes on."""

    error: BaseException


@dataclass(frozen=True)
class Changed:
    """A queued action ran: the state may read differently."""


@dataclass(frozen=True)
class Events:
    """The engine's events, in the order they happened."""

    events: list[Event]


@dataclass(frozen=True)
class Tempo:
    """The engine follows MIDI clock at a new tempo."""

    bpm: float


@dataclass(frozen=True)
class SendFailed:
    """A send on the output raised (a port that vanished): the port watcher reconnects it."""

    error: BaseException


Report = Failed | Warned | Changed | Events | Tempo | SendFailed
