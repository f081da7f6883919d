"""End to end on real components: local Ray, a real `mlflow server` over HTTP, Optuna storage.

A tiny search (F1 width 0.1, 1000 MNIST-1D samples, 3 epochs) must leave: N trials in the study
(COMPLETE + PRUNED = N, none RUNNING), N child runs under one parent in MLflow with per-epoch
metrics, no run left RUNNING, and an export that `remedies train` re-runs to the same accuracy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from remedies.cli import main
from remedies.service import tracking
from remedies.service.report import load_study, text_report
from remedies.service.space import parse_space
from remedies.service.tuner import SearchOptions, run_search

N = 4
TINY = {
    "name": "e2e",
    "base": {"data": {"num_samples": 1000}, "model": {"width": 0.1},
             "train": {"epochs": 3, "batch_size": 128, "checkpoint": False},
             "measure": {"keskar": {"eps": [1e-3], "iters": 3}, "max_samples": 200}},
    "params": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "remedies": {"lr_scaling": {"rule": {"type": "categorical", "choices": ["none", "sqrt"]}}},
    "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 2},
    "asha": {"enabled": True, "grace_period": 1, "reduction_factor": 2},
    "num_samples": N, "max_concurrent": 2, "resources": {"cpu": 1, "gpu": 0},
}  # fmt: skip


@pytest.mark.slow
def test_tiny_search_end_to_end(ray_local, mlflow_server, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    storage = str(tmp_path / "studies.db")
    opts = SearchOptions(name="e2e-1", tracking_uri=mlflow_server, storage=storage,
                         results_dir=str(tmp_path / "ray"), quiet=True)  # fmt: skip
    summary = run_search(parse_space(TINY), opts)
    assert summary["trials"] == N

    # Optuna: every trial finished as COMPLETE or PRUNED, none RUNNING, front non-empty
    study = load_study("e2e-1", storage)
    states = [t.state for t in study.trials]
    ok = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert len(states) == N and all(s in ok for s in states), states
    assert optuna.trial.TrialState.COMPLETE in states and summary["front"]

    # MLflow: one parent, N children, per-epoch metrics, nothing left RUNNING
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert tracking.run_status(mlflow_server, parent) == "FINISHED"
    kids = tracking.child_runs(mlflow_server, "e2e", parent)
    assert len(kids) == N
    assert all(k.info.status in ("FINISHED", "KILLED") for k in kids)
    for k in kids:
        hist = tracking.metric_history(mlflow_server, k.info.run_id, "val_accuracy")
        assert len(hist) >= 1
        assert "train.lr" in k.data.params and "data.num_samples" in k.data.params
        assert k.data.tags["status"] in ("complete", "pruned")
    done = [k for k in kids if k.data.tags["status"] == "complete"]
    assert done and all("final_keskar_full_eps1e-03" in k.data.metrics for k in done)
    arts = {a.path for a in tracking.client(mlflow_server).list_artifacts(parent)}
    assert {"pareto.png", "pareto.csv", "accuracy_vs_sharpness.png"} <= arts

    # report, then export → `remedies train` reproduces the validation accuracy (same seed)
    assert "Kendall" in text_report(study)
    out = tmp_path / "best.yaml"
    assert main(["export", "e2e-1", "--storage", storage, "--pick", "best-accuracy",
                 "--out", str(out), "--all-pareto", str(tmp_path / "front")]) == 0  # fmt: skip
    text = out.read_text()
    assert text.startswith("# exported from search 'e2e-1'")
    assert list((tmp_path / "front").glob("trial_*.yaml"))
    trial_no = int(text.split("trial ", 1)[1].split(" ", 1)[0])
    expected = study.trials[trial_no].user_attrs["val_accuracy"]
    capsys.readouterr()
    assert main(["train", str(out), "--quiet"]) == 0
    got = json.loads(capsys.readouterr().out)["val_accuracy"]
    assert abs(got - expected) <= 0.5, (got, expected)
    assert yaml.safe_load(text)["train"]["lr"] == study.trials[trial_no].params["train.lr"]

    # the same name again is refused (a unique study per search), nothing new in MLflow
    assert main(["search", "x.yaml", "--name", "e2e-1"]) == 2


@pytest.mark.slow
def test_retried_trial_continues_its_run(ray_local, mlflow_server, tmp_path, monkeypatch):
    """Every trial crashes once after epoch 1; Tune retries it from its checkpoint, which holds
    the MLflow run id: still one run per trial, FINISHED, and the study says COMPLETE."""
    monkeypatch.chdir(tmp_path)
    raw = {**TINY, "name": "retry", "num_samples": 2, "asha": {"enabled": False},
           "max_failures": 1, "remedies": {}}  # fmt: skip
    storage = str(tmp_path / "studies.db")
    opts = SearchOptions(name="retry-1", tracking_uri=mlflow_server, storage=storage,
                         results_dir=str(tmp_path / "ray"), quiet=True,
                         crash_once_after_epoch=1)  # fmt: skip
    run_search(parse_space(raw), opts)
    study = load_study("retry-1", storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    kids = tracking.child_runs(mlflow_server, "retry", study.user_attrs["mlflow_parent_run_id"])
    assert len(kids) == 2 and all(k.info.status == "FINISHED" for k in kids)
    assert all(k.data.tags["status"] == "complete" for k in kids)
    for k in kids:  # epoch 1 was logged by the crashed attempt and again by the retry
        hist = tracking.metric_history(mlflow_server, k.info.run_id, "val_accuracy")
        steps = [s for s, _ in hist]
        assert steps.count(1) == 2 and max(steps) == 3


def test_scalarized_objective():
    from remedies.service.tuner import directions, objective_values

    raw = {
        **TINY,
        "scalarize": True,
        "objectives": [
            {"name": "val_accuracy", "mode": "max"},
            {"name": "keskar_full_eps1e-03", "mode": "min", "weight": 2.0},
        ],
    }
    space = parse_space(raw)
    assert directions(space) == ("score", "max")
    v = objective_values(space, {"val_accuracy": 80.0, "keskar_full_eps1e-03": 5.0})
    assert v["score"] == pytest.approx(70.0)
    assert objective_values(space, {"val_accuracy": 80.0})["score"] is None


@pytest.mark.slow
def test_cli_search_joins_an_existing_cluster(ray_local, mlflow_server, tmp_path):
    """`remedies search --address` from another process runs its trials on a running cluster
    (here the test session's own Ray) and logs to a tracking server."""
    address = ray_local.get_runtime_context().gcs_address
    space = {**TINY, "name": "addr", "num_samples": 2, "asha": {"enabled": False}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    exe = Path(sys.executable).with_name("remedies")
    proc = subprocess.run(
        [str(exe), "search", "space.yaml", "--name", "addr-1", "--address", address,
         "--tracking-uri", mlflow_server, "--storage", "studies.db", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = load_study("addr-1", str(tmp_path / "studies.db"))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert len(tracking.child_runs(mlflow_server, "addr", parent)) == 2


@pytest.mark.slow
def test_interrupted_search_resumes(mlflow_server, tmp_path):
    """Ctrl-C the driver mid-search, then `--resume`: the search finishes, nothing is left
    RUNNING in the study or in MLflow, and the parent run is the same one."""
    import signal
    import time

    space = {**TINY, "name": "resume", "num_samples": 4, "max_concurrent": 1,
             "asha": {"enabled": False}}  # fmt: skip
    space["base"] = {**TINY["base"], "train": {**TINY["base"]["train"], "epochs": 6}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    exe = str(Path(sys.executable).with_name("remedies"))
    args = [exe, "search", "space.yaml", "--name", "res-1", "--tracking-uri", mlflow_server,
            "--storage", "studies.db", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while True:  # interrupt once the first trial has finished
        time.sleep(0.5)
        assert proc.poll() is None and time.time() < deadline, "search ended before interrupt"
        try:
            trials = load_study("res-1", str(tmp_path / "studies.db")).trials
        except Exception:  # the study is not created yet
            continue
        if any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    study = load_study("res-1", str(tmp_path / "studies.db"))
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in study.trials]

    done = subprocess.run([*args, "--resume"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    study = load_study("res-1", str(tmp_path / "studies.db"))
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 4, states
    assert optuna.trial.TrialState.RUNNING not in states
    assert study.user_attrs["mlflow_parent_run_id"] == parent
    assert tracking.run_status(mlflow_server, parent) == "FINISHED"
    kids = tracking.child_runs(mlflow_server, "resume", parent)
    assert kids and all(k.info.status != "RUNNING" for k in kids)


@pytest.mark.slow
@pytest.mark.parametrize(("gpu", "share"), [("auto", "1.0"), (0.5, "0.5")])
def test_trials_get_gpus_when_the_cluster_has_them(ray_local, mlflow_server, tmp_path, gpu, share):
    """The session cluster declares one GPU: `gpu: auto` asks a whole GPU per trial, a fraction
    packs trials onto it; each trial's run records the GPU Ray gave it and torch's device (CUDA
    where there is one, else the CPU fallback)."""
    import torch

    assert ray_local.cluster_resources().get("GPU") == 1
    space = {**TINY, "name": f"gpu-{share}", "num_samples": 2, "asha": {"enabled": False},
             "resources": {"cpu": 1, "gpu": gpu}}  # fmt: skip
    storage = str(tmp_path / "studies.db")
    opts = SearchOptions(name=f"gpu-{share}", tracking_uri=mlflow_server, storage=storage,
                         results_dir=str(tmp_path / "ray"), quiet=True)  # fmt: skip
    assert run_search(parse_space(space), opts)["trials"] == 2
    study = load_study(f"gpu-{share}", storage)
    parent = study.user_attrs["mlflow_parent_run_id"]
    kids = tracking.child_runs(mlflow_server, f"gpu-{share}", parent)
    assert len(kids) == 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for k in kids:
        assert k.data.tags["gpu_ids"] == "0"
        assert k.data.tags["device"].startswith(device)
        assert k.data.params["train.device"] == "auto"
