"""The ``improvd-train`` console script: says which extra to install when training's modules are missing."""

from __future__ import annotations

import sys

from improvd.extras import MissingExtra, require


def main(argv: list[str] | None = None) -> int:
    """Check the ``train`` extra, then run ``improvd-train`` (its modules import music21 and Keras)."""
    try:
        require("train", "improvd-train")
    except MissingExtra as error:
        print(f"improvd-train: {error}", file=sys.stderr)
        return 2
    from .cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
