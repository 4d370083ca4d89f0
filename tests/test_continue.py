"""`improvd continue` end to end: every input format through the real engine and a tiny trained model."""

from __future__ import annotations

import argparse
import math
import wave
from pathlib import Path

import mido
import numpy as np
import pytest
from music21 import converter

from improvd.offline import audio
from improvd.offline.notation import essen_tune
from improvd.offline.writers import CALL_TRACK, RESPONSE_TRACK
from tests.helpers import ABC, KERN, write_midi
from tests.services import require_binary

pytest.importorskip("improvd.core.engine", reason="improvd.core.engine not built yet")


def notes_of_track(track: mido.MidiTrack, ticks_per_beat: int) -> list[tuple[int, float]]:
    """(pitch, onset in beats) of a track's notes."""
    now, found = 0, []
    for message in track:
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            found.append((message.note, now / ticks_per_beat))
    return found


def tracks(path: Path) -> dict[str, list[tuple[int, float]]]:
    midi = mido.MidiFile(path)
    named = {}
    for track in midi.tracks:
        names = [m.name for m in track if m.type == "track_name"]
        named[names[0] if names else ""] = notes_of_track(track, midi.ticks_per_beat)
    return named


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """One tune in every input format: abc and kern written here, MusicXML and MIDI from a real Essen tune."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "tune.abc").write_text(ABC)
    (folder / "tune.krn").write_text(KERN)
    score = essen_tune("erk5#5").score
    made = {
        ".abc": folder / "tune.abc",
        ".krn": folder / "tune.krn",
        ".musicxml": Path(score.write("musicxml", fp=folder / "erk5-xml.musicxml")),
        ".mxl": Path(score.write("mxl", fp=folder / "erk5-zip.mxl")),
    }
    scale = [60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72]
    made[".mid"] = write_midi(folder / "scale.mid", [(p, i * 240, i * 240 + 230) for i, p in enumerate(scale)], 100)
    return made


def run(*argv) -> int:
    """`improvd continue ARGV...` (this subcommand's own parser: the test needs no other subcommand)."""
    from improvd.offline import continue_command

    parser = argparse.ArgumentParser(prog="improvd continue")
    continue_command.add_arguments(parser)
    return continue_command.main(parser.parse_args([str(a) for a in argv]))


@pytest.mark.parametrize("suffix", [".mid", ".abc", ".krn", ".musicxml", ".mxl"])
def test_every_format_is_continued_after_the_call(suffix, inputs, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out.mid"
    assert run(inputs[suffix], "-o", out, "--model", tiny_model_dir, "--seed", 7, "--bars", 2) == 0
    assert "answered with" in capsys.readouterr().out
    found = tracks(out)
    call, response = found[CALL_TRACK], found[RESPONSE_TRACK]
    assert call and response
    assert min(onset for _, onset in response) > max(onset for _, onset in call)  # the response follows the call
    assert [p for p, _ in call] == [n.pitch for n in read_call_pitches(inputs[suffix])]


def read_call_pitches(path: Path):
    from improvd.offline.call_reader import read_call

    return read_call(path).notes


def test_same_input_and_seed_give_the_same_bytes(inputs, tiny_model_dir, tmp_path):
    outputs = [tmp_path / f"{name}.mid" for name in ("a", "b", "c", "d")]
    for out, seed in zip(outputs, (5, 5, 6, 7), strict=True):
        assert run(inputs[".abc"], "-o", out, "--model", tiny_model_dir, "--seed", seed, "--temperature", 1.5) == 0
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    assert len({out.read_bytes() for out in outputs}) > 1  # and the seed matters


def test_musicxml_holds_call_and_response(inputs, tiny_model_dir, tmp_path):
    out, score = tmp_path / "out.mid", tmp_path / "out.musicxml"
    assert (
        run(inputs[".krn"], "-o", out, "--musicxml", score, "--model", tiny_model_dir, "--seed", 2, "--steps", 16) == 0
    )
    (part,) = converter.parse(score).parts  # one staff: the answer follows the call
    found = tracks(out)
    pitches = [n.pitch.midi for n in part.stripTies().flatten().notes]
    assert pitches == [p for p, _ in found[CALL_TRACK] + found[RESPONSE_TRACK]]
    response_beats = [onset for _, onset in found[RESPONSE_TRACK]]
    assert max(response_beats) - min(response_beats) < 16 / 4  # 16 steps = 4 beats


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mid", "missing.mid: no such file"),
        (lambda d: _write(d / "empty.mid", b""), "empty.mid: not a readable MIDI file"),
        (lambda d: _write(d / "text.mid", b"C D E F G, my tune\n"), "text.mid: not a readable MIDI file"),
        (
            lambda d: write_midi(
                d / "chords.mid", [(p + b, b * 960, b * 960 + 900) for b in range(4) for p in (60, 64, 67)]
            ),
            "chords.mid: not a melody",
        ),
    ],
)
def test_bad_inputs_fail_clearly_and_write_nothing(make, message, tiny_model_dir, tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    target = tmp_path / "out"
    target.mkdir()
    assert (
        run(make(source), "-o", target / "out.mid", "--model", tiny_model_dir, "--musicxml", target / "o.musicxml") == 1
    )
    assert message in capsys.readouterr().err
    assert list(target.iterdir()) == []


def test_a_missing_model_fails_clearly(inputs, tmp_path, capsys):
    assert run(inputs[".abc"], "-o", tmp_path / "out.mid", "--model", tmp_path / "nomodel") == 1
    assert "nomodel: not a model directory" in capsys.readouterr().err
    assert not (tmp_path / "out.mid").exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def peak_dbfs(path: Path) -> float:
    with wave.open(str(path)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    return 20 * math.log10(np.abs(samples.astype(np.int32)).max() / 32767)


def test_a_wav_output_is_audio_normalised_to_minus_one_dbfs(inputs, tiny_model_dir, tmp_path):
    require_binary("fluidsynth", "fluidsynth")
    out = tmp_path / "answer.wav"
    assert run(inputs[".abc"], "-o", out, "--model", tiny_model_dir, "--seed", 7, "--bars", 2) == 0
    assert out.read_bytes()[:4] == b"RIFF" and out.read_bytes()[8:12] == b"WAVE"
    assert abs(peak_dbfs(out) - audio.PEAK_DBFS) < 0.1
    assert list(tmp_path.iterdir()) == [out]  # no MIDI left beside it


def test_a_wav_output_without_fluidsynth_is_refused_clearly(inputs, tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "answer.wav"
    assert run(inputs[".abc"], "-o", out, "--model", tiny_model_dir, "--seed", 7) == 1
    error = capsys.readouterr().err
    assert "cannot render a WAV: fluidsynth not found" in error and "apt-get install fluidsynth" in error
    assert not out.exists()


def test_normalise_brings_the_peak_to_minus_one_dbfs(tmp_path):
    path = tmp_path / "quiet.wav"
    quiet = (np.sin(np.linspace(0, 200, 4410)) * 4000).astype("<i2")  # -18 dBFS, like the demo before
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(quiet.tobytes())
    audio.normalise(path)
    assert abs(peak_dbfs(path) - -1.0) < 0.01
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (1, 44100, 4410)
