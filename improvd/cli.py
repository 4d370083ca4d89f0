"""`improvd` command line: one subcommand per module, each with add_arguments(parser) and main(args) -> int."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from improvd.extras import MissingExtra, require

# The LSTM's one-step products are small: a BLAS thread pool only adds worker threads that spin after each product
# (half a core with an LSTM of 384 units). Set before numpy loads OpenBLAS; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# subcommand -> (module that implements it, one-line help, the extra it needs beyond the daemon's install)
SUBCOMMANDS = {
    "run": ("improvd.daemon.service", "run the daemon: listen on MIDI, answer phrases, obey MQTT", None),
    "ports": ("improvd.daemon.ports", "list the MIDI ports of the chosen API", None),
    "continue": (
        "improvd.offline.continue_command",
        "continue the melody of a file (MIDI, abc, kern, MusicXML) into a MIDI file, or a WAV",
        "offline",
    ),
    "demo": (
        "improvd.offline.demo",
        "no keyboard needed: continue an Essen tune and write MIDI, MusicXML, PNG and WAV",
        "offline",
    ),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``chosen`` subcommand's module is imported (none when None: the top-level help).

    Importing only what runs keeps ``improvd run`` free of music21 and matplotlib, which the offline tools need
    (and which the daemon's install leaves out). A chosen command whose extra is missing raises MissingExtra.
    """
    parser = argparse.ArgumentParser(
        prog="improvd", description="A real-time AI improvisation partner for MIDI keyboards."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text, extra) in SUBCOMMANDS.items():
        subparser = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            if extra is not None:
                require(extra, f"improvd {name}")
            importlib.import_module(module_name).add_arguments(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    try:
        args = build_parser(chosen).parse_args(argv)
    except MissingExtra as error:
        print(f"improvd: {error}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return module.main(args)


if __name__ == "__main__":
    sys.exit(main())
