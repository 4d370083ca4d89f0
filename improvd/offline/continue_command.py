"""`improvd continue INPUT -o OUTPUT.mid`: continue the melody of a file, through the engine in simulated time.

An output named ``.wav`` is the same call and response rendered to audio with FluidSynth.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from improvd.core.encoding import HOLD, REST
from improvd.core.engine import Engine, Settings
from improvd.core.grid import parse_meter
from improvd.core.keys import call_key as heard_key
from improvd.core.model import DEFAULT_MODEL_DIR, Model, ModelError
from improvd.core.schema import BY_NAME
from improvd.core.simulate import OfflineError, Performance, perform
from improvd.core.styles import Styles, load_style
from improvd.files import check_target, write_all
from improvd.offline import audio, render
from improvd.offline.call_reader import Call, CallError, read_call
from improvd.offline.engraving import Heading, melody_key
from improvd.offline.writers import Note, grid_melody, write_midi, write_musicxml

DEFAULT_BARS = 4
MAX_RESPONSE_STEPS = 256


class UsageError(ValueError):
    """A bad option value; the text names it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="a .mid, .abc, .krn, .musicxml or .mxl file; its top line is the call")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="the file to write, call and response: MIDI, or a WAV when it ends in .wav (rendered with FluidSynth)",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--steps",
        type=int,
        help=f"length of the response in sixteenth-note steps ({BY_NAME['response_steps'].span(' to ')})",
    )
    length.add_argument(
        "--bars",
        type=int,
        help=f"length of the response in whole bars of the input's metre, {BY_NAME['response_bars'].span(' to ')} "
        f"(default {DEFAULT_BARS})",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=Settings.temperature,
        help=f"sampling temperature ({BY_NAME['temperature'].span(' to ')})",
    )
    parser.add_argument(
        "--top-p",
        type=float,
        help=f"nucleus sampling: keep the likeliest symbols up to this mass ({BY_NAME['top_p'].span()})",
    )
    parser.add_argument(
        "--seed", type=int, help="random seed: the same input and seed give the same file (default: random)"
    )
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL_DIR, help=f"model directory (default {DEFAULT_MODEL_DIR})"
    )
    add_style_arguments(parser)
    parser.add_argument(
        "--bpm", type=float, help="tempo of the call in quarter notes a minute (default: the file's, else 120)"
    )
    parser.add_argument("--musicxml", type=Path, help="also write call and response as a MusicXML score")
    parser.add_argument(
        "--score",
        type=Path,
        help=f"also draw the score as a picture, {' or '.join(render.SUFFIXES)}, with MuseScore "
        f"(Debian: {render.PACKAGE})",
    )


def length_settings(call: Call, steps: int | None, bars: int | None) -> dict:
    """The answer's length as engine settings: ``--steps`` 16ths, else ``--bars`` whole bars of the call's metre."""
    if steps is not None:
        if not 1 <= steps <= MAX_RESPONSE_STEPS:
            raise UsageError(f"--steps {steps}: give 1 to {MAX_RESPONSE_STEPS}")
        return {"response_steps": steps}
    return {"response_bars": DEFAULT_BARS if bars is None else bars}  # Settings.validate checks the range


def meter_of(call: Call) -> str:
    """The call's time signature as the engine's meter; 4/4 when the engine cannot count it in 16ths."""
    numerator, denominator = call.time_signature
    try:
        parse_meter(f"{numerator}/{denominator}")
    except ValueError:
        return "4/4"
    return f"{numerator}/{denominator}"


def add_style_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--style",
        help="auto (the model under --models-path that predicts the call best answers) or a model's folder name "
        "there (default: --model)",
    )
    parser.add_argument(
        "--models-path",
        type=Path,
        default=DEFAULT_MODEL_DIR.parent,
        help=f"the models --style chooses from (default {DEFAULT_MODEL_DIR.parent})",
    )


def respond(call: Call, model: Model, settings: Settings, seed: int, styles: Styles | None = None) -> Performance:
    """The engine's answer to ``call`` (settings validated; bpm and meter are the call's), with style auto when
    ``styles`` are given (the response_start event names the model that answered)."""
    settings.bpm = call.bpm
    settings.meter = meter_of(call)
    settings.validate()
    engine = Engine(model, settings, seed=seed)
    engine.set_styles(styles)
    return on_its_bar_line(perform(engine, call.notes), engine.step_seconds())


def on_its_bar_line(performance: Performance, step_seconds: float) -> Performance:
    """``performance`` with an answer that entered on a bar line at its grace (``phrase_end = "music"``: the first
    note waits that long for a live player who might go on) written with that first note on the bar line: a file's
    call is over, and its answer's file and score put the note in the same place."""
    start = next((e for e in performance.events if e.name == "response_start"), None)
    line = start.data["first_step"] * step_seconds if start is not None else math.inf
    if start is None or start.time <= line:
        return performance
    moved = [replace(n, start=line) if line < n.start <= start.time + 1e-9 else n for n in performance.response]
    return replace(performance, response=moved)


def answered_by(performance: Performance) -> str:
    """The name of the model that answered (the first answer's)."""
    return next(e.data["model"] for e in performance.events if e.name == "response_start")


def is_audio(path: Path) -> bool:
    return path.suffix.lower() == ".wav"


def check_outputs(source: Path, outputs: list[Path], score: Path | None = None) -> None:
    """Refuse outputs that cannot be written as files, or would overwrite the input or each other, a WAV where
    FluidSynth or a SoundFont is missing, and a score picture where MuseScore is."""
    why_not = audio.missing() if any(is_audio(path) for path in outputs) else None
    if why_not:
        raise UsageError(f"{outputs[0]}: cannot render a WAV: {why_not}; or give a .mid file")
    if score is not None:
        render.check_suffix(score)
        if render.missing():
            raise UsageError(f"{score}: cannot draw the score: {render.missing()}")
        outputs = [*outputs, score]
    for path in outputs:
        if not path.parent.is_dir():
            raise UsageError(f"{path}: the folder {path.parent} does not exist")
        if path.is_dir():
            raise UsageError(f"{path}: is a folder; give a file name")
        check_target(path)  # /dev/null, a FIFO or a link is never replaced by the output
        if path.exists() and source.exists() and path.samefile(source):
            raise UsageError(f"{path}: is the input file; give another name for the output")
    if len({path.resolve() for path in outputs}) < len(outputs):
        raise UsageError(f"{outputs[0]}: the outputs must be different files")


def main(args: argparse.Namespace) -> int:
    try:
        check_outputs(args.input, [path for path in (args.output, args.musicxml) if path is not None], args.score)
        call = read_call(args.input, args.bpm)
        length = length_settings(call, args.steps, args.bars)
        model, styles = load_style(args.style, args.model, args.models_path)
        seed = args.seed if args.seed is not None else random.randrange(2**31)
        settings = Settings(temperature=args.temperature, top_p=args.top_p, **length)
        performance = respond(call, model, settings, seed, styles)

        def midi(path: Path) -> Path:
            return write_midi(
                path, call.notes, performance.response, call.bpm, call.time_signature, call.title, call_key(call)
            )

        writes = [(args.output, audio.audio_writer(midi) if is_audio(args.output) else midi)]
        if args.musicxml:
            writes.append((args.musicxml, lambda p: write_score(p, call, performance, settings.gate)))
        with tempfile.TemporaryDirectory(prefix="improvd-score-") as folder:
            if args.score:
                drawn = write_score(Path(folder) / "score.musicxml", call, performance, settings.gate)
                writes += render.drawings(drawn, args.score, Path(folder))
            write_all(writes)  # every file or none
    except (CallError, ModelError, OfflineError, audio.RenderError, render.RenderError, ValueError, OSError) as error:
        print(f"improvd continue: error: {error}", file=sys.stderr)
        return 1
    print(
        f"{args.input}: call of {len(call.notes)} notes at {call.bpm:g} bpm, answered with "
        f"{len(performance.response)} notes by {answered_by(performance)} (seed {seed}) -> {args.output}"
        + "".join(f", {path}" for path, _ in writes[1:])
    )
    return 0


def call_key(call: Call) -> tuple[str, str]:
    """The call's key: the file's own, else (or when its notes do not fit it) the key improvd hears in it, as the
    engine does (improvd.core.keys.call_key)."""
    melody = grid_melody(call.notes, call.step_seconds)
    heard = heard_key(call_symbols(melody), call.bar_start_step, call.steps_per_bar)
    return melody_key(melody, call.key, heard)


def call_symbols(melody: list[Note]) -> list[str]:
    """The melody as the engine's 16th-step symbols (a pitch where a note starts, holds after it, rests)."""
    symbols: list[str] = []
    for note in melody:
        steps = max(1, round(note.quarter_length * 4))
        symbols += [str(note.pitch) if note.pitch is not None else REST] + [HOLD] * (steps - 1)
    return symbols


def write_score(path: Path, call: Call, performance: Performance, gate: float) -> Path:
    """Call and response on the sixteenth grid as a MusicXML score of one staff, in the call's key."""
    step = call.step_seconds
    heading = Heading(call.title, call.time_signature, call_key(call), call.bpm, call.spelling)
    return write_musicxml(path, grid_melody(call.notes, step), grid_melody(performance.response, step, gate), heading)
