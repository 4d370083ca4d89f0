"""Hostile input files for `improvd continue`: refused with one line, in bounded time and memory, nothing written."""

from __future__ import annotations

import zipfile
from pathlib import Path

import mido
import pytest

from improvd.cli import main as cli_main
from improvd.offline import call_reader, notation
from improvd.offline.call_reader import CallError, read_call
from improvd.offline.notation import ScoreError, read_score


def one_note_midi(path: Path, ticks: int) -> Path:
    track = mido.MidiTrack(
        [mido.Message("note_on", note=60, velocity=80), mido.Message("note_off", note=60, velocity=0, time=ticks)]
    )
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(path)
    return path


def test_a_note_0x0fffffff_ticks_long_is_refused(tmp_path):
    """A 37-byte file like this kept `continue` busy for about half an hour, ticking every step of the call."""
    path = one_note_midi(tmp_path / "long.mid", 0x0FFFFFFF)
    assert path.stat().st_size < 64
    with pytest.raises(CallError, match=f"over the limit of {call_reader.MAX_CALL_STEPS}"):
        read_call(path)


def test_an_abc_note_of_thousands_of_bars_is_refused(tmp_path):
    path = tmp_path / "long.abc"
    path.write_text("X:1\nL:1/1\nK:C\nC9999|\n")
    with pytest.raises(CallError, match="16th steps"):
        read_call(path)


def test_too_many_notes_are_refused(tmp_path):
    track = mido.MidiTrack()
    for i in range(call_reader.MAX_NOTES + 1):
        track.append(mido.Message("note_on", note=60 + i % 12, velocity=80))
        track.append(mido.Message("note_off", note=60 + i % 12, time=120))
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(tmp_path / "many.mid")
    with pytest.raises(CallError, match=f"notes, over the limit of {call_reader.MAX_NOTES}"):
        read_call(tmp_path / "many.mid")


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.mid"
    path.write_bytes(b"\0" * (call_reader.MAX_FILE_BYTES + 1))
    with pytest.raises(CallError, match=f"over the limit of {call_reader.MAX_FILE_BYTES}"):
        read_call(path)


def test_an_mxl_zip_bomb_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "bomb.mxl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("score.xml", b"\0" * (notation.MAX_EXPANDED_BYTES + 1))
    assert path.stat().st_size < call_reader.MAX_FILE_BYTES
    with pytest.raises(ScoreError, match="expands to"):
        read_score(path)


def test_continue_refuses_a_long_note_with_one_line_and_writes_nothing(tmp_path, capsys):
    path = one_note_midi(tmp_path / "long.mid", 0x0FFFFFFF)
    assert cli_main(["continue", str(path), "-o", str(tmp_path / "out.mid"), "--seed", "1"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "over the limit" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mid"]


TUNE = "X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF GABc | cBAG FEDC | CDEF GABc | c4 z4 |]\n"


def continue_args(tune: Path, output: Path, *extra: str) -> list[str]:
    return ["continue", str(tune), "-o", str(output), "--seed", "1", "--bars", "1", *extra]


def test_continue_with_musicxml_at_a_folder_writes_nothing(tmp_path, capsys):
    """It used to write the MIDI file, then fail on the folder."""
    tune = tmp_path / "tune.abc"
    tune.write_text(TUNE)
    (tmp_path / "folder").mkdir()
    assert cli_main(continue_args(tune, tmp_path / "out.mid", "--musicxml", str(tmp_path / "folder"))) == 1
    assert "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "out.mid").exists()


def test_continue_never_overwrites_its_input(tmp_path, capsys):
    """-o equal to the input used to overwrite the input and exit 0."""
    tune = tmp_path / "tune.mid"
    one_note_midi(tune, 480 * 8)
    before = tune.read_bytes()
    assert cli_main(continue_args(tune, tmp_path / "." / "tune.mid")) == 1
    assert "is the input file" in capsys.readouterr().err
    assert tune.read_bytes() == before


def test_a_failing_second_file_leaves_neither(tmp_path, monkeypatch):
    from improvd.offline import continue_command

    def broken(path, *args):
        raise OSError("disk full")

    monkeypatch.setattr(continue_command, "write_score", broken)
    tune = tmp_path / "tune.abc"
    tune.write_text(TUNE)
    assert cli_main(continue_args(tune, tmp_path / "out.mid", "--musicxml", str(tmp_path / "out.musicxml"))) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tune.abc"]


@pytest.mark.parametrize("kind", ["fifo", "link", "device"])
def test_continue_never_replaces_what_is_not_a_regular_file(kind, tmp_path, capsys):
    """`-o /dev/null` as root used to exit 0 with /dev/null replaced by a regular file (write, then rename over
    the path); a FIFO or a link is replaced the same way by any user. The device is a null device made in the
    test's own folder (as root): never the machine's /dev/null, which a bug would replace."""
    import os
    import stat

    tune = tmp_path / "tune.abc"
    tune.write_text(TUNE)
    if kind == "fifo":
        target = tmp_path / "pipe.mid"
        os.mkfifo(target)
    elif kind == "link":
        target = tmp_path / "link.mid"
        (tmp_path / "real.mid").write_bytes(b"keep")
        target.symlink_to(tmp_path / "real.mid")
    else:
        target = tmp_path / "null"
        try:
            os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root (the FIFO and link cases run for everyone)")
    before = os.lstat(target)
    assert cli_main(continue_args(tune, target)) == 1
    assert "not a regular file" in capsys.readouterr().err
    after = os.lstat(target)
    assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode), before.st_ino)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_a_rename_never_replaces_a_device_that_appeared_meanwhile(tmp_path):
    """The check before the rename, not only before the work: a FIFO made while the file was written stays."""
    import os

    from improvd.files import NotRegularFile, atomic_write

    target = tmp_path / "out.mid"

    def write(temporary: Path) -> None:
        temporary.write_bytes(b"MThd")
        os.mkfifo(target)

    with pytest.raises(NotRegularFile):
        atomic_write(target, write)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mid"] and target.is_fifo()
