"""Data-parallel trials (`resources: {workers: K}`): a search whose trials and plain-LB reference
train on 2 Ray Train workers each (gloo on CPU), and a K the cluster cannot place, refused.

The search runs as its own `remedies search` process (its own local Ray, as a user runs it);
each trial's driver holds no CPU (placement.py), so 2 workers of 1 CPU fit this 2-CPU box.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from remedies.cli import main
from remedies.stores import tracking
from tests.search.consistency import assert_consistent
from tests.search.test_faults import search
from tests.search.test_lifecycle import assert_references_once

BASE: dict[str, Any] = {
    "data": {
        "factory": "tests.factories:blobs",
        "kwargs": {"n_train": 256, "n_val": 64, "n_test": 64, "dim": 16, "classes": 3},
    },
    "model": {"factory": "tests.factories:mlp", "kwargs": {"hidden": 16}},
    "train": {"epochs": 3, "batch_size": 64, "checkpoint": False, "device": "cpu"},
    "measure": {"keskar": {"eps": [1e-3], "iters": 2}, "max_samples": 64},
}


def space_file(
    d: Path,
    name: str,
    workers: int,
    n: int = 2,
    epochs: int = 3,
    max_failures: int = 0,
    sb_speed: bool = True,
    max_concurrent: int = 1,
) -> Path:
    space = {
        "name": name,
        "base": {**BASE, "train": {**BASE["train"], "epochs": epochs}},
        "params": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "sampler": {"name": "random", "seed": 0},
        "asha": {"enabled": False},
        "num_samples": n,
        "max_concurrent": max_concurrent,
        "max_failures": max_failures,
        "resources": {"workers": workers, "cpu": 1, "gpu": 0},
        "baselines": {"enabled": True, "sb_batch": 16, "lr_factors": [1.0], "sb_speed": sb_speed},
    }
    p = d / f"{name}.yaml"
    p.write_text(yaml.safe_dump(space))
    return p


def test_unplaceable_workers_refused(tmp_path, capsys, monkeypatch):
    """More workers than the cluster has CPUs: one line, exit 2, nothing created."""
    monkeypatch.chdir(tmp_path)
    sp = space_file(tmp_path, "dp-refused", workers=64)
    rc = main(["search", str(sp), "--name", "dp-refused", "--storage", "studies.db"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("remedies: error: resources.workers: 64 workers × 1 CPU need"), err
    assert "allowed: 1.." in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dp-refused.yaml"]


def test_workers_in_the_space():
    """`resources.workers` is the base's train.workers (a clash is one line); a searched
    train.workers counts at its largest value; the driver of a K-worker trial takes a slot."""
    from remedies.errors import ConfigError
    from remedies.search.placement import SLOT, check_workers, max_workers, trial_resources
    from remedies.search.space import parse_space

    raw = {"name": "x", "base": BASE, "resources": {"workers": 2, "cpu": 1, "gpu": 0}}
    space = parse_space(raw)
    assert space.base["train"]["workers"] == 2 and max_workers(space) == 2
    with pytest.raises(ConfigError, match="resources.workers: 2 but base.train.workers is 4"):
        parse_space({**raw, "base": {**BASE, "train": {**BASE["train"], "workers": 4}}})
    searched = {"type": "categorical", "choices": [1, 4]}
    space = parse_space({"name": "x", "base": BASE, "params": {"train.workers": searched}})
    assert max_workers(space) == 4
    check_workers(space, {"CPU": 4, SLOT: 1}, 0.0)  # the driver takes no CPU
    with pytest.raises(ConfigError, match=r"need 4.01 CPUs, but Ray can place 4 CPUs; allowed"):
        check_workers(space, {"CPU": 4}, 0.0)  # no slot: the driver's sliver does not fit
    pgf = trial_resources(space, 0.0, {"CPU": 4, SLOT: 1})
    assert pgf({"config": {"train": {"workers": 4}}}).bundles == [{SLOT: 1.0}]
    assert pgf({"config": {"train": {"workers": 1}}}).bundles[0]["CPU"] == 1.0


@pytest.mark.slow
def test_two_worker_search(mlflow_server, tmp_path, data_parallel_env):
    """2 trials × 2 workers started together on 2 CPUs, with references (SB on 1 worker, SB
    timed on 2, plain LB on 2), 2 at a time too: one trial's (reference's) workers wait for the
    other's to end — all or nothing, never a deadlock — and the search ends with exact counts,
    one run per trial, none RUNNING, no metric step twice, objectives and the Keskar measure
    logged, each trial tagged as trained on 2 workers, and its speed-up taken against SB on
    whichever worker count trained SB faster."""
    name = "dp-search"
    sp = space_file(tmp_path, name, workers=2, max_concurrent=2)
    t0 = time.time()
    proc = search(tmp_path, sp, name, mlflow_server)
    out, err = proc.communicate(timeout=540)
    print(f"\n2-worker search: {time.time() - t0:.0f} s")
    assert proc.returncode == 0, err[-3000:]
    got = assert_consistent(str(tmp_path / "studies.db"), mlflow_server, name, name, 2)
    for t in got["study"].trials:
        assert t.state.name == "COMPLETE", t.user_attrs
        run = got["runs"][t.user_attrs["mlflow_run_id"]]
        assert run.data.tags["workers"] == "2" and run.data.params["train.workers"] == "2"
        assert run.data.tags["attempt"] == "1"
        assert "final_keskar_full_eps1e-03" in run.data.metrics
        m = run.data.metrics
        kept = got["study"].user_attrs["references"]
        sb_times = [kept["sb"]["train_time_s"], *(r["train_time_s"] for r in kept["sb_speed"])]
        assert [r["workers"] for r in kept["sb_speed"]] == [2]
        want = min(sb_times) / m["final_train_time_s"]
        assert m["final_speedup_vs_sb_budget"] == pytest.approx(want, rel=1e-6)  # whole budgets
    # both trials were under way at once (one's workers waiting for the other's CPUs)
    runs = [got["runs"][t.user_attrs["mlflow_run_id"]].info for t in got["study"].trials]
    assert max(r.start_time for r in runs) < min(r.end_time for r in runs), runs
    refs = assert_references_once(tmp_path, name, mlflow_server, name, 3)
    workers = {r.data.tags["reference"]: r.data.params["train.workers"] for r in refs}
    assert workers == {"sb": "1", "sbspeed": "2", "lb": "2"}
    from remedies.results.answer import references_text

    text = "\n".join(references_text(got["study"].user_attrs["references"]))
    assert "SB on 2w" in text and "against SB on its fastest worker count" in text, text
    # the progress lines: each decision, then the count
    assert "trial #1 complete" in out and "trials 2/2 done (2 complete" in out, out[-2000:]
    assert tracking.run_status(mlflow_server, got["study"].user_attrs["mlflow_parent_run_id"])


@pytest.mark.slow
def test_two_workers_resume_exactly(ray_workers):
    """A 2-worker run saved after epoch 2 (rank 0's state, both ranks' RNGs, through the plain
    weights-only file a trial saves) and resumed ends bit for bit where the uninterrupted run
    does, reporting only the epochs after the save. grad_noise draws from the RNGs every step."""
    import io

    import torch

    from remedies.config import parse_config
    from remedies.launch import fit

    raw = BASE
    raw = {**raw, "train": {**raw["train"], "epochs": 4, "workers": 2, "lr": 3e-3, "seed": 1}}
    raw["remedies"] = {"grad_noise": {"sb_batch": 16, "scale": 0.5}}
    raw["measure"] = {"keskar": {"enabled": False}}
    cfg = parse_config(raw)
    saved: list[bytes] = []
    capture: list = []
    rows: list[int] = []

    def report(row: dict) -> None:
        rows.append(row["epoch"])
        if row["epoch"] == 2:
            buf = io.BytesIO()
            torch.save(capture[0](), buf)
            saved.append(buf.getvalue())

    t0 = time.time()
    full = fit(cfg, report=report, expose_state=capture.append, measure=False, progress=False)
    assert rows == [1, 2, 3, 4] and len(saved) == 1
    state = torch.load(io.BytesIO(saved[0]), weights_only=True)
    assert len(state["rank_rngs"]) == 2 and state["epoch"] == 2
    rows.clear()
    again = fit(cfg, report=lambda r: rows.append(r["epoch"]), resume=state, measure=False)
    print(f"\n2 runs on 2 workers: {time.time() - t0:.0f} s")
    assert rows == [3, 4]
    a, b = full.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in again.history]
