"""`improvd demo`: no keyboard needed. The first bars of a tune as the call, and files to look at and hear.

The tune comes from the music21 collection the model was trained on (Essen, or british); by default the demo
tune named in the model's card, else DEMO_TUNE when the card lists it among
the tunes the model never trained on (or lists none), else the first of those.
Writes demo.mid, demo.musicxml, demo.png, demo.score.png when MuseScore is installed and, when FluidSynth and a General
MIDI SoundFont are installed, demo.wav.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from improvd.core.engine import Settings
from improvd.core.model import DEFAULT_MODEL_DIR, Model, ModelError
from improvd.core.schema import BY_NAME
from improvd.core.simulate import OfflineError, Performance
from improvd.core.styles import load_style
from improvd.offline import audio, render
from improvd.offline.call_reader import Call, CallError, call_from_score
from improvd.offline.continue_command import add_style_arguments, answered_by, call_key, respond, write_score
from improvd.offline.notation import COLLECTIONS, ScoreError, collection_tune
from improvd.offline.pianoroll import PianoRollUnavailable, draw_piano_roll
from improvd.offline.writers import write_midi

DEMO_TUNE = "erk10#112"  # "Es liegt ein Schloss in Oesterreich": in the shipped model's test split (models/README.md)
CALL_BARS = 4
DEFAULT_SEED = 1
DEFAULT_BPM = 110.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("improvd-demo"), help="folder for the files (default improvd-demo)"
    )
    parser.add_argument(
        "--tune",
        help="ident of a tune of the model's collection such as 'erk5#5' (Essen) or 'book1#3' (british) "
        "(default: the model card's demo tune)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL_DIR, help=f"model directory (default {DEFAULT_MODEL_DIR})"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=Settings.temperature,
        help=f"sampling temperature ({BY_NAME['temperature'].span(' to ')})",
    )
    add_style_arguments(parser)
    parser.add_argument(
        "--bpm", type=float, default=DEFAULT_BPM, help=f"tempo in quarter notes a minute (default {DEFAULT_BPM:g})"
    )


def default_tune(model: Model) -> str:
    """The card's ``demo_tune``; else DEMO_TUNE when the model never trained on it; else its first test tune."""
    card = model.card
    if isinstance(card.get("demo_tune"), str):
        return card["demo_tune"]
    tunes = card.get("test_tunes") if isinstance(card.get("test_tunes"), list) else []
    if not tunes or DEMO_TUNE in tunes or not isinstance(tunes[0], str):
        return DEMO_TUNE
    return tunes[0]


def collection_of(model: Model) -> str:
    """The music21 collection the model was trained on (its card's corpus name), else essen."""
    corpus = model.card.get("corpus")
    name = corpus.get("name") if isinstance(corpus, dict) else None
    return name if name in COLLECTIONS else "essen"


def main(args: argparse.Namespace) -> int:
    try:
        model, styles = load_style(args.style, args.model, args.models_path)
        ident = args.tune or default_tune(model)
        tune = collection_tune(collection_of(model), ident)
        call = call_from_score(tune.score, args.bpm, f"tune {ident}", ident).first_bars(CALL_BARS)
        settings = Settings(temperature=args.temperature, response_bars=CALL_BARS)
        performance = respond(call, model, settings, args.seed, styles)
        args.out.mkdir(parents=True, exist_ok=True)
        lines = write_all(args.out, call, performance, settings.gate, f"{ident} {call.title}".strip())
    except (CallError, ScoreError, ModelError, OfflineError, render.RenderError, ValueError, OSError) as error:
        print(f"improvd demo: error: {error}", file=sys.stderr)
        return 1
    print(
        f"tune {ident} ({call.title}): the first {CALL_BARS} bars, {len(call.notes)} notes at {call.bpm:g} bpm, "
        f"answered with {len(performance.response)} notes by model {answered_by(performance)} (seed {args.seed})."
    )
    print("\n".join(lines))
    return 0


def write_all(folder: Path, call: Call, performance: Performance, gate: float, title: str) -> list[str]:
    """The four files; one line per file saying what it is (or why audio was skipped)."""
    tonic, mode = call_key(call)
    midi = write_midi(
        folder / "demo.mid", call.notes, performance.response, call.bpm, call.time_signature, title, (tonic, mode)
    )
    score = write_score(folder / "demo.musicxml", call, performance, gate)
    tonic = tonic.replace("-", "♭")  # music21 writes B- for B flat
    bar_seconds = call.steps_per_bar * call.step_seconds
    end = max(n.end for n in call.notes + performance.response)
    beats_per_bar = call.steps_per_bar / 4
    bar_lines = [b * beats_per_bar for b in range(int(end / bar_seconds) + 2) if b * beats_per_bar >= 0]
    lines = [
        f"  {midi}  MIDI: call and response on tracks of their own",
        f"  {score}  MusicXML: opens in MuseScore",
    ]
    if render.missing():
        lines.append(f"  score picture skipped: {render.missing()}")
    else:
        lines.append(f"  {render.render(score, folder / 'demo.score.png')[0]}  the score as MuseScore draws it")
    try:
        picture = draw_piano_roll(
            folder / "demo.png", call.notes, performance.response, call.bpm, bar_lines, f"{title} — key {tonic} {mode}"
        )
        lines.append(f"  {picture}  piano roll: call blue, response orange, key {tonic} {mode}")
    except PianoRollUnavailable as error:
        lines.append(f"  piano roll skipped: {error}")
    why_not = audio.missing()
    if why_not:
        lines.append(f"  audio skipped: {why_not}")
    else:
        lines.append(f"  {audio.render_wav(midi, folder / 'demo.wav')}  audio: FluidSynth with {audio.soundfont()}")
    return lines
