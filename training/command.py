"""The ``improvd-train`` console script: says which extra to install when training's modules are missing."""

from __future__ import annotations

import os
import sys

from improvd.extras import MissingExtra, require

# evaluate and compare step LSTMs one 16th at a time, as the daemon does: a BLAS thread pool only adds threads
# that spin after each small product (10x slower on a loaded 2-core machine). Set before numpy loads OpenBLAS; a
# user's own setting wins; Keras's training does not use OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


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
