"""The inputs of a lookback model: where the next step falls in its bar, and what sounded one and two bars before it.

A model whose card says ``"input": "lookback"`` takes at each step, beside the symbol heard (one-hot), four more
one-hot parts that describe the step it predicts, as Magenta's lookback RNN does:

* the symbol one bar back and two bars back from that step (the song end ``/`` where that is before the song's
  start);
* its position in the bar (16ths from the bar line) and the 16ths left before the next bar line, each told apart
  up to ``PLACES`` (a position past them is told as the last).

A step whose bar is unknown (the song ends between songs, a call before its metre is known) has the four parts
all zero. The first LSTM layer's kernel has ``input_width(vocab)`` rows, in that order: symbol, one bar back, two
bars back, position, left.
"""

from __future__ import annotations

from typing import NamedTuple

PLACES = 32  # positions in a bar told apart (two bars of 4/4 in 16ths)
MAX_LOOKBACK = 2 * 64  # steps of history a runtime keeps: two bars of the longest bar the engine plays (16/4)


class Place(NamedTuple):
    """A step's position in its bar (16ths from the bar line) and the bar's length in 16ths."""

    position: int
    bar_steps: int

    def following(self) -> Place:
        """The place of the step after this one (the next bar starts at position 0)."""
        return Place((self.position + 1) % self.bar_steps, self.bar_steps)

    def rows(self) -> tuple[int, int]:
        """The one-hot rows of the position and of the 16ths left in the bar (each below PLACES)."""
        return min(self.position, PLACES - 1), min(self.bar_steps - 1 - self.position, PLACES - 1)


def input_width(vocab: int) -> int:
    """Rows of a lookback model's first kernel: the symbol, two bars of lookback, position and 16ths left."""
    return 3 * vocab + 2 * PLACES
