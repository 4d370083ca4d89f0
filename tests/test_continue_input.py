"""Reading the call of a file: every input format, the top line, and each bad input's own error."""

from __future__ import annotations

import pytest
from music21 import chord, meter, note, stream

from improvd.core.notes import PlayedNote
from improvd.offline.call_reader import CallError, call_from_score, read_call, top_line
from improvd.offline.notation import essen_tune, melody_of
from tests.helpers import ABC, KERN, write_midi

# "Es fuhr sich ein Pfalzgraf" style start: a pickup of one eighth in 2/4
ABC_PITCHES = [62, 67, 69, 71, 72, 71, 69, 67, 69, 71, 74, 72, 71, 69, 67]


def test_abc_top_line_with_its_pickup_on_a_bar_line(tmp_path):
    path = tmp_path / "tune.abc"
    path.write_text(ABC)
    call = read_call(path)
    assert [n.pitch for n in call.notes] == ABC_PITCHES
    assert (call.title, call.bpm, call.time_signature, call.steps_per_bar) == ("Little Tune", 120.0, (2, 4), 8)
    assert call.bar_start_step == 8  # the pickup eighth fills the end of bar 0
    assert call.notes[0].start == pytest.approx(6 * 0.125)  # step 6 of 8 at 120 bpm (0.125 s a step)
    assert call.notes[1].start == pytest.approx(8 * 0.125)
    assert [n.pitch for n in call.first_bars(2).notes] == ABC_PITCHES[:6]


def test_kern(tmp_path):
    path = tmp_path / "tune.krn"
    path.write_text(KERN)
    call = read_call(path, bpm=90)
    assert [n.pitch for n in call.notes] == [67, 69, 71, 72, 74, 71, 67]
    assert call.time_signature == (3, 4)
    assert call.notes[4].end - call.notes[4].start == pytest.approx(3 * 60 / 90)


@pytest.mark.parametrize("suffix", [".musicxml", ".mxl"])
def test_musicxml_of_a_real_essen_tune(tmp_path, suffix):
    tune = essen_tune("erk5#5")
    path = tune.score.write("musicxml" if suffix == ".musicxml" else "mxl", fp=tmp_path / f"erk5{suffix}")
    call = read_call(path, bpm=100)
    expected = [n.pitch for n in melody_of(tune.score) if n.pitch is not None]
    assert [n.pitch for n in call.notes] == expected
    assert call.bpm == 100


def test_midi_keeps_its_timing_and_takes_the_top_line(tmp_path):
    melody = [(72, 0, 480), (74, 480, 960), (76, 960, 1920)]
    under = [(60, 0, 1920), (64, 0, 1920), (55, 960, 1200)]  # a held chord, and a lower note under a held one
    path = write_midi(tmp_path / "two-hands.mid", melody + under, bpm=100)
    call = read_call(path)
    assert call.bpm == pytest.approx(100)
    assert [(n.pitch, round(n.start, 3), round(n.end, 3)) for n in call.notes] == [
        (72, 0.0, 0.6),
        (74, 0.6, 1.2),
        (76, 1.2, 2.4),
    ]
    assert call.notes[0].velocity == 70
    stretched = read_call(path, bpm=50)  # the same performance at half the speed
    assert stretched.notes[2].end == pytest.approx(4.8)


def test_top_line_cuts_a_held_note_when_a_higher_one_starts():
    line = top_line([PlayedNote(60, 0.0, 2.0), PlayedNote(67, 1.0, 1.5)])
    assert line == [PlayedNote(60, 0.0, 1.0), PlayedNote(67, 1.0, 1.5)]


def test_missing_file(tmp_path):
    with pytest.raises(CallError, match=r"nope\.mid: no such file"):
        read_call(tmp_path / "nope.mid")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mid").write_bytes(b"")
    with pytest.raises(CallError, match=r"empty\.mid: not a readable MIDI file \(it is empty\)"):
        read_call(tmp_path / "empty.mid")


def test_truncated_midi(tmp_path):
    whole = write_midi(tmp_path / "whole.mid", [(60, 0, 480), (62, 480, 960)]).read_bytes()
    (tmp_path / "cut.mid").write_bytes(whole[: len(whole) - 9])
    with pytest.raises(CallError, match=r"cut\.mid: not a readable MIDI file \(it ends in the middle: truncated\)"):
        read_call(tmp_path / "cut.mid")


def test_text_renamed_mid(tmp_path):
    (tmp_path / "notes.mid").write_text("these are my notes: C D E F G\n")
    with pytest.raises(CallError, match=r"notes\.mid: not a readable MIDI file"):
        read_call(tmp_path / "notes.mid")


def test_empty_abc(tmp_path):
    (tmp_path / "empty.abc").write_text("")
    with pytest.raises(CallError, match=r"empty\.abc: cannot be read as music \(it is empty\)"):
        read_call(tmp_path / "empty.abc")


def test_midi_without_notes(tmp_path):
    path = write_midi(tmp_path / "silence.mid", [])
    with pytest.raises(CallError, match=r"silence\.mid: holds no notes"):
        read_call(path)


def test_chord_only_midi(tmp_path):
    chords = [(p, bar * 960, bar * 960 + 900) for bar in range(4) for p in (60 + bar, 64 + bar, 67 + bar)]
    path = write_midi(tmp_path / "chords.mid", chords)
    with pytest.raises(CallError, match=r"chords\.mid: not a melody: all 4 onsets are chords"):
        read_call(path)


def test_chord_only_musicxml(tmp_path):
    part = stream.Part([meter.TimeSignature("4/4")])
    for root in (60, 65, 67, 60):
        part.append(chord.Chord([root, root + 4, root + 7], quarterLength=4))
    path = stream.Score([part]).write("musicxml", fp=tmp_path / "chords.musicxml")
    with pytest.raises(CallError, match=r"chords\.musicxml: not a melody: all 4 onsets are chords"):
        read_call(path)


def test_a_melody_with_some_chords_is_a_melody(tmp_path):
    part = stream.Part([note.Note(72, quarterLength=1), chord.Chord([60, 64, 67], quarterLength=1)])
    call = read_call(stream.Score([part]).write("musicxml", fp=tmp_path / "mixed.musicxml"))
    assert [n.pitch for n in call.notes] == [72, 67]


def test_unsupported_suffix(tmp_path):
    (tmp_path / "tune.txt").write_text("C D E")
    with pytest.raises(CallError, match=r"unsupported file type '\.txt'"):
        read_call(tmp_path / "tune.txt")


def test_essen_titles_with_umlauts_read_as_meant():
    """The Essen files hold UTF-8 of a DOS code page's letters, which music21 reads as Latin-1."""
    from improvd.offline.call_reader import readable
    from improvd.offline.notation import essen_tune

    assert call_from_score(essen_tune("lux#298").score, None, "lux#298").title == "Des Pfalzgrafen Töchterlein (51a),"
    assert (readable("Müller"), readable("Café"), readable("plain")) == ("Müller", "Café", "plain")
