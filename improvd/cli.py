"""`improvd` command line: one subcommand per module, each with add_arguments(parser) and main(args) -> int."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module that implements it, one-line help)
SUBCOMMANDS = {
    "run": ("improvd.service", "run the daemon: listen on MIDI, answer phrases, obey MQTT"),
    "ports": ("improvd.midi", "list the MIDI ports of the chosen API"),
    "continue": ("improvd.continuation", "continue the melody of a file (MIDI, abc, kern, MusicXML) into a MIDI file"),
    "demo": ("improvd.demo", "no keyboard needed: continue an Essen tune and write MIDI, MusicXML, PNG and WAV"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="improvd", description="A real-time AI improvisation partner for MIDI keyboards."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(commands.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return module.main(args)


if __name__ == "__main__":
    sys.exit(main())
