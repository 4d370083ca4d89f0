"""MIDI to WAV with the fluidsynth program and a General MIDI SoundFont, when both are installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from improvd.outputs import atomic_write

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian/Ubuntu: fluid-soundfont-gm
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora, Arch
    "/usr/share/soundfonts/default.sf2",
)
HOW_TO_GET = "install FluidSynth and a General MIDI SoundFont: sudo apt-get install fluidsynth fluid-soundfont-gm"
SAMPLE_RATE = 44100


class RenderError(RuntimeError):
    """fluidsynth is there but failed."""


def soundfont() -> Path | None:
    """The SoundFont to use: $IMPROVD_SOUNDFONT if set, else the first of SOUNDFONTS present."""
    candidates = [os.environ["IMPROVD_SOUNDFONT"]] if os.environ.get("IMPROVD_SOUNDFONT") else list(SOUNDFONTS)
    return next((Path(c) for c in candidates if Path(c).is_file()), None)


def missing() -> str | None:
    """Why audio cannot be rendered here (and how to fix it), or None when it can."""
    if shutil.which("fluidsynth") is None:
        return f"fluidsynth not found; {HOW_TO_GET}"
    if soundfont() is None:
        return f"no General MIDI SoundFont found (looked for {', '.join(SOUNDFONTS)}); {HOW_TO_GET}"
    return None


def render_wav(midi: str | Path, wav: str | Path) -> Path:
    """Render ``midi`` to a 16-bit stereo WAV; call ``missing()`` first."""
    command = [
        shutil.which("fluidsynth") or "fluidsynth",
        "-ni",
        "-q",
        "-g",
        "0.8",
        "-r",
        str(SAMPLE_RATE),
        "-T",
        "wav",
    ]

    def run(temporary: Path) -> None:
        result = subprocess.run(
            [*command, "-F", str(temporary), str(soundfont()), str(midi)], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0 or temporary.stat().st_size <= 44:
            raise RenderError(f"fluidsynth failed ({result.returncode}): {result.stderr.strip()[-500:]}")

    return atomic_write(wav, run)
