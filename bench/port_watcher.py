"""CPU of the port watcher's looks: a thread started for each look (``off_loop``, as the daemon looked before
42bc96d) against the long-lived watcher (``improvd.daemon.watcher.PortWatcher``), in one run.

Each way makes ``--looks`` no-op looks ``--interval`` seconds apart on an asyncio loop (the looks themselves are the
same either way: what differs is what it takes to make one). CPU is the process's CPU clock, which counts threads
that have ended. Prints one JSON object: CPU per look in ms for each way, the watcher's ratio to the thread per look,
and what each costs at the daemon's two looks a second, in % of a core. Not a test: these machines are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from improvd.daemon.offloop import off_loop
from improvd.daemon.watcher import PortWatcher

LOOKS_A_SECOND = 2  # the daemon's PORT_POLL of 0.5 s


def look() -> list:
    return []


async def thread_per_look(looks: int, interval: float) -> int:
    for _ in range(looks):
        await asyncio.sleep(interval)
        await off_loop(look, name="improvd-ports")
    return looks


async def watcher(looks: int, interval: float) -> int:
    loop, done, made = asyncio.get_running_loop(), asyncio.Event(), [0]

    def counted() -> list:  # the loop sleeps meanwhile, as the daemon's does between looks that find nothing
        made[0] += 1
        if made[0] == looks:
            loop.call_soon_threadsafe(done.set)
        return []

    ports = PortWatcher(counted, lambda outcome: None, interval)
    ports.start()
    await done.wait()
    ports.stop(1)
    return made[0]


def cpu_per_look(way, looks: int, interval: float) -> float:
    start = time.process_time()
    made = asyncio.run(way(looks, interval))
    return 1000 * (time.process_time() - start) / made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--looks", type=int, default=1000, help="looks each way, each round (default 1000)")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between looks (default 0.01)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both ways, alternately (default 2)")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"thread_per_look": [], "watcher": []}
    for _ in range(args.rounds):
        figures["thread_per_look"].append(cpu_per_look(thread_per_look, args.looks, args.interval))
        figures["watcher"].append(cpu_per_look(watcher, args.looks, args.interval))
    best = {way: min(values) for way, values in figures.items()}
    report = {
        "cpu_ms_per_look": {way: [round(v, 4) for v in values] for way, values in figures.items()},
        "watcher_ratio_to_thread_per_look": round(best["watcher"] / best["thread_per_look"], 3),
        "percent_of_a_core_at_two_looks_a_second": {
            way: round(LOOKS_A_SECOND * ms / 10, 4) for way, ms in best.items()
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
