"""Session recording: two tracks, times kept to the millisecond, whole files only, a bound on size."""

from __future__ import annotations

import itertools

import mido
import pytest

from improvd.daemon import recorder
from improvd.daemon.recorder import Session, Writer
from improvd.daemon.session_layout import Grid, layout
from improvd.files import stage as files_stage


def write(session: Session, folder, bpm: float = 120.0, meter: tuple[int, int] = (4, 4)):
    """The session's file, written by a writer of its own."""
    return Writer(session, folder).save(bpm, meter)


def test_a_session_reads_back_with_its_tracks_and_times(tmp_path):
    session = Session(start=100.0)
    session.add("player", mido.Message("note_on", note=60, velocity=90), 100.5)
    session.add("player", mido.Message("note_off", note=60), 100.75)
    session.add("improvd", mido.Message("note_on", channel=0, note=67, velocity=80), 101.25)
    session.add("improvd", mido.Message("note_off", channel=0, note=67), 101.5)
    session.add("player", mido.Message("clock"), 101.0)  # not music to keep
    path = write(session, tmp_path, 96.0, (3, 4))
    assert path.name.startswith("improvd-") and [p.name for p in tmp_path.iterdir()] == [path.name]
    midi = mido.MidiFile(path)
    meta = {m.type: m for m in midi.tracks[0]}
    tempo, metre = meta["set_tempo"], meta["time_signature"]
    assert (round(mido.tempo2bpm(tempo.tempo), 4), metre.numerator, metre.denominator) == (96, 3, 4)
    assert "key_signature" in meta
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


def messages(session: Session, track: str) -> list[mido.Message]:
    return [mido.Message.from_bytes(data) for _, data in session.messages[track]]


def test_a_session_past_its_bound_drops_and_counts(monkeypatch):
    monkeypatch.setattr(recorder, "MAX_MESSAGES", 3)
    session = Session(start=0.0)
    for k in range(5):
        session.add("player", mido.Message("note_on", note=60 + k), k * 0.1)
    assert (len(session), session.dropped) == (3, 2)


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    session = Session(start=0.0)
    session.add("player", mido.Message("note_on", note=60), 0.5)
    writer = Writer(session, tmp_path)
    writer.save()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    session.add("player", mido.Message("note_off", note=60), 0.9)

    def broken(temporary):
        temporary.write_bytes(b"MThd")
        raise OSError("disk full")

    monkeypatch.setattr(recorder, "stage", lambda path, write: files_stage(path, broken))
    with pytest.raises(OSError, match="disk full"):
        writer.save()
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
    player = [(m.type, m.note) for m in messages(session, "player")]
    assert player == [(kind, p) for p in (60, 62, 64) for kind in ("note_on", "note_off")]
    improvd = messages(session, "improvd")
    ons = [m.note for m in improvd if m.type == "note_on" and m.velocity]
    offs = [m.note for m in improvd if m.type == "note_off" or (m.type == "note_on" and not m.velocity)]
    assert ons and set(ons) <= set(offs)  # every answer note recorded with its release
    sent_ons = [data for data in sent if data[0] == 0x90 and data[2] > 0]
    assert len(ons) == len(sent_ons) - 3  # everything sent but the three notes passed through


def test_a_note_still_on_when_a_session_ends_is_released_in_its_file(tmp_path):
    session = Session(start=0.0)
    session.add("improvd", mido.Message("note_on", channel=9, note=76, velocity=110), 1.0)
    session.add("improvd", mido.Message("note_on", channel=0, note=60, velocity=80), 1.5)
    midi = mido.MidiFile(write(session, tmp_path))
    messages = [m for m in midi.tracks[2] if m.type in ("note_on", "note_off")]
    assert [(m.type, m.channel, m.note) for m in messages[-2:]] == [("note_off", 9, 76), ("note_off", 0, 60)]


def test_what_came_before_bar_one_is_written_at_its_start(tmp_path):
    session = Session(start=0.0)
    session.add("improvd", mido.Message("control_change", control=123), 0.1)  # the start's All Notes Off
    session.start = 0.5  # the grid's origin came after
    session.add("improvd", mido.Message("note_on", note=60, velocity=80), 1.0)
    track = mido.MidiFile(write(session, tmp_path)).tracks[2]
    assert [(m.type, m.time) for m in track if not m.is_meta][:2] == [("control_change", 0), ("note_on", 480)]


def test_a_session_is_written_in_the_key_the_player_played(tmp_path):
    """The key signature comes from the player's notes (improvd.core.keys): MuseScore opens it in its key."""
    session = Session(start=0.0)
    tune = [62, 64, 66, 67, 69, 71, 73, 74, 69, 66, 62]  # D major, D and A long
    for k, pitch in enumerate(tune):
        length = 0.5 if pitch in (62, 69) else 0.25
        session.add("player", mido.Message("note_on", note=pitch, velocity=80), k * 0.5)
        session.add("player", mido.Message("note_off", note=pitch), k * 0.5 + length)
    session.add("improvd", mido.Message("note_on", channel=9, note=76, velocity=100), 0.0)  # clicks do not count
    meta = {m.type: m for m in mido.MidiFile(write(session, tmp_path)).tracks[0]}
    assert meta["key_signature"].key == "D"


def bars_and_clicks(path) -> tuple[list[int], list[tuple[int, int]], list[tuple[int, float]]]:
    """A recording's bar lines (ticks, from its time signatures), its clicks (tick, note) and its tempo map."""
    midi = mido.MidiFile(path)
    now, signatures, tempos = 0, [], []
    for message in midi.tracks[0]:
        now += message.time
        if message.type == "time_signature":
            signatures.append((now, message.numerator * 4 * midi.ticks_per_beat // message.denominator))
        elif message.type == "set_tempo":
            tempos.append((now, round(mido.tempo2bpm(message.tempo), 3)))
    now, clicks = 0, []
    for message in midi.tracks[2]:
        now += message.time
        if message.type == "note_on" and message.velocity and message.channel == 9:
            clicks.append((now, message.note))
    end = max(tick for tick, _ in clicks) + 1
    bars = []
    for k, (tick, length) in enumerate(signatures):
        stop = signatures[k + 1][0] if k + 1 < len(signatures) else end
        bars += range(tick, stop, length)
    return bars, clicks, tempos


def test_a_change_of_tempo_and_metre_is_kept_where_it_happened(tmp_path, tiny_model_dir):
    """100 BPM in 4/4 changed mid-bar to 140 in 5/4 was saved whole as 140 in 5/4. Now the file has both, with
    the change at its step: every bar's first click (the metronome's accent) on a bar line of the file, and no
    other click on one."""
    from improvd.core.engine import Engine, Settings
    from improvd.core.model import load_model
    from improvd.daemon.timing import TimingThread
    from tests.virtual import VirtualTime

    clock = VirtualTime(10.0)
    engine = Engine(load_model(tiny_model_dir), Settings(bpm=100, metronome=True), seed=1)
    timing = TimingThread(engine, lambda data: None, lambda report: None, time_source=clock)
    timing.recording = session = Session(start=0.0)
    timing.begin()
    timing.run_until(10.05 + 37 * 0.15 + 0.01)  # bar 3, step 5 (37 16ths at 100 BPM)
    timing.change({"bpm": 140, "meter": "5/4"})
    timing.run_until(22.0)
    timing.finish()
    bars, clicks, tempos = bars_and_clicks(Writer(session, tmp_path).save(100, (4, 4)))
    assert [bpm for _, bpm in tempos] == [100, 140]
    accent, beat = Settings().metronome_notes
    assert {note for _, note in clicks} == {accent, beat} and len(clicks) > 20
    assert [tick for tick, note in clicks if note == accent] == [tick for tick, _ in clicks if tick in bars]
    lengths = [b - a for a, b in itertools.pairwise(bars)]  # two bars of 4/4, a short one, then 5/4
    assert lengths[:3] == [4 * 480, 4 * 480, 2 * 480] and set(lengths[3:]) == {5 * 480} and len(lengths) > 4


def test_each_followed_phrase_is_laid_out_on_its_own_grid():
    """A phrase followed at 96 BPM, heard again from its first beat 82.4 16ths into a 120 BPM session: the bar
    before it is written short (an 8th) so that its first beat is a bar line, at its own tempo."""
    grids = [Grid(0.0, 0, 0.125, (4, 4), True), Grid(10.3, 0, 0.15625, (4, 4), True)]
    place = layout(grids, 0.0, 120.0, (4, 4))
    meta = [(tick, m.type, getattr(m, "numerator", None), getattr(m, "denominator", None)) for tick, m in place.meta]
    assert meta == [
        (0, "time_signature", 4, 4),
        (0, "set_tempo", None, None),
        (80 * 120, "time_signature", 1, 8),
        (82 * 120, "time_signature", 4, 4),
        (82 * 120, "set_tempo", None, None),
    ]
    assert [place.tick(10.3 + beat * 0.625) for beat in range(5)] == [82 * 120 + 480 * beat for beat in range(5)]
    assert round(mido.tempo2bpm(place.meta[-1][1].tempo), 3) == 96


def note_on(k: int) -> mido.Message:
    return mido.Message("note_on", channel=1, note=60 + k % 12, velocity=80)


def recorded_notes(folder) -> int:
    return sum(1 for path in folder.glob("improvd-*.mid") for m in mido.MidiFile(path).tracks[2] if m.type == "note_on")


def test_rotations_in_a_storm_of_sighups_keep_every_note(tmp_path):
    """SIGHUP 50 times a second during an answer: recordings started in the same second got the same name and
    overwrote each other (5 files held 2 of 12 notes), and a note the timing thread added to a session just as it
    ended was never written. Every session now has a file of its own and every note is in one."""
    import asyncio

    from tests.inprocess import make_daemon

    daemon = make_daemon({"record_dir": str(tmp_path)})

    async def storm() -> None:
        daemon._loop = asyncio.get_running_loop()
        for k in range(30):
            ending = daemon.timing.recording
            if k % 3:
                ending.add("improvd", note_on(k), 100.0 + k)
            await daemon._save_recording(rotate=True)  # what each SIGHUP does
            ending.add("improvd", note_on(k), 100.5 + k)  # the timing thread still held the ended session
        await daemon._save_recording(rotate=False)
        await daemon._save_recording(rotate=False)  # what the shutdown and the next periodic save do

    asyncio.run(storm())
    assert recorded_notes(tmp_path) == 50
    assert len(list(tmp_path.glob("improvd-*.mid"))) == 30 and not list(tmp_path.glob(".*"))


def test_a_full_recording_is_not_rewritten_while_nothing_changes(tmp_path, monkeypatch):
    """A recording at its cap was rewritten whole every 10 s (30% of a core while idle, sends 87 ms late). A save
    that finds nothing new writes nothing."""
    import asyncio
    import os

    from tests.inprocess import make_daemon

    monkeypatch.setattr(recorder, "MAX_MESSAGES", 5000)
    daemon = make_daemon({"record_dir": str(tmp_path)})
    session = daemon.timing.recording
    for k in range(6000):
        session.add("player", mido.Message("control_change", control=64, value=127 * (k % 2)), 1.0 + k * 0.01)

    async def saves() -> list[int]:
        daemon._loop = asyncio.get_running_loop()
        inodes = []
        for _ in range(3):
            await daemon._save_recording(rotate=False)
            (path,) = tmp_path.glob("improvd-*.mid")
            inodes.append(os.stat(path).st_ino)
        return inodes

    assert len(set(asyncio.run(saves()))) == 1  # written once, then left alone
    assert session.dropped == 1000


def test_a_save_encodes_only_what_came_since_the_last(tmp_path, monkeypatch):
    encoded = []
    encode = recorder._Track.encode

    def counted(track, new, place):
        encoded.append(len(new))
        return encode(track, new, place)

    monkeypatch.setattr(recorder._Track, "encode", counted)
    session = Session(start=0.0)
    looks = []
    writer = Writer(session, tmp_path, lambda: looks.append(len(encoded)))
    for k in range(1000):
        session.add("player", note_on(k), k * 0.1)
    writer.save()
    session.add("player", note_on(0), 200.0)
    writer.save()
    assert sum(encoded) == 1001 and encoded[-1] == 1  # the 1000, then only the one new message
    assert len(looks) == len(encoded)  # it looks at the timing thread's next send before each block
    assert len(mido.MidiFile(writer.path).tracks[1]) == 1001 + 1 + 12 + 1  # name, notes, releases, end


def test_sigterm_with_a_large_recording_exits_0(tmp_path, monkeypatch):
    """About 20,000 recorded pedal messages, then SIGTERM: the final save outlasted a look of the port watcher,
    which took the stopped timing thread for a dead one: `the timing thread has ended; exiting`, status 1."""
    import asyncio

    from improvd.daemon import service
    from tests.inprocess import make_daemon

    monkeypatch.setattr(service, "PORT_POLL", 0.001)  # the watcher looks at every turn of the loop
    daemon = make_daemon({"record_dir": str(tmp_path)})
    for k in range(20_000):
        daemon.recorder.session.add("player", mido.Message("control_change", control=64, value=127 * (k % 2)), k * 0.01)

    async def run_then_stop() -> int:
        running = asyncio.create_task(daemon.run())
        while daemon._stopped is None or not daemon.timing.is_alive():
            await asyncio.sleep(0)
        daemon._stopped.set()  # what SIGTERM does
        return await running

    assert asyncio.run(run_then_stop()) == 0
    assert len(list(tmp_path.glob("improvd-*.mid"))) == 1


def test_a_followed_call_and_its_answer_are_on_the_files_grid(tmp_path, tiny_model_dir):
    """clock = follow: the engine ran at 120 from 0; the player played from 1.37 s at 96 BPM, off that grid. The
    second exchange fell 0.13 of a beat off a file written at one tempo, and MuseScore guessed 3/4 at 115. Now the
    player's first beat is a bar line of the file, at 96, and every note lies on its 16th grid."""
    import math

    from improvd.core.engine import Engine, Settings
    from improvd.core.model import load_model

    engine = Engine(load_model(tiny_model_dir), Settings(bpm=120, follow_tempo=True, min_call_steps=4), seed=2)
    session = Session(start=0.0)
    beat = 60 / 96
    quarters = [0, 1, 2, 2.5, 3, 4, 5, 6, 7, 8, 9, 10, 10.5, 11, 12]
    notes = [(1.37 + q * beat, 1.37 + q * beat + 0.2, 60 + (k * 2) % 8) for k, q in enumerate(quarters)]
    inputs = sorted(
        [(on, mido.Message("note_on", note=p, velocity=80)) for on, _, p in notes]
        + [(off, mido.Message("note_off", note=p)) for _, off, p in notes],
        key=lambda item: item[0],
    )
    engine.start(0.0)
    boundary = 0.0
    while boundary < 25.0:
        while inputs and inputs[0][0] < boundary:
            time, message = inputs.pop(0)
            session.add("player", message, time)
            for timed in engine.feed(message, time):
                session.add("improvd", timed.message, timed.time)
        for timed in engine.pop_due(boundary):
            session.add("improvd", timed.message, timed.time)
        engine.tick(boundary)
        session.grid(*engine.open_step(), engine.step_seconds(), engine.settings.meter)
        boundary = engine.next_boundary()
    for timed in engine.pop_due(math.inf):
        session.add("improvd", timed.message, timed.time)
    assert engine.settings.bpm == pytest.approx(96, rel=0.01)
    midi = mido.MidiFile(Writer(session, tmp_path).save())
    tempos, signatures, now = [], [], 0
    for message in midi.tracks[0]:
        now += message.time
        if message.type == "set_tempo":
            tempos.append((now, round(mido.tempo2bpm(message.tempo))))
        elif message.type == "time_signature":
            signatures.append((now, message.numerator, message.denominator))
    ticks = {}
    for track in midi.tracks[1:]:
        now = 0
        for message in track:
            now += message.time
            if message.type == "note_on" and message.velocity:
                ticks.setdefault(track.name, []).append(now)
    first = tempos[-1][0]  # the phrase's own grid from its first beat (as the tempo fit placed it)
    assert tempos[-1][1] == 96 and signatures[-1] == (first, 4, 4)
    offsets = [tick - first - round(q * 480) for tick, q in zip(ticks["player"], quarters, strict=True)]
    assert max(map(abs, offsets)) <= 12  # every note within a tenth of a 16th of its beat (the fit is 0.5% off)
    assert ticks["improvd"] and all((tick - first) % 120 == 0 for tick in ticks["improvd"])


def test_a_first_write_that_fails_leaves_no_file(tmp_path, monkeypatch):
    """The name is held by an empty file until the first write renames the whole file over it; a first write that
    fails takes the empty file away again."""
    session = Session(start=0.0)
    session.add("player", mido.Message("note_on", note=60), 0.5)

    def broken(path, write):
        raise OSError("disk full")

    monkeypatch.setattr(recorder, "stage", broken)
    with pytest.raises(OSError, match="disk full"):
        Writer(session, tmp_path).save()
    assert list(tmp_path.iterdir()) == []


def test_a_pause_in_midi_clock_is_silence_in_the_file_and_the_bars_go_on():
    """MIDI Stop, then Continue 3.3 s later: the steps go on from where they stopped; the music before the pause
    stays where it was, and the bars after it are the steps' own."""
    session = Session(start=0.0)
    for step in range(1, 21):
        session.grid(step, step * 0.125, 0.125, "4/4")
    for step in range(21, 40):
        session.grid(step, 3.3 + step * 0.125, 0.125, "4/4")
    place = layout(session.grids, 0.0, 120.0, (4, 4))
    assert place.tick(1.0) == 8 * 120  # before the pause: where it was played
    signatures = [(tick, m.numerator * 1920 // m.denominator) for tick, m in place.meta if m.type == "time_signature"]
    bars = [
        b
        for k, (tick, length) in enumerate(signatures)
        for b in range(tick, 20_000, length)
        if k + 1 == len(signatures) or b < signatures[k + 1][0]
    ]
    after = [place.tick(3.3 + step * 0.125) for step in (32, 48, 64)]  # bar lines of the steps, after the pause
    assert set(after) <= set(bars) and place.tick(3.3 + 40 * 0.125) not in bars
