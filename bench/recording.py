"""A session recording at its cap (200,000 messages): what a save costs, beside the first save of the same session.

The daemon saves every 10 s off the timing thread (improvd.daemon.recorder.Writer). Figures: the CPU time of
the first save (everything encoded: the reference), of a save after 100 new messages, and of a save with nothing
new (the idle case, which used to rewrite the whole file); each as a ratio to the first. Also the memory the
session holds (tracemalloc), per message. JSON on stdout.

    python bench/recording.py
"""

from __future__ import annotations

import json
import tempfile
import time
import tracemalloc
from pathlib import Path

import mido

from improvd.daemon.recorder import MAX_MESSAGES, Session, Writer


def cpu(function) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def main() -> None:
    tracemalloc.start()
    session = Session(start=0.0)
    session.grid(0, 0.0, 0.125, "4/4")
    for k in range(MAX_MESSAGES):
        pedal = mido.Message("control_change", control=64, value=127 * (k % 2))
        session.add("player", pedal, k * 0.01)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with tempfile.TemporaryDirectory() as folder:
        writer = Writer(session, Path(folder))
        first = cpu(writer.save)
        session._count -= 100  # room for 100 more (the cap is reached)
        for k in range(100):
            session.add("improvd", mido.Message("note_on", note=60, velocity=80 * (k % 2)), MAX_MESSAGES * 0.01 + k)
        new = cpu(writer.save)
        idle = cpu(writer.save)
        size = writer.path.stat().st_size
    print(
        json.dumps(
            {
                "messages": MAX_MESSAGES,
                "file_bytes": size,
                "session_bytes_per_message": round(held / MAX_MESSAGES, 1),
                "first_save_s": round(first, 4),
                "save_after_100_new_s": round(new, 4),
                "save_with_nothing_new_s": round(idle, 6),
                "ratio_after_100_new": round(new / first, 4),
                "ratio_nothing_new": round(idle / first, 6),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
