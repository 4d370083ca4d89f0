"""Training across two worker processes on loopback (tf.distribute, TF_CONFIG), exported and run by the daemon."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from improvd.core.model import load_model
from improvd.core.runtime import LSTMRuntime

pytestmark = pytest.mark.train


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_one_model_that_the_daemon_runs(tmp_path, repo_root):
    pytest.importorskip("tensorflow", reason="the train extra")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    args = ["fit", "--strategy", "multiworker", "--files", "kinder0", "--max-tunes", "40", "--epochs", "2"]
    args += ["--lstm-units", "12", "--sequence-length", "32", "--batch-size", "16", "--name", "tiny", "--seed", "3"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--no-keras"]
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        where = ["--models-dir", str(tmp_path / f"models{index}"), "--run-dir", str(tmp_path / f"run{index}")]
        command = [sys.executable, "-m", "training.command", *args, *where]
        workers.append(
            subprocess.Popen(command, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err.decode()[-3000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    chief, other = results
    assert chief["chief"] and not other["chief"] and other["model"] is None
    assert chief["epochs_run"] == other["epochs_run"] == 2
    assert chief["best_val_loss_nats"] == pytest.approx(other["best_val_loss_nats"])  # one model, trained together
    assert not (tmp_path / "models1").exists()
    model = load_model(tmp_path / "models0" / "tiny")
    logits = LSTMRuntime(model).prime([model.vocabulary.index["/"]] * 3)
    assert logits.shape == (len(model.vocabulary),) and np.all(np.isfinite(logits))
