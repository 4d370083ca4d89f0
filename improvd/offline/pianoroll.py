"""A piano roll PNG of call and response: two colours, bar lines, the key in the title.

matplotlib is imported only here, and only when a picture is drawn; without it
``PianoRollUnavailable`` says how to install it.
"""

from __future__ import annotations

from pathlib import Path

from improvd.core.notes import PlayedNote
from improvd.files import atomic_write

CALL_COLOUR, RESPONSE_COLOUR = "#1f6fb4", "#e8730c"
SIZE_INCHES, DPI = (12.0, 4.5), 100  # 1200 x 450 pixels
NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class PianoRollUnavailable(RuntimeError):
    """matplotlib is missing."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PianoRollUnavailable(
            "the piano roll needs matplotlib: pip install matplotlib (or pip install 'improvd[dev]')"
        ) from None
    return plt


def draw_piano_roll(
    path: str | Path,
    call: list[PlayedNote],
    response: list[PlayedNote],
    bpm: float,
    bar_lines: list[float],
    title: str,
) -> Path:
    """Write the picture; times are in seconds, drawn in beats; ``bar_lines`` in beats."""
    plt = _pyplot()
    beat = 60.0 / bpm
    figure, axes = plt.subplots(figsize=SIZE_INCHES, dpi=DPI)
    for notes, colour, label in ((call, CALL_COLOUR, "call"), (response, RESPONSE_COLOUR, "response (improvd)")):
        for index, n in enumerate(notes):
            axes.broken_barh(
                [(n.start / beat, (n.end - n.start) / beat)],
                (n.pitch - 0.4, 0.8),
                facecolors=colour,
                edgecolors="black",
                linewidth=0.4,
                label=label if index == 0 else None,
            )
    pitches = [n.pitch for n in call + response] or [60]
    low, high = min(pitches) - 2, max(pitches) + 2
    for bar in bar_lines:
        axes.axvline(bar, color="grey", linewidth=0.8, zorder=0)
    end = max([n.end for n in call + response] + [0.0]) / beat
    axes.set_xlim(0, max(end, *(bar_lines or [0.0])) + 0.25)
    axes.set_ylim(low, high)
    ticks = [p for p in range(low, high + 1) if p % 12 in (0, 4, 7)]
    axes.set_yticks(ticks, [f"{NAMES[p % 12]}{p // 12 - 1}" for p in ticks])
    axes.set_xlabel("beats (grey lines: bar lines)")
    axes.set_ylabel("pitch")
    axes.set_title(title, loc="left")
    axes.grid(axis="y", color="#dddddd", linewidth=0.5)
    axes.set_axisbelow(True)
    axes.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    figure.tight_layout()
    try:
        return atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI))
    finally:
        plt.close(figure)
