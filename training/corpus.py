"""Score files -> encoded, transposed songs, parsed in parallel and cached on disk.

A song is kept only if every duration is in the tutorial's acceptable set;
every dropped tune and every file that fails to parse is counted by reason.
The cache key is a hash of the file list, their sizes and mtimes, and the
options, so a second run with the same inputs does not parse again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

from improvd.core.encoding import EncodingError, encode, transpose, transposition_to_c, unacceptable_durations
from improvd.offline.notation import (
    SCORE_SUFFIXES,
    ScoreError,
    bar_places,
    collection_files,
    key_of,
    melody_of,
    tunes_in,
)

CACHE_VERSION = 2  # 2: each song's bars (``Corpus.bars``)
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "improvd"


@dataclass
class Corpus:
    """Encoded songs by ident, and why the others were dropped."""

    name: str
    files: list[str]
    songs: dict[str, list[str]] = field(default_factory=dict)
    bars: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)  # notation.bar_places of each song
    dropped: Counter = field(default_factory=Counter)
    failed_files: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "files": self.files,
            "songs": len(self.songs),
            "steps": sum(len(s) for s in self.songs.values()),
            "dropped": dict(sorted(self.dropped.items())),
            "failed_files": self.failed_files,
            "filter": "durations in improvd.core.encoding.ACCEPTABLE_DURATIONS; transposed to C major / A minor",
        }


def find_files(data: str | None, names: list[str] | None = None, corpus: str = "essen") -> tuple[str, list[Path]]:
    """(corpus name, files): a folder of scores, else one of music21's collections (``notation.COLLECTIONS``:
    essen, british); optionally only ``names``, file stems."""
    if data:
        folder = Path(data)
        if not folder.is_dir():
            raise ScoreError(f"{folder}: not a folder of scores")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SCORE_SUFFIXES and p.is_file())
        name = f"folder:{folder.resolve()}"
    else:
        files = collection_files(corpus)
        name = corpus
    if names:
        wanted = set(names)
        unknown = wanted - {p.stem for p in files}
        if unknown:
            raise ScoreError(f"no such file(s) in {name}: {', '.join(sorted(unknown))}")
        files = [p for p in files if p.stem in wanted]
    if not files:
        raise ScoreError(f"{name}: no score files ({', '.join(SCORE_SUFFIXES)})")
    return name, files


def encode_tune(melody_notes: list, score) -> tuple[list[str] | None, str | None]:
    """(symbols, None) for a usable melody, else (None, reason)."""
    bad = unacceptable_durations(melody_notes)
    if bad:
        return None, f"duration {bad[0]:g}"
    try:
        tonic, mode = key_of(score)
        return encode(transpose(melody_notes, transposition_to_c(tonic, mode))), None
    except EncodingError as error:
        return None, f"encoding: {error}"


def parse_file(path: Path, max_tunes: int | None = None) -> dict:
    """Every tune of one file, encoded or with the reason it was dropped. Never raises."""
    result: dict = {"file": str(path), "songs": {}, "bars": {}, "dropped": {}, "error": None}
    try:
        for count, tune in enumerate(tunes_in(path)):
            if max_tunes is not None and count >= max_tunes:
                break
            try:
                symbols, reason = encode_tune(melody_of(tune.score, tune.ident), tune.score)
            except ScoreError:
                symbols, reason = None, "no notes"
            if symbols is None:
                result["dropped"][tune.ident] = reason
            else:
                result["songs"][tune.ident] = symbols
                result["bars"][tune.ident] = bar_places(tune.score)
    except Exception as error:  # a bad file is reported by name and skipped
        result["error"] = f"{type(error).__name__}: {error}"
    return result


def cache_key(name: str, files: list[Path], max_tunes: int | None) -> str:
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, name, max_tunes]).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _parse_job(job: tuple[Path, int | None]) -> dict:
    return parse_file(*job)


def load_corpus(
    data: str | None = None,
    names: list[str] | None = None,
    corpus: str = "essen",
    max_tunes: int | None = None,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    workers: int | None = None,
    progress: bool = True,
) -> Corpus:
    """Parse (or read from cache) the chosen files; ``max_tunes`` caps tunes per file."""
    name, files = find_files(data, names, corpus)
    cache_file = Path(cache_dir) / f"corpus-{cache_key(name, files, max_tunes)}.json" if cache_dir else None
    if cache_file and cache_file.is_file():
        raw = json.loads(cache_file.read_text(encoding="utf-8"))
        bars = {ident: [tuple(b) for b in places] for ident, places in raw["bars"].items()}
        return Corpus(raw["name"], raw["files"], raw["songs"], bars, Counter(raw["dropped"]), raw["failed_files"])
    corpus = Corpus(name, [p.stem for p in files])
    jobs = sorted(((p, max_tunes) for p in files), key=lambda job: -job[0].stat().st_size)  # big files first
    workers = workers or os.cpu_count() or 1
    results = []
    with Pool(min(workers, len(jobs))) as pool:
        for done, result in enumerate(pool.imap_unordered(_parse_job, jobs), start=1):
            results.append(result)
            if progress:
                print(f"\rparsing {done}/{len(jobs)} files", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    for result in sorted(results, key=lambda r: r["file"]):
        if result["error"]:
            corpus.failed_files[result["file"]] = result["error"]
            print(f"skipped {result['file']}: {result['error']}", file=sys.stderr)
        corpus.songs.update(result["songs"])
        corpus.bars.update(result["bars"])
        corpus.dropped.update(result["dropped"].values())
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        raw = {"name": corpus.name, "files": corpus.files, "songs": corpus.songs, "bars": corpus.bars}
        raw |= {"dropped": dict(corpus.dropped), "failed_files": corpus.failed_files}
        tmp.write_text(json.dumps(raw), encoding="utf-8")
        os.replace(tmp, cache_file)
    return corpus
