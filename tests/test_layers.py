"""The package's layers, held by their imports: core below daemon and offline, tensorflow nowhere in improvd.

Every import statement counts, those inside functions too, so a lazy import cannot cross a layer unseen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "improvd"
# What the pure core may not reach: I/O, threads, clocks, the layers above it, the offline and training stacks.
NOT_IN_CORE = {
    "improvd.daemon", "improvd.offline", "improvd.cli", "improvd.files", "rtmidi", "mido.backends", "mido.ports",
    "asyncio", "socket", "threading", "subprocess", "time", "aiomqtt", "paho", "music21", "matplotlib",
}  # fmt: skip
NOT_IN_DAEMON = {"improvd.offline", "music21", "matplotlib"}
NOWHERE = {"tensorflow", "keras", "improvd_training", "training", "pickle"}


def imports_of(path: Path) -> set[str]:
    """The absolute module names ``path`` imports, each with its parents (``a.b.c`` gives a, a.b, a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in found:
            parts = name.split(".")
            names.update(".".join(parts[: end + 1]) for end in range(len(parts)))
    return names


def modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).glob("*.py"))


def test_the_layers_are_where_the_readme_says():
    assert modules("core") and modules("daemon") and modules("offline")
    assert {path.name for path in PACKAGE.glob("*.py")} == {"__init__.py", "cli.py", "extras.py", "files.py"}


@pytest.mark.parametrize("path", modules("core"), ids=lambda path: path.name)
def test_the_core_imports_no_io_and_nothing_above_it(path):
    assert not imports_of(path) & (NOT_IN_CORE | NOWHERE)


@pytest.mark.parametrize("path", modules("daemon"), ids=lambda path: path.name)
def test_the_daemon_imports_none_of_the_offline_tools(path):
    assert not imports_of(path) & (NOT_IN_DAEMON | NOWHERE)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_nothing_in_improvd_imports_tensorflow_or_training(path):
    assert not imports_of(path) & NOWHERE


def test_the_check_sees_a_lazy_import_inside_a_function(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("def later():\n    from improvd.daemon import ports\n    import music21.stream\n")
    assert {"improvd.daemon", "improvd.daemon.ports", "music21", "music21.stream"} <= imports_of(module)
