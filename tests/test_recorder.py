"""Session recording: two tracks, times kept to the millisecond, whole files only, a bound on size."""

from __future__ import annotations

import mido
import pytest

from improvd.daemon import recorder
from improvd.daemon.recorder import Session


def test_a_session_reads_back_with_its_tracks_and_times(tmp_path):
    session = Session(start=100.0)
    session.add("player", mido.Message("note_on", note=60, velocity=90), 100.5)
    session.add("player", mido.Message("note_off", note=60), 100.75)
    session.add("improvd", mido.Message("note_on", channel=0, note=67, velocity=80), 101.25)
    session.add("improvd", mido.Message("note_off", channel=0, note=67), 101.5)
    session.add("player", mido.Message("clock"), 101.0)  # not music to keep
    path = session.write(tmp_path, 96.0, (3, 4))
    assert path.name.startswith("improvd-") and [p.name for p in tmp_path.iterdir()] == [path.name]
    midi = mido.MidiFile(path)
    tempo = [m for m in midi.tracks[0] if m.type in ("set_tempo", "time_signature")]
    assert (round(mido.tempo2bpm(tempo[0].tempo), 6), tempo[1].numerator, tempo[1].denominator) == (96, 3, 4)
    assert [t.name for t in midi.tracks[1:]] == ["player", "improvd"]
    heard = {}
    for track in midi.tracks[1:]:
        now = 0.0
        for message in track:
            now += mido.tick2second(message.time, midi.ticks_per_beat, mido.bpm2tempo(96.0))
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


def test_the_timing_thread_records_the_players_notes_and_improvds_answer(tiny_model_dir):
    """Both tracks fill as the daemon's timing thread runs, in virtual time: its own code, its time a parameter."""
    from improvd.core.engine import Engine, Settings
    from improvd.core.model import load_model
    from improvd.daemon.timing import TimingThread
    from tests.virtual import VirtualTime

    clock = VirtualTime(10.0)
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=300, min_call_steps=2, phrase_end_steps=2), seed=1)
    engine.update(response_steps=4, thru=True)
    sent: list[list[int]] = []
    timing = TimingThread(engine, lambda data: sent.append(list(data)), lambda report: None, time_source=clock)
    timing.recording = session = Session(start=0.0)
    timing.begin()
    for k, pitch in enumerate((60, 62, 64)):
        timing.feed(mido.Message("note_on", note=pitch, velocity=90), 10.3 + 0.2 * k)
        timing.run_until(10.4 + 0.2 * k)
        timing.feed(mido.Message("note_off", note=pitch), 10.4 + 0.2 * k)
        timing.run_until(10.5 + 0.2 * k)
    timing.run_until(13.0)
    timing.finish()  # what the thread does as it ends
    assert session.start == pytest.approx(10.05)  # bar 1 is the grid's origin
    player = [(m.type, m.note) for _, m in session.messages["player"]]
    assert player == [(kind, p) for p in (60, 62, 64) for kind in ("note_on", "note_off")]
    improvd = [m for _, m in session.messages["improvd"]]
    ons = [m.note for m in improvd if m.type == "note_on" and m.velocity]
    offs = [m.note for m in improvd if m.type == "note_off" or (m.type == "note_on" and not m.velocity)]
    assert ons and set(ons) <= set(offs)  # every answer note recorded with its release
    sent_ons = [data for data in sent if data[0] == 0x90 and data[2] > 0]
    assert len(ons) == len(sent_ons) - 3  # everything sent but the three notes passed through


def test_a_note_still_on_when_a_session_ends_is_released_in_its_file(tmp_path):
    session = Session(start=0.0)
    session.add("improvd", mido.Message("note_on", channel=9, note=76, velocity=110), 1.0)
    session.add("improvd", mido.Message("note_on", channel=0, note=60, velocity=80), 1.5)
    midi = mido.MidiFile(session.write(tmp_path))
    messages = [m for m in midi.tracks[2] if m.type in ("note_on", "note_off")]
    assert [(m.type, m.channel, m.note) for m in messages[-2:]] == [("note_off", 9, 76), ("note_off", 0, 60)]


def test_what_came_before_bar_one_is_written_at_its_start(tmp_path):
    session = Session(start=0.0)
    session.add("improvd", mido.Message("control_change", control=123), 0.1)  # the start's All Notes Off
    session.start = 0.5  # the grid's origin came after
    session.add("improvd", mido.Message("note_on", note=60, velocity=80), 1.0)
    track = mido.MidiFile(session.write(tmp_path)).tracks[2]
    assert [(m.type, m.time) for m in track if not m.is_meta][:2] == [("control_change", 0), ("note_on", 480)]
