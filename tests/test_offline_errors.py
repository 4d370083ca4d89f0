"""`improvd continue` and `improvd demo` errors are one line, exit status 1, nothing written (issue 29: a model of
"060" and `--bpm inf` printed tracebacks; a MIDI file at 1 µs a quarter said its onsets were chords, an SMPTE-timed
one that it held no notes)."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import pytest

from improvd.cli import main as cli_main
from improvd.offline.call_reader import CallError, read_call
from tests.helpers import write_model

MELODY = [(60, 0, 480), (62, 480, 960), (64, 960, 1920)]


def melody_midi(path: Path, tempo: int = 500_000, changes: dict[int, int] | None = None) -> Path:
    """MELODY at ``tempo`` (microseconds a quarter); ``changes`` sets another tempo just before the note of that index."""
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo)])
    now = 0
    for index, (pitch, start, end) in enumerate(MELODY):
        if index in (changes or {}):
            track.append(mido.MetaMessage("set_tempo", tempo=changes[index], time=start - now))
            now = start
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=start - now))
        track.append(mido.Message("note_off", note=pitch, time=end - start))
        now = end
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(path)
    return path


def run_continue(tmp_path: Path, capsys, *extra: str) -> str:
    """Run `improvd continue` on a good melody with ``extra``; assert exit 1, one line and nothing written."""
    tune = melody_midi(tmp_path / "tune.mid")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli_main(["continue", str(tune), "-o", str(tmp_path / "out.mid"), "--seed", "1", *extra]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return error


@pytest.mark.parametrize("bpm", ["inf", "nan", "0", "-120", "1e9"])
def test_continue_with_a_tempo_the_engine_cannot_play_is_one_line(tmp_path, capsys, bpm):
    """--bpm inf raised ZeroDivisionError (a traceback)."""
    error = run_continue(tmp_path, capsys, "--bpm", bpm)
    assert f"--bpm {float(bpm):g}: give a tempo from 20 to 300 BPM" in error


def test_continue_with_a_model_the_engine_cannot_use_is_one_line(tmp_path, capsys):
    """A vocabulary of "060" raised KeyError('60') (a traceback)."""
    directory = write_model(tmp_path / "models" / "m")
    card = json.loads((directory / "model.json").read_text())
    card["vocabulary"] = [s if s != "60" else "060" for s in card["vocabulary"]]
    (directory / "model.json").write_text(json.dumps(card))
    error = run_continue(tmp_path, capsys, "--model", str(directory))
    assert "model.json: bad vocabulary (step 3: '060' is not a pitch" in error


def test_a_midi_file_at_one_microsecond_a_quarter_says_its_tempo_is_wrong(tmp_path):
    """It said "not a melody: all 1 onsets are chords"."""
    path = melody_midi(tmp_path / "fast.mid", tempo=1)
    with pytest.raises(CallError, match=r"fast.mid: its tempo of 6e\+07 BPM is outside 20 to 300; give --bpm"):
        read_call(path)
    call = read_call(path, bpm=120)  # stretched to a tempo the engine plays: the melody is there
    assert [n.pitch for n in call.notes] == [60, 62, 64]
    assert call.notes[-1].end == pytest.approx(2.0)


def test_an_smpte_timed_midi_file_says_so(tmp_path):
    """It said "holds no notes" (mido reads the division signed, so every time ran backwards)."""
    path = melody_midi(tmp_path / "smpte.mid")
    data = bytearray(path.read_bytes())
    assert data[12:14] == (480).to_bytes(2, "big")
    data[12:14] = bytes([0xE7, 40])  # -25 frames a second, 40 ticks a frame
    path.write_bytes(bytes(data))
    with pytest.raises(CallError, match=r"smpte.mid: SMPTE timing \(frames per second\) is not supported"):
        read_call(path)


def test_a_midi_file_whose_tempo_changes_before_its_first_note_is_read_at_the_tempo_its_notes_play(tmp_path):
    """120 BPM at its start, 1 µs a quarter from its first note: it said "not a melody: all 1 onsets are chords"."""
    path = melody_midi(tmp_path / "fast.mid", changes={0: 1})
    with pytest.raises(CallError, match=r"fast.mid: its tempo of 6e\+07 BPM is outside 20 to 300; give --bpm"):
        read_call(path)
    assert read_call(melody_midi(tmp_path / "slow.mid", tempo=1, changes={0: 1_000_000})).bpm == 60


def test_a_midi_file_whose_tempo_changes_under_its_notes_to_one_the_engine_cannot_play_says_where(tmp_path):
    """At 1 µs a quarter from its second note on, its last two notes fell together: read as a call of 2 notes (or,
    with fewer before, "all 1 onsets are chords"). With --bpm it is played at that one tempo, beat for beat."""
    path = melody_midi(tmp_path / "rushed.mid", changes={1: 1})
    with pytest.raises(CallError, match=r"rushed.mid: its tempo changes to 6e\+07 BPM at beat 1, outside 20 to 300"):
        read_call(path)
    call = read_call(path, bpm=60)
    assert [(n.pitch, n.start, n.end) for n in call.notes] == [(60, 0.0, 1.0), (62, 1.0, 2.0), (64, 2.0, 4.0)]
    mild = read_call(melody_midi(tmp_path / "mild.mid", changes={2: 400_000}))  # 120, then 150: played as it is
    assert mild.bpm == 120 and mild.notes[-1].end == pytest.approx(1.0 + 2 * 0.4)
