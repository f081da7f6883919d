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
from remedies.results.report import load_study, text_report
from remedies.search.driver import SearchOptions, run_search
from remedies.search.space import parse_space
from remedies.stores import tracking
from tests.factories import crash_once_model
from tests.search.consistency import assert_consistent

N = 4
TINY = {
    "name": "e2e",
    "base": {
        "data": {"num_samples": 1000},
        "model": {"width": 0.1},
        "train": {"epochs": 3, "batch_size": 128, "checkpoint": False},
        "measure": {"keskar": {"eps": [1e-3], "iters": 3}, "max_samples": 200},
    },
    "params": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "remedies": {"lr_scaling": {"rule": {"type": "categorical", "choices": ["none", "sqrt"]}}},
    "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 2},
    "asha": {"enabled": True, "grace_period": 1, "reduction_factor": 2},
    "num_samples": N,
    "max_concurrent": 2,
    "resources": {"cpu": 1, "gpu": 0},
    "baselines": {"enabled": False},  # the references are tested in test_baselines
}


def crash_once(tmp_path, space: dict, after_epoch: int) -> dict:
    """The `model:` of a base whose every trial's first attempt crashes after `after_epoch`."""
    from remedies.config import parse_config
    from remedies.data import load_data

    cfg = parse_config(space["base"])
    n, b = load_data(cfg.data).n_train, cfg.train.resolve_batch_size(load_data(cfg.data).n_train)
    return crash_once_model(tmp_path / "crashed", n, b, after_epoch)


@pytest.mark.slow
def test_tiny_search_end_to_end(ray_local, mlflow_server, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    storage = str(tmp_path / "studies.db")
    opts = SearchOptions(
        name="e2e-1",
        tracking_uri=mlflow_server,
        storage=storage,
        results_dir=str(tmp_path / "ray"),
        quiet=True,
    )
    summary = run_search(parse_space(TINY), opts)
    assert summary["trials"] == N

    # the stores agree trial for trial; every trial finished COMPLETE or PRUNED; a front
    assert_consistent(storage, mlflow_server, "e2e", "e2e-1", N)
    study = load_study("e2e-1", storage)
    states = [t.state for t in study.trials]
    ok = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(s in ok for s in states), states
    assert optuna.trial.TrialState.COMPLETE in states and summary["front"]
    assert summary.exit_code == 0 and not summary.interrupted

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
        # gpu: 0 → Ray gave no GPU → the trial sees none, even where CUDA exists
        assert (k.data.tags["gpu_ids"], k.data.tags["device"]) == ("none", "cpu")
        assert k.data.params["train.device"] == "auto"  # what an export carries
        assert k.data.tags["attempt"] == "1" and k.data.tags["node_id"] and k.data.tags["hostname"]
    done = [k for k in kids if k.data.tags["status"] == "complete"]
    assert done and all("final_keskar_full_eps1e-03" in k.data.metrics for k in done)
    # each measure's own doubt travels with it: MLflow metric, study attribute, report
    assert all(k.data.metrics["final_suspect_keskar_full_eps1e-03"] in (0.0, 1.0) for k in done)
    assert all(
        isinstance(t.user_attrs["sharpness_suspect"], dict)
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
    )
    assert "Every measure per completed trial" in text_report(study)
    arts = {a.path for a in tracking.client(mlflow_server).list_artifacts(parent)}
    assert {"pareto.png", "pareto.csv", "accuracy_vs_sharpness.png"} <= arts
    # the sharpness evidence of this search: report section, artifacts, parent-run metrics, and
    # the confounders recorded where sharpness was measured
    assert "Sharpness evidence: did keskar_full_eps1e-03 predict" in text_report(study)
    assert {"sharpness_evidence.json", "sharpness_vs_test_accuracy.png"} <= arts
    logged = tracking.client(mlflow_server).get_run(parent).data.metrics
    assert logged["sharpness_evidence_trials"] == sum(
        t.state == optuna.trial.TrialState.COMPLETE for t in study.trials
    )
    assert all(
        t.user_attrs["metrics"]["end_lr"] > 0 and t.user_attrs["metrics"]["train_loss"] >= 0
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
    )

    # report (with --out: the parent run's files, from the study alone), then export →
    # `remedies train` reproduces the validation accuracy (same seed)
    assert "Kendall" in text_report(study)
    figs = tmp_path / "figs"
    capsys.readouterr()
    assert main(["report", "e2e-1", "--storage", storage, "--out", str(figs)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(text_report(study))
    wrote = {p.name for p in figs.iterdir()}
    assert {"pareto.csv", "pareto.png", "sharpness_vs_test_accuracy.png"} <= wrote <= arts
    assert all((figs / n).stat().st_size > 0 and f"wrote {figs / n}" in printed for n in wrote)
    assert (figs / "pareto.csv").read_text().splitlines()[0].startswith("trial,")
    out = tmp_path / "best.yaml"
    assert (
        main(
            [
                "export",
                "e2e-1",
                "--storage",
                storage,
                "--pick",
                "best-accuracy",
                "--out",
                str(out),
                "--all-pareto",
                str(tmp_path / "front"),
            ]
        )
        == 0
    )
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

    # the same name again is refused (a unique study per search): one line, nothing new
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(TINY))
    n_runs = len(tracking.child_runs(mlflow_server, "e2e", parent))
    capsys.readouterr()
    assert (
        main(
            [
                "search",
                "space.yaml",
                "--name",
                "e2e-1",
                "--storage",
                storage,
                "--tracking-uri",
                mlflow_server,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--name: a search named 'e2e-1' already exists" in err and err.count("\n") == 1
    assert len(tracking.child_runs(mlflow_server, "e2e", parent)) == n_runs
    assert len(load_study("e2e-1", storage).trials) == N


@pytest.mark.slow
def test_retried_trial_continues_its_run(ray_local, mlflow_server, tmp_path, monkeypatch):
    """Every trial crashes once after epoch 1; Tune retries it, and the retry continues from
    the trial's saved state in the same MLflow run: one run per trial, COMPLETE, epoch 1
    logged once."""
    monkeypatch.chdir(tmp_path)
    raw = {
        **TINY,
        "name": "retry",
        "num_samples": 2,
        "asha": {"enabled": False},
        "max_failures": 1,
        "remedies": {},
    }
    raw["base"] = {**TINY["base"], "model": crash_once(tmp_path, TINY, after_epoch=1)}
    storage = str(tmp_path / "studies.db")
    opts = SearchOptions(
        name="retry-1",
        tracking_uri=mlflow_server,
        storage=storage,
        results_dir=str(tmp_path / "ray"),
        quiet=True,
    )
    run_search(parse_space(raw), opts)
    got = assert_consistent(storage, mlflow_server, "retry", "retry-1", 2)
    assert [t.state for t in got["study"].trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for r in got["runs"].values():
        assert r.data.tags["attempt_resumed_at_epoch"] == "1" and r.data.tags["attempt"] == "2"
        steps = [
            s for s, _ in tracking.metric_history(mlflow_server, r.info.run_id, "val_accuracy")
        ]
        assert steps == [1, 2, 3]
        assert "injected fault" in r.data.tags["error"]  # the crash is on record


def test_scalarized_objective():
    from remedies.search.driver import directions, objective_values

    raw = {
        **TINY,
        "scalarize": True,
        "objectives": [
            {"name": "val_accuracy", "mode": "max"},
            {"name": "keskar_full_eps1e-03", "mode": "min", "weight": 2.0},
        ],
    }
    space = parse_space(raw)
    assert directions(space) == (["score"], ["max"])
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
        [
            str(exe),
            "search",
            "space.yaml",
            "--name",
            "addr-1",
            "--address",
            address,
            "--tracking-uri",
            mlflow_server,
            "--storage",
            "studies.db",
            "--quiet",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = load_study("addr-1", str(tmp_path / "studies.db"))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert len(tracking.child_runs(mlflow_server, "addr", parent)) == 2


@pytest.mark.slow
@pytest.mark.parametrize(("gpu", "share"), [("auto", "1"), (0.5, "0.5")])
def test_trials_get_gpus_when_the_cluster_has_them(ray_local, mlflow_server, tmp_path, gpu, share):
    """The session cluster declares one GPU: `gpu: auto` asks a whole GPU per trial, a fraction
    packs trials onto it; each trial's run records the GPU Ray gave it and torch's device (CUDA
    where there is one, else the CPU fallback)."""
    import torch

    assert ray_local.cluster_resources().get("GPU") == 1
    space = {
        **TINY,
        "name": f"gpu-{share}",
        "num_samples": 2,
        "asha": {"enabled": False},
        "resources": {"cpu": 1, "gpu": gpu},
    }
    storage = str(tmp_path / "studies.db")
    opts = SearchOptions(
        name=f"gpu-{share}",
        tracking_uri=mlflow_server,
        storage=storage,
        results_dir=str(tmp_path / "ray"),
        quiet=True,
    )
    assert run_search(parse_space(space), opts)["trials"] == 2
    study = load_study(f"gpu-{share}", storage)
    parent = study.user_attrs["mlflow_parent_run_id"]
    kids = tracking.child_runs(mlflow_server, f"gpu-{share}", parent)
    assert len(kids) == 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for k in kids:  # auto: a whole GPU each (one trial at a time); 0.5: half of it each
        assert k.data.tags["gpu_ids"] == "0"
        assert f"GPU={share}" in k.data.tags["resources"].split(", ")
        assert k.data.tags["device"].startswith(device)
        assert k.data.params["train.device"] == "auto"
