"""`improvd continue INPUT -o OUTPUT.mid`: continue the melody of a file, through the engine in simulated time."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from improvd.callfile import Call, CallError, read_call
from improvd.engine import Engine, Settings
from improvd.model import DEFAULT_MODEL_DIR, Model, ModelError, load_model
from improvd.offline import OfflineError, Performance, perform
from improvd.outputs import grid_melody, write_midi, write_musicxml

DEFAULT_BARS = 4
MAX_RESPONSE_STEPS = 256


class UsageError(ValueError):
    """A bad option value; the text names it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="a .mid, .abc, .krn, .musicxml or .mxl file; its top line is the call")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the MIDI file to write (call and response)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="length of the response in sixteenth-note steps (1 to 256)")
    length.add_argument(
        "--bars", type=int, help=f"length of the response in bars of the input (default {DEFAULT_BARS})"
    )
    parser.add_argument(
        "--temperature", type=float, default=Settings.temperature, help="sampling temperature (0.05 to 2.0)"
    )
    parser.add_argument(
        "--top-p", type=float, help="nucleus sampling: keep the likeliest symbols up to this mass (0 to 1]"
    )
    parser.add_argument(
        "--seed", type=int, help="random seed: the same input and seed give the same file (default: random)"
    )
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL_DIR, help=f"model directory (default {DEFAULT_MODEL_DIR})"
    )
    parser.add_argument("--bpm", type=float, help="tempo of the call (default: the file's, else 120)")
    parser.add_argument("--musicxml", type=Path, help="also write call and response as a MusicXML score")


def response_steps(call: Call, steps: int | None, bars: int | None) -> int:
    """The response length in steps from --steps or --bars (bars of the call's time signature)."""
    if steps is None:
        bars = DEFAULT_BARS if bars is None else bars
        if bars < 1:
            raise UsageError(f"--bars {bars}: give at least 1")
        steps = bars * call.steps_per_bar
        if steps > MAX_RESPONSE_STEPS:
            raise UsageError(
                f"--bars {bars}: {steps} steps of {call.steps_per_bar} a bar; at most {MAX_RESPONSE_STEPS}"
            )
    if not 1 <= steps <= MAX_RESPONSE_STEPS:
        raise UsageError(f"--steps {steps}: give 1 to {MAX_RESPONSE_STEPS}")
    return steps


def respond(call: Call, model: Model, settings: Settings, seed: int) -> Performance:
    """The engine's answer to ``call`` (settings validated; bpm is the call's)."""
    settings.bpm = call.bpm
    settings.validate()
    return perform(Engine(model, settings, seed=seed), call.notes)


def check_writable(path: Path) -> None:
    if not path.parent.is_dir():
        raise UsageError(f"{path}: the folder {path.parent} does not exist")


def main(args: argparse.Namespace) -> int:
    try:
        for path in (args.output, args.musicxml):
            if path is not None:
                check_writable(path)
        call = read_call(args.input, args.bpm)
        steps = response_steps(call, args.steps, args.bars)
        model = load_model(args.model)
        seed = args.seed if args.seed is not None else random.randrange(2**31)
        settings = Settings(temperature=args.temperature, top_p=args.top_p, response_steps=steps)
        performance = respond(call, model, settings, seed)
        write_midi(args.output, call.notes, performance.response, call.bpm, call.time_signature, call.title)
        if args.musicxml:
            write_score(args.musicxml, call, performance, settings.gate)
    except (CallError, ModelError, OfflineError, ValueError, OSError) as error:
        print(f"improvd continue: error: {error}", file=sys.stderr)
        return 1
    print(
        f"{args.input}: call of {len(call.notes)} notes at {call.bpm:g} bpm, answered with "
        f"{len(performance.response)} notes by {model.name} (seed {seed}) -> {args.output}"
        + (f", {args.musicxml}" if args.musicxml else "")
    )
    return 0


def write_score(path: Path, call: Call, performance: Performance, gate: float) -> Path:
    """Call and response on the sixteenth grid as a two-part MusicXML score."""
    step = call.step_seconds
    numerator, denominator = call.time_signature
    return write_musicxml(
        path,
        grid_melody(call.notes, step),
        grid_melody(performance.response, step, gate),
        f"{numerator}/{denominator}",
        call.title,
    )
