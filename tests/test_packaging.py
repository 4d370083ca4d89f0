"""The daemon's install is lean: `improvd run` imports none of the offline tools, and a missing extra is named.

`make lean-check` (part of `make test`) installs the daemon alone into a fresh venv and checks its size.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DAEMON = {"numpy", "mido", "python-rtmidi", "aiomqtt", "tomli"}
OFFLINE = ("music21", "matplotlib", "tensorflow", "keras", "training", "improvd_training")
BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
import importlib.util
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in {blocked!r} else sys.modules.get(name, 1)
"""


def run_python(code: str, repo_root) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=60)


def test_the_daemon_depends_on_the_daemons_modules_only(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    names = {dependency.split(">")[0].split(";")[0].split("=")[0].strip() for dependency in project["dependencies"]}
    assert names == DAEMON
    extras = project["optional-dependencies"]
    assert {"offline", "train", "dev"} <= set(extras)
    assert any(d.startswith("music21") for d in extras["offline"])
    assert project["scripts"]["improvd-train"].startswith("improvd_training.")


def test_improvd_run_imports_none_of_the_offline_tools(repo_root):
    code = textwrap.dedent(
        f"""
        import sys
        from improvd import cli
        from improvd.daemon import service
        from improvd.daemon import mqtt
        from improvd.daemon import ports
        cli.build_parser("run").parse_args(["run", "--no-mqtt"])
        cli.build_parser("ports")
        print(sorted(m for m in sys.modules if m.split(".")[0] in {OFFLINE!r}))
        """
    )
    result = run_python(code, repo_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_command_whose_extra_is_missing_names_the_extra(repo_root):
    blocked = ("music21", "matplotlib", "keras", "tensorflow")
    block = BLOCK.format(blocked=blocked)
    offline = run_python(
        block + "from improvd.cli import main; sys.exit(main(['continue', 'a.abc', '-o', 'b.mid']))", repo_root
    )
    assert offline.returncode == 2
    assert "improvd continue needs the 'offline' extra" in offline.stderr and "improvd[offline]" in offline.stderr
    train = run_python(block + "from training.command import main; sys.exit(main(['--help']))", repo_root)
    assert train.returncode == 2 and "improvd[train]" in train.stderr
    daemon = run_python(block + "from improvd.cli import main; main(['run', '--help'])", repo_root)
    assert daemon.returncode == 0 and "--temperature" in daemon.stdout
