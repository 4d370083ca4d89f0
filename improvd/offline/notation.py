"""Scores on disk (abc, kern, MusicXML, MIDI) to melodies of ``encoding.Note``, through music21.

The melody is the top line: the highest note where notes sound together, ties
joined, grace notes dropped.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from music21 import chord, converter, corpus, key, stream

from improvd.core.encoding import Note

ESSEN_DIR = Path(corpus.getComposer("essenFolksong")[0]).parent if corpus.getComposer("essenFolksong") else None
# the music21 collections improvd trains on, by corpus name; no other part of music21's corpus goes into training,
# tuning or model selection, so held-out checks on the rest stay honest
COLLECTIONS = {"essen": ("essenFolksong",), "british": ("ryansMammoth", "airdsAirs", "miscFolk")}
SCORE_SUFFIXES = (".abc", ".krn", ".mid", ".midi", ".musicxml", ".mxl", ".xml")
MAX_EXPANDED_BYTES = 16 << 20  # what a compressed .mxl's members may expand to, as its zip headers declare
MAX_ARCHIVE_MEMBERS = 64


class ScoreError(ValueError):
    """A score that cannot be read or holds no usable melody; the message names the file."""


@dataclass(frozen=True)
class Tune:
    """One tune of a collection: where it came from and its parsed score."""

    ident: str  # "erk5#12": file stem and tune number inside it
    score: stream.Score


def essen_files() -> list[Path]:
    """The Essen collection's abc files that ship with music21, sorted (license.txt excluded)."""
    if ESSEN_DIR is None:
        raise ScoreError("music21's corpus has no essenFolksong collection")
    return sorted(ESSEN_DIR.glob("*.abc"))


def collection_files(name: str) -> list[Path]:
    """The abc files of one of COLLECTIONS, sorted; ScoreError for another name or a corpus without them."""
    if name not in COLLECTIONS:
        raise ScoreError(f"no corpus '{name}' (one of {', '.join(COLLECTIONS)})")
    files = []
    for folder in COLLECTIONS[name]:
        found = sorted(Path(p) for p in corpus.getComposer(folder) if Path(p).suffix == ".abc")
        if not found:
            raise ScoreError(f"music21's corpus has no {folder} collection")
        files.extend(found)
    return files


def collection_tune(name: str, ident: str) -> Tune:
    """One tune of one of COLLECTIONS by ident (``"erk5#12"``, ``"book1#3"``, ``"LanigansBallJig"``)."""
    if name == "essen":
        return essen_tune(ident)
    stem, _, number = ident.partition("#")
    path = next((p for p in collection_files(name) if p.stem == stem), None)
    if path is None:
        raise ScoreError(f"no tune '{ident}' in corpus '{name}'")
    lines = _abc_tune(path, number) if number.isdigit() else None
    if lines is not None:
        return Tune(ident, converter.parse(lines, format="abc"))
    for tune in tunes_in(path):
        if tune.ident == ident:
            return tune
    raise ScoreError(f"no tune '{ident}' in corpus '{name}'")


def read_score(path: str | Path) -> stream.Stream:
    """Parse one file with music21; any failure becomes a ScoreError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ScoreError(f"{path}: no such file")
    if path.suffix.lower() not in SCORE_SUFFIXES:
        raise ScoreError(f"{path}: unsupported file type '{path.suffix}' (use one of {', '.join(SCORE_SUFFIXES)})")
    if path.suffix.lower() == ".mxl":
        _check_archive(path)
    if path.stat().st_size == 0:  # music21's message for one names its parser's internals
        raise ScoreError(f"{path}: cannot be read as music (it is empty)")
    try:
        return converter.parse(path, forceSource=True)  # never load music21's pickle cache
    except Exception as error:  # music21 raises many unrelated types for bad input
        raise ScoreError(f"{path}: cannot be read as music ({type(error).__name__}: {error})") from None


def _check_archive(path: Path) -> None:
    """Refuse a compressed MusicXML file that expands past MAX_EXPANDED_BYTES (a zip bomb) or is no zip.

    Python's zipfile never expands a member past the size its header declares, so the declared sizes bound it.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile) as error:
        raise ScoreError(f"{path}: not a readable .mxl archive ({error})") from None
    expanded = sum(member.file_size for member in members)
    if len(members) > MAX_ARCHIVE_MEMBERS or expanded > MAX_EXPANDED_BYTES:
        raise ScoreError(
            f"{path}: expands to {expanded} bytes in {len(members)} files, over the limit of "
            f"{MAX_EXPANDED_BYTES} bytes in {MAX_ARCHIVE_MEMBERS} files"
        )


def tunes_in(path: str | Path) -> Iterator[Tune]:
    """Every tune in a file: each score of an opus (abc collections), or the file's one score."""
    parsed = read_score(path)
    stem = Path(path).stem
    if isinstance(parsed, stream.Opus):
        for index, score in enumerate(parsed.scores, start=1):
            number = score.metadata.number if score.metadata and score.metadata.number else index
            yield Tune(f"{stem}#{number}", score)
    else:
        yield Tune(stem, parsed)


def essen_tune(ident: str) -> Tune:
    """One Essen tune by ident (``"erk5#12"``); ScoreError if there is none.

    A numbered tune is parsed from its own lines of the collection file: a whole file takes seconds.
    """
    if ESSEN_DIR is None:
        raise ScoreError("music21's corpus has no essenFolksong collection")
    stem, _, number = ident.partition("#")
    path = ESSEN_DIR / f"{stem}.abc"
    if not path.is_file():
        raise ScoreError(f"no Essen tune '{ident}' (idents look like 'erk5#12')")
    lines = _abc_tune(path, number) if number.isdigit() else None
    if lines is not None:
        return Tune(ident, converter.parse(lines, format="abc"))
    for tune in tunes_in(path):
        if tune.ident == ident or (not number and tune.ident.startswith(stem + "#")):
            return tune
    raise ScoreError(f"no Essen tune '{ident}' (idents look like 'erk5#12')")


def _abc_tune(path: Path, number: str) -> str | None:
    """The lines of tune ``X: number`` (``X:0001`` is number 1) in an abc collection, or None; a file header (the
    Essen files have none; Aird's books hold only comments there) is left out."""
    for block in re.split(r"(?m)^(?=X:)", path.read_text(encoding="latin-1")):
        found = re.match(r"X:\s*(\d+)\s*$", block.split("\n", 1)[0])
        if found and int(found.group(1)) == int(number):
            return block
    return None


def melody_of(score: stream.Stream, where: str = "score") -> list[Note]:
    """The top line of ``score`` as notes and rests, in order, rests filling every gap.

    Raises ScoreError if the score holds no notes.
    """
    part = score.parts[0] if isinstance(score, stream.Score) and score.parts else score
    flat = part.stripTies().flatten()
    events: dict[Fraction, tuple[int, Fraction]] = {}  # onset -> (highest pitch, its length)
    for element in flat.notes:
        length = Fraction(element.quarterLength)
        if length <= 0:
            continue  # grace notes
        pitch = max(p.midi for p in element.pitches) if isinstance(element, chord.Chord) else element.pitch.midi
        onset = Fraction(element.offset)
        if onset not in events or pitch > events[onset][0]:
            events[onset] = (pitch, length)
    if not events:
        raise ScoreError(f"{where}: holds no notes")
    return _line(events, Fraction(flat.highestTime))


def bar_places(score: stream.Stream) -> list[tuple[int, int, int]]:
    """Where ``melody_of(score)``'s steps fall in their bars: (first step, its position in the bar, the bar's 16ths)
    for each measure, in order (a pickup measure starts past its bar line); [] for a score without measures."""
    part = score.parts[0] if isinstance(score, stream.Score) and score.parts else score
    places = []
    for measure in part.getElementsByClass(stream.Measure):
        bar = round(float(measure.barDuration.quarterLength) * 4)
        if bar >= 1:
            start, position = round(float(measure.offset) * 4), round(float(measure.paddingLeft) * 4)
            places.append((start, min(max(position, 0), bar - 1), bar))
    return places


def _line(events: dict[Fraction, tuple[int, Fraction]], end: Fraction) -> list[Note]:
    """Monophonic notes from onset -> (pitch, length): a note ends at the next onset; gaps are rests."""
    melody: list[Note] = []
    onsets = sorted(events)
    position = Fraction(0)
    for i, onset in enumerate(onsets):
        if onset > position:
            melody.append(Note(None, float(onset - position)))
        pitch, length = events[onset]
        stop = min(onset + length, onsets[i + 1]) if i + 1 < len(onsets) else onset + length
        melody.append(Note(pitch, float(stop - onset)))
        position = stop
    if end > position:
        melody.append(Note(None, float(end - position)))
    return melody


def key_of(score: stream.Stream) -> tuple[str, str]:
    """(tonic, mode) from the score's first key with a mode, else music21's key analysis."""
    for found in score.recurse().getElementsByClass(key.KeySignature):
        if isinstance(found, key.Key) and found.mode in ("major", "minor"):
            return found.tonic.name, found.mode
        break
    return analyse_key(score)


def signature_key(score: stream.Stream) -> tuple[str, str] | None:
    """(tonic, mode) of the score's first key signature, None without one. A signature with no major or minor
    mode (a bare signature, or Dorian) is the major key of its signature or its relative minor, whichever
    music21's analysis of the score prefers."""
    found = next(iter(score.recurse().getElementsByClass(key.KeySignature)), None)
    if found is None:
        return None
    if isinstance(found, key.Key) and found.mode in ("major", "minor"):
        return found.tonic.name, found.mode
    minor = found.asKey("minor")
    tonic, mode = analyse_key(score)
    if (tonic, mode) == (minor.tonic.name, "minor"):
        return tonic, mode
    return found.asKey("major").tonic.name, "major"


def analyse_key(score: stream.Stream) -> tuple[str, str]:
    """music21's Krumhansl-Schmuckler style key analysis; (tonic, mode)."""
    estimate = score.analyze("key")
    return estimate.tonic.name, estimate.mode
