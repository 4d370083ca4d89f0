"""Session recording: two tracks, times kept to the millisecond, whole files only, a bound on size."""

from __future__ import annotations

import mido
import pytest

from improvd import recorder
from improvd.recorder import Session


def test_a_session_reads_back_with_its_tracks_and_times(tmp_path):
    session = Session(start=100.0)
    session.add("player", mido.Message("note_on", note=60, velocity=90), 100.5)
    session.add("player", mido.Message("note_off", note=60), 100.75)
    session.add("improvd", mido.Message("note_on", channel=0, note=67, velocity=80), 101.25)
    session.add("improvd", mido.Message("note_off", channel=0, note=67), 101.5)
    session.add("player", mido.Message("clock"), 101.0)  # not music to keep
    path = session.write(tmp_path)
    assert path.name.startswith("improvd-") and [p.name for p in tmp_path.iterdir()] == [path.name]
    midi = mido.MidiFile(path)
    assert [t.name for t in midi.tracks[1:]] == ["player", "improvd"]
    heard = {}
    for track in midi.tracks[1:]:
        now = 0.0
        for message in track:
            now += mido.tick2second(message.time, midi.ticks_per_beat, mido.bpm2tempo(recorder.TEMPO_BPM))
            if message.type in ("note_on", "note_off"):
                heard.setdefault(track.name, []).append((message.type, message.note, round(now, 3)))
    assert heard == {
        "player": [("note_on", 60, 0.5), ("note_off", 60, 0.75)],
        "improvd": [("note_on", 67, 1.25), ("note_off", 67, 1.5)],
    }


def test_a_session_past_its_bound_drops_and_counts(monkeypatch):
    monkeypatch.setattr(recorder, "MAX_MESSAGES", 3)
    session = Session(start=0.0)
    for k in range(5):
        session.add("player", mido.Message("note_on", note=60 + k), k * 0.1)
    assert (len(session), session.dropped) == (3, 2)


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    session = Session(start=0.0)
    session.add("player", mido.Message("note_on", note=60), 0.5)
    session.write(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    session.add("player", mido.Message("note_off", note=60), 0.9)

    def broken(self, file=None):
        file.write(b"MThd")
        raise OSError("disk full")

    monkeypatch.setattr(mido.MidiFile, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        session.write(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the earlier whole file, nothing else
