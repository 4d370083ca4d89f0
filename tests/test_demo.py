"""`improvd demo`: the four files, a real picture, real sound, and MIDI and MusicXML that agree."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import struct
import sys
import wave

import numpy as np
import pytest
from music21 import converter

from improvd.core.model import load_model
from improvd.offline.pianoroll import DPI, SIZE_INCHES
from improvd.offline.writers import CALL_TRACK, RESPONSE_TRACK
from tests.services import require_binary

pytest.importorskip("improvd.core.engine", reason="improvd.core.engine not built yet")
demo_module = pytest.importorskip("improvd.offline.demo")


def improvd_demo(*argv) -> int:
    """`improvd demo ARGV...` (this subcommand's own parser: the test needs no other subcommand)."""
    parser = argparse.ArgumentParser(prog="improvd demo")
    demo_module.add_arguments(parser)
    return demo_module.main(parser.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def demo(tiny_model_dir, tmp_path_factory):
    """One demo run (with audio when FluidSynth is installed); its folder and printed output."""
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert improvd_demo("--out", out, "--model", tiny_model_dir, "--seed", 3) == 0
    return out, printed.getvalue()


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_demo_writes_midi_musicxml_and_a_real_png(demo):
    out, printed = demo
    for name in ("demo.mid", "demo.musicxml", "demo.png"):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in printed
    assert png_size(out / "demo.png") == (int(SIZE_INCHES[0] * DPI), int(SIZE_INCHES[1] * DPI))
    assert f"tune {demo_module.DEMO_TUNE}" in printed  # the tiny model's card names no demo tune


def test_midi_and_musicxml_parse_back_to_the_same_notes(demo):
    """The MIDI file's two tracks and the score's one staff (the answer following the call) hold the same notes
    at the same places, counted from the first note (the score starts at the pickup, the MIDI file a bar before)."""
    out, _ = demo
    from_midi = converter.parse(out / "demo.mid").parts
    (from_xml,) = converter.parse(out / "demo.musicxml").parts

    def notes(parts):
        found = sorted((float(n.offset), n.pitch.midi) for part in parts for n in part.stripTies().flatten().notes)
        return [(offset - found[0][0], pitch) for offset, pitch in found]

    assert [p.partName for p in from_midi] == [CALL_TRACK, RESPONSE_TRACK]
    assert notes(from_midi) and notes(from_midi) == notes([from_xml])


def test_demo_wav_is_real_sound(demo):
    require_binary("fluidsynth", "fluidsynth")
    out, printed = demo
    with wave.open(str(out / "demo.wav")) as audio:
        frames = np.frombuffer(audio.readframes(audio.getnframes()), np.int16)
        seconds = audio.getnframes() / audio.getframerate()
    assert seconds > 4
    peak = np.abs(frames.astype(np.int32)).max() / 32767
    assert abs(20 * np.log10(peak) - -1.0) < 0.1  # normalised: as loud as other music (it peaked at -17.6 dBFS)
    assert "audio:" in printed


def test_default_tune_comes_from_the_model_card(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    card = json.loads((copy / "model.json").read_text())
    card["test_tunes"] = ["erk5#7", "erk5#8"]  # the model never saw these: the demo must take one of them
    (copy / "model.json").write_text(json.dumps(card))
    assert demo_module.default_tune(load_model(copy)) == "erk5#7"
    card["test_tunes"] = ["erk5#7", demo_module.DEMO_TUNE]
    (copy / "model.json").write_text(json.dumps(card))
    assert demo_module.default_tune(load_model(copy)) == demo_module.DEMO_TUNE
    card["demo_tune"] = "irl#2"
    (copy / "model.json").write_text(json.dumps(card))
    assert demo_module.default_tune(load_model(copy)) == "irl#2"
    assert demo_module.default_tune(load_model(tiny_model_dir)) == demo_module.DEMO_TUNE


@pytest.mark.parametrize("tune", ["erk5#999", "nosuch#1"])
def test_an_unknown_tune_fails_clearly(tiny_model_dir, tmp_path, capsys, tune):
    assert improvd_demo("--out", tmp_path, "--model", tiny_model_dir, "--tune", tune) == 1
    error = capsys.readouterr().err
    assert f"no Essen tune '{tune}'" in error and "site-packages" not in error  # not music21's own path
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_the_piano_roll_says_how_to_get_it(monkeypatch, tmp_path):
    from improvd.offline.pianoroll import PianoRollUnavailable, draw_piano_roll

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(PianoRollUnavailable, match=r"pip install matplotlib"):
        draw_piano_roll(tmp_path / "x.png", [], [], 120, [], "title")
    assert not (tmp_path / "x.png").exists()


def test_without_fluidsynth_audio_is_skipped_with_the_packages_to_install(monkeypatch, tmp_path):
    from improvd.offline import audio

    monkeypatch.setenv("PATH", str(tmp_path))  # no fluidsynth on it
    assert "apt-get install fluidsynth fluid-soundfont-gm" in audio.missing()
