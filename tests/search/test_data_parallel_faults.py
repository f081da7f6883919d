"""A 2-worker search broken on purpose (issue 21): one Ray Train worker `kill -9`ed mid-training,
and the driver `kill -9`ed mid-trial then `--resume`d. Each ends with exact counts: every
Optuna trial COMPLETE, one run per trial and one per reference, none RUNNING, no metric step
twice, and the run that was cut off continued from its saved state (`attempt` 2, resumed at an
epoch after 0 and before the last).

The moment of each kill is observed, not guessed: a run's saved state (written after its first
epoch) and its 2 worker processes. The workers are found with psutil, as `ray::RayTrainWorker`
processes under the search's driver: the search's Ray runs without the dashboard, so Ray's
State API (`ray.util.state.list_actors`) has nothing to ask there.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.search.consistency import assert_consistent
from tests.search.test_data_parallel_search import space_file
from tests.search.test_faults import resume, search, wait_for
from tests.search.test_lifecycle import assert_references_once, kill_driver

pytestmark = pytest.mark.slow
# SB is not also timed on 2 workers here (`baselines.sb_speed: false`): one Ray Train start
# less per test; test_two_worker_search covers that reference
# ~20 ms an epoch on 2 workers: the seconds after the first save leave room for the kill
EPOCHS = 100


def actors(driver: int, cls: str = "RayTrainWorker") -> list[psutil.Process]:
    """The processes of actors of class `cls` under a search's driver (Ray titles each actor's
    process `ray::CLASS`, or `ray::CLASS.method` while it runs one)."""
    out = []
    try:
        procs = psutil.Process(driver).children(recursive=True)
    except psutil.Error:  # the search ended: `wait_for` says how
        return []
    for p in procs:
        try:
            if p.cmdline()[:1] and p.cmdline()[0].split(".")[0] == f"ray::{cls}":
                out.append(p)
        except psutil.Error:  # ended meanwhile
            pass
    return out


def training(proc: subprocess.Popen, state: Path, pattern: str) -> list[psutil.Process]:
    """Wait until a run's state is saved (`pattern` under `state`) while its 2 workers train;
    their processes."""
    wait_for(proc, lambda: any(state.glob(pattern)) and len(actors(proc.pid)) == 2, timeout=400)
    return actors(proc.pid)


def assert_resumed(tags: dict[str, str], attempt: int) -> None:
    resumed = int(tags["attempt_resumed_at_epoch"])
    assert tags["attempt"] == str(attempt) and 0 < resumed < EPOCHS, tags
    assert tags["workers"] == "2", tags


def test_a_killed_worker_costs_one_retry(mlflow_server, tmp_path, data_parallel_env):
    """`kill -9` of one of the 2 workers of the plain-LB reference, then of the trial, each
    after its first saved epoch: each is retried from that state in its own run, and the search
    ends by itself, exit 0: 1 trial COMPLETE after all its epochs, 1 trial run, 2 reference
    runs, none RUNNING, no step twice. A reference used to fail the whole search here."""
    name = "dp-killworker"
    sp = space_file(tmp_path, name, 2, n=1, epochs=EPOCHS, max_failures=1, sb_speed=False)
    state = tmp_path / "ray_results" / name
    t0 = time.time()
    proc = search(tmp_path, sp, name, mlflow_server, "--quiet")
    try:
        training(proc, state, "references/lb-*/state.pt")[0].kill()
        workers = training(proc, state, "trials/00000/state.pt")
        # the killed LB attempt's queues (rank 0 → trial rows) were shut down with it
        assert len(actors(proc.pid, "_QueueActor")) == 2
        workers[0].kill()
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"\n2 workers, 2 of them killed: {time.time() - t0:.0f} s")
    assert proc.returncode == 0, err[-3000:]
    assert err.count("remedies: WARNING: reference lb-") == 1, err[-3000:]  # its retry, in a line
    got = assert_consistent(str(tmp_path / "studies.db"), mlflow_server, name, name, 1)
    (trial,) = got["study"].trials
    assert trial.state.name == "COMPLETE" and trial.user_attrs["epochs_run"] == EPOCHS
    run = got["runs"][trial.user_attrs["mlflow_run_id"]]
    assert_resumed(run.data.tags, attempt=2)
    assert "worker" in run.data.tags["error"].lower(), run.data.tags["error"]  # on record
    refs = {r.data.tags["reference"]: r for r in assert_references_once(
        tmp_path, name, mlflow_server, name, 2)}  # fmt: skip
    assert_resumed(refs["lb"].data.tags, attempt=2)
    assert refs["sb"].data.tags["attempt"] == "1"


def test_driver_killed_mid_trial_then_resumed(mlflow_server, tmp_path, data_parallel_env):
    """`kill -9` of the driver while the trial's 2 workers train (its first epoch saved): its
    Ray processes, the workers included, end with it; `--resume` continues the trial from its
    saved state in its own run and runs no reference again: 1 trial COMPLETE, 1 trial run,
    2 reference runs (attempt 1 each), none RUNNING, no step twice."""
    name = "dp-killdriver"
    sp = space_file(tmp_path, name, 2, n=1, epochs=EPOCHS, max_failures=1, sb_speed=False)
    t0 = time.time()
    proc = search(tmp_path, sp, name, mlflow_server, "--quiet")
    try:
        workers = training(proc, tmp_path / "ray_results" / name, "trials/00000/state.pt")
        kill_driver(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not any(w.is_running() for w in workers)
    done = resume(tmp_path, sp, name, mlflow_server)
    print(f"\n2 workers, driver killed and resumed: {time.time() - t0:.0f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    got = assert_consistent(str(tmp_path / "studies.db"), mlflow_server, name, name, 1)
    (trial,) = got["study"].trials
    assert trial.state.name == "COMPLETE" and trial.user_attrs["epochs_run"] == EPOCHS
    assert_resumed(got["runs"][trial.user_attrs["mlflow_run_id"]].data.tags, attempt=2)
    refs = assert_references_once(tmp_path, name, mlflow_server, name, 2)
    assert sorted(r.data.tags["attempt"] for r in refs) == ["1", "1"]
