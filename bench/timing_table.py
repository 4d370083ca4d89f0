"""docs/performance.md's timing table, made from the JSON of one or more runs of bench/timing.py.

Each row is a case (the tempo and metronome cases; follow and midiclock measure following, against no goal); each
cell gives the runs in the order of the files, separated by semicolons, with the reference measured beside each.
Then the goals each run missed.

    PYTHONPATH=. .venv/bin/python bench/timing_table.py RUN1.json [RUN2.json ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HEADER = (
    "| case | send lateness p99, ms: improvd / reference (ratio) "
    "| received onset error p99, ms: improvd / reference (ratio) | idle CPU over the reference, % of a core |\n"
    "| --- | --- | --- | --- |"
)


def case_name(run: dict) -> str:
    """The row's name: '120 BPM, MIDI flood', '120 BPM, quiet, metronome'."""
    flood = {None: "quiet", "midi": "MIDI flood", "mqtt": "MQTT flood"}[run["flood"]]
    extra = "".join(f", {flag.lstrip('-')}" for flag in run["flags"])
    return f"{run['bpm']} BPM, {flood}{extra}"


def _against(run: dict, figure: str, ratio: str) -> str:
    ours, theirs = run[figure]["p99"], run["reference"][figure]["p99"]
    digits = 3 if figure == "send_lateness_ms" else 2
    return f"{ours:.{digits}f} / {theirs:.{digits}f} ({run[ratio]}×)"


def cells(run: dict) -> tuple[str, str, str]:
    """One run's three figures, as the table writes them."""
    idle = run["idle_cpu_percent_over_reference"]
    return (
        _against(run, "send_lateness_ms", "send_p99_ratio_to_reference"),
        _against(run, "onset_error_ms", "onset_p99_ratio_to_reference"),
        f"{idle:+.2f}",
    )


def table(reports: list[dict]) -> str:
    """The markdown table of the runs' timed cases, then each run's missed goals."""
    rows: dict[str, list[tuple[str, str, str]]] = {}
    missed = []
    for number, report in enumerate(reports, 1):
        timed = [run for run in report["runs"] if "send_lateness_ms" in run and "goals_missed" in run]
        for run in timed:
            rows.setdefault(case_name(run), []).append(cells(run))
        missed += [
            f"run {number}, {case_name(run)}: {', '.join(run['goals_missed'])}" for run in timed if run["goals_missed"]
        ]
    lines = [HEADER]
    for name, runs in rows.items():
        lines.append(f"| {name} | " + " | ".join("; ".join(column) for column in zip(*runs, strict=True)) + " |")
    lines.append("")
    lines.append("Goals missed: " + ("; ".join(missed) if missed else "none"))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="JSON files written by bench/timing.py --json")
    args = parser.parse_args()
    print(table([json.loads(path.read_text()) for path in args.runs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
