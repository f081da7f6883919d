"""A search over the user's own model and data (factories in `tests/`, by import path) on real
Ray, MLflow and Optuna; the winner exported both ways, and the Python export run as written
ends at exactly the trial's validation accuracy (same seed, one CPU thread per trial)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from remedies.cli import main
from remedies.results.report import load_study
from remedies.search.driver import SearchOptions, run_search
from remedies.search.space import parse_space
from remedies.stores import tracking

ROOT = Path(__file__).resolve().parents[2]
N = 3
SPACE = {
    "name": "byo",
    "base": {
        "data": {"factory": "tests.factories:blobs", "kwargs": {"n_train": 300}},
        "model": {"factory": "tests.factories:tiny_net"},
        "train": {"epochs": 3, "batch_size": 60, "checkpoint": False},
        "measure": {"keskar": {"eps": [1e-3], "iters": 2}},
    },
    "params": {
        "train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
        "model.kwargs.hidden": {"type": "int", "low": 8, "high": 32},
    },
    "remedies": {"sam": {"rho": {"type": "float", "low": 0.02, "high": 0.1}}},
    "sampler": {"name": "tpe", "seed": 1, "n_startup_trials": 3},
    "asha": {"enabled": False},
    "baselines": {"enabled": False},
    "num_samples": N,
    "max_concurrent": 2,
    "resources": {"cpu": 1, "gpu": 0},
}


@pytest.mark.slow
def test_search_export_and_run_your_own_model_and_data(
    ray_local, mlflow_server, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    storage = str(tmp_path / "studies.db")
    opts = SearchOptions(
        name="byo-1",
        tracking_uri=mlflow_server,
        storage=storage,
        results_dir=str(tmp_path / "ray"),
        quiet=True,
    )
    summary = run_search(parse_space(SPACE), opts)
    assert summary["trials"] == N and summary.exit_code == 0
    study = load_study("byo-1", storage)
    kids = tracking.child_runs(mlflow_server, "byo", study.user_attrs["mlflow_parent_run_id"])
    assert len(kids) == N
    for k in kids:  # the factory and its searched kwargs are what MLflow shows for the run
        assert k.data.params["model.factory"] == "tests.factories:tiny_net"
        assert k.data.params["data.factory"] == "tests.factories:blobs"
        assert 8 <= int(k.data.params["model.kwargs.hidden"]) <= 32

    capsys.readouterr()
    assert main(["export", "byo-1", "--storage", storage, "--pick", "best-accuracy"]) == 0
    assert (
        main(
            [
                "export",
                "byo-1",
                "--storage",
                storage,
                "--pick",
                "best-accuracy",
                "--format",
                "python",
            ]
        )
        == 0
    )
    assert "wrote best.yaml" in capsys.readouterr().out
    cfg = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert cfg["model"]["factory"] == "tests.factories:tiny_net"
    script = (tmp_path / "best.py").read_text()
    assert "from tests.factories import tiny_net" in script
    trial_no = int(script.split("trial ", 1)[1].split(" ", 1)[0])
    expected = study.trials[trial_no].user_attrs["val_accuracy"]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ran = subprocess.run(
        [sys.executable, "best.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert float(ran.stdout.strip().splitlines()[-1].split()[-1]) == expected
