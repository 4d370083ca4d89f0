"""The `improvd` command line itself."""

from __future__ import annotations

import os
import subprocess
import sys


def test_numpy_runs_without_a_blas_thread_pool_under_improvd():
    """OpenBLAS worker threads spin after every LSTM step: the command line keeps BLAS to the calling thread."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    code = "import {}numpy, os; print(len(os.listdir('/proc/self/task')))"
    counts = [
        subprocess.run([sys.executable, "-c", code.format(prefix)], env=env, capture_output=True, text=True, check=True)
        for prefix in ("improvd.cli, ", "")
    ]
    with_cli, plain = (int(result.stdout) for result in counts)
    assert with_cli == 1
    assert plain > 1 or os.cpu_count() == 1  # what it prevents: BLAS threads beside the main one
