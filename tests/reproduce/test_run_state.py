"""A reproduce run cut off by `kill -9` continues from its saved training state: the resumed run
ends where an uninterrupted one does, weight for weight (CPU, one thread)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from remedies.config import config_to_dict, parse_config
from remedies.reproduce.task import run_one

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_a_run_killed_mid_training_continues_from_its_state(tmp_path):
    raw = config_to_dict(parse_config({
        "data": {"name": "mnist1d", "num_samples": 3000, "cache_dir": str(tmp_path / "cache")},
        "model": {"name": "F1", "width": 0.3},
        "train": {"batch_size": 32, "epochs": 10, "lr": 1e-3, "threads": 1, "device": "cpu",
                  "checkpoint": False, "seed": 3},
        "measure": {"keskar": {"enabled": False}},
    }))  # fmt: skip
    state = tmp_path / "run.state.pt"
    code = (
        "import sys, json; from pathlib import Path; from remedies.reproduce.task import run_one;"
        f"run_one(json.loads(sys.argv[1]), True, None, Path({str(state)!r}))"
    )
    import json

    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(raw)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    deadline = time.time() + 120
    while not state.is_file():
        assert proc.poll() is None, "the run ended before its first saved state"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    saved_at = torch.load(state, weights_only=False)["epoch"]
    assert 1 <= saved_at < 10, saved_at

    resumed = run_one(raw, True, None, state)
    whole = run_one(raw, True, None, None)
    assert resumed["resumed_at_epoch"] == saved_at and whole["resumed_at_epoch"] == 0
    assert resumed["epochs_run"] == whole["epochs_run"] == 10
    for k, v in whole["weights"].items():
        assert torch.equal(resumed["weights"][k], v), k
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert [h["train_loss"] for h in resumed["history"]] == [
        h["train_loss"] for h in whole["history"]
    ]
