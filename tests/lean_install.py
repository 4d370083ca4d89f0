"""The daemon's install alone, in a fresh virtual environment: small, runs, and says which extra the rest needs.

Run by `make test` (`make lean-check`): `pip install .` into a temporary venv (from PyPI or the configured index),
then checks it and prints the figures as JSON. Exit status 1 names what failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIMIT_MB = 130
OFFLINE_ONLY = ("music21", "matplotlib", "tensorflow", "keras")


def size_mb(folder: Path) -> float:
    """Disk use as du counts it (allocated blocks)."""
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*")) / 2**20


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def check(env: Path, outside: Path) -> list[str]:
    """What is wrong with the install in ``env`` (empty when all is well)."""
    python, bin_dir = env / "bin" / "python", env / "bin"
    problems = []
    installed = run(python, "-m", "pip", "list", "--format=json", cwd=outside).stdout
    names = {item["name"].lower() for item in json.loads(installed)}
    problems += [f"{name} was installed with the daemon" for name in OFFLINE_ONLY if name in names]
    if run(bin_dir / "improvd", "run", "--help", cwd=outside).returncode != 0:
        problems.append("improvd run --help failed")
    loaded = run(
        python,
        "-c",
        "from improvd.core.model import DEFAULT_MODEL_DIR as d, load_model; load_model(d); print(d)",
        cwd=outside,
    )
    if loaded.returncode != 0 or not loaded.stdout.startswith(str(env)):
        problems.append(f"the shipped model did not load from the install: {loaded.stdout}{loaded.stderr[-300:]}")
    for command, extra in (
        (["improvd", "continue", "x.abc", "-o", "y.mid"], "offline"),
        (["improvd-train", "--help"], "train"),
    ):
        result = run(bin_dir / command[0], *command[1:], cwd=outside)
        if result.returncode != 2 or f"improvd[{extra}]" not in result.stderr:
            problems.append(f"{' '.join(command)} did not name the {extra} extra: {result.stderr[-300:]}")
    if run(python, "-c", "import training", cwd=outside).returncode == 0:
        problems.append("a bare `training` package was installed")
    if run(python, "-c", "import improvd_training.command", cwd=outside).returncode != 0:
        problems.append("improvd_training is not importable")
    return problems


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="improvd-lean-") as tmp:
        env, outside = Path(tmp) / "venv", Path(tmp)
        venv.EnvBuilder(with_pip=True).create(env)
        install = run(env / "bin" / "python", "-m", "pip", "install", "-q", str(REPO), cwd=outside)
        if install.returncode != 0:
            print(f"pip install . failed:\n{install.stderr[-2000:]}", file=sys.stderr)
            return 1
        megabytes = size_mb(env)
        problems = check(env, outside)
        if megabytes > LIMIT_MB:
            problems.append(f"the daemon's venv is {megabytes:.0f} MB, over {LIMIT_MB} MB")
        print(json.dumps({"daemon_venv_mb": round(megabytes, 1), "limit_mb": LIMIT_MB, "problems": problems}))
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
