"""MIDI to WAV with the fluidsynth program and a General MIDI SoundFont, when both are installed.

Every WAV is normalised to a peak of PEAK_DBFS, so that it plays as loud as other music.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from improvd.files import atomic_write

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian/Ubuntu: fluid-soundfont-gm
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora, Arch
    "/usr/share/soundfonts/default.sf2",
)
HOW_TO_GET = "install FluidSynth and a General MIDI SoundFont: sudo apt-get install fluidsynth fluid-soundfont-gm"
SAMPLE_RATE = 44100
PEAK_DBFS = -1.0  # the loudest sample of a rendered WAV, in dB below full scale
FULL_SCALE = 32767  # of 16-bit samples


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
    """Render ``midi`` to a 16-bit stereo WAV at ``wav`` normalised to PEAK_DBFS; call ``missing()`` first."""
    return atomic_write(wav, lambda temporary: render_into(midi, temporary))


def render_into(midi: str | Path, wav: Path) -> None:
    """Render ``midi`` into the file ``wav`` (written in place; RenderError when fluidsynth fails)."""
    command = [shutil.which("fluidsynth") or "fluidsynth", "-ni", "-q", "-g", "0.8", "-r", str(SAMPLE_RATE)]
    command += ["-T", "wav", "-F", str(wav), str(soundfont()), str(midi)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or wav.stat().st_size <= 44:
        raise RenderError(f"fluidsynth failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    normalise(wav)


def audio_writer(write_midi: Callable[[Path], object]) -> Callable[[Path], None]:
    """A writer of a WAV file: what ``write_midi(path)`` writes as MIDI, rendered (for ``outputs.write_all``)."""

    def write(wav: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="improvd-") as folder:
            midi = Path(folder) / "performance.mid"
            write_midi(midi)
            render_into(midi, wav)

    return write


def normalise(path: Path, peak_dbfs: float = PEAK_DBFS) -> float:
    """Scale the 16-bit WAV at ``path`` so that its loudest sample is ``peak_dbfs``; return the gain (1 for
    silence, which is left as it is)."""
    with wave.open(str(path), "rb") as audio:
        params = audio.getparams()
        frames = audio.readframes(params.nframes)
    if params.sampwidth != 2:
        raise RenderError(f"{path}: expected 16-bit samples from fluidsynth, got {8 * params.sampwidth}-bit")
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak == 0:
        return 1.0
    gain = FULL_SCALE * 10 ** (peak_dbfs / 20) / peak
    scaled = np.clip(np.round(samples * gain), -FULL_SCALE - 1, FULL_SCALE).astype("<i2")
    with wave.open(str(path), "wb") as audio:
        audio.setparams(params)
        audio.writeframes(scaled.tobytes())
    return gain
