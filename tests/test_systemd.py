"""The service unit: systemd accepts it, and its sandboxing rates 2.0 or lower (lower is safer)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.services import require_binary

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "improvd.service"


@pytest.fixture
def analyze() -> str:
    return require_binary("systemd-analyze", "systemd")


@pytest.fixture
def unit(tmp_path) -> Path:
    """The unit with ExecStart pointing at an existing file (verify checks that it is executable)."""
    copy = tmp_path / "improvd.service"
    copy.write_text(UNIT.read_text().replace("/opt/improvd/bin/improvd", shutil.which("true") or "/bin/true"))
    return copy


def test_unit_verifies(analyze, unit):
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "improvd.service" not in result.stderr, result.stderr  # no warnings about the unit itself


def test_unit_security_exposure_at_most_2(analyze, unit):
    result = subprocess.run([analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    score = re.search(r"Overall exposure level for improvd\.service: (\d+\.\d+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 2.0, result.stdout


def test_unit_is_notify_with_watchdog_and_reload():
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "SupplementaryGroups=audio",
        "NoNewPrivileges=yes",
    ):
        assert line in text
    assert re.search(r"^WatchdogSec=\d+", text, re.M)
    assert re.search(r"^DynamicUser=yes", text, re.M)
