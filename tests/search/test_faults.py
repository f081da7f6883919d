"""Breaking a search on purpose, as a user's machine would: every fault ends with exact counts.

Each test runs `remedies search` as a separate process (its own local Ray, as a user runs it)
against real stores, breaks it at a chosen moment — found by watching the stores, not by sleeping
a guessed time — and then checks `assert_consistent`: N Optuna trials, N child runs one to one,
none RUNNING, MLflow status = the trial's decision, no metric step logged twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import psutil
import pytest
import yaml

from remedies.results.report import load_study
from remedies.search.driver import SearchOptions, run_search
from remedies.search.runtime import INTERRUPT
from remedies.search.space import load_space
from remedies.stores import tracking
from tests.conftest import start_mlflow_server
from tests.search.consistency import assert_consistent

pytestmark = pytest.mark.slow
EXE = str(Path(sys.executable).with_name("remedies"))


def space_file(d: Path, name: str, n: int, epochs: int = 60, asha: bool = False) -> Path:
    space = {
        "name": name,
        "base": {
            "data": {"num_samples": 3000},
            "model": {"width": 0.3},
            "train": {"epochs": epochs, "batch_size": 32, "checkpoint": False},
            "measure": {"keskar": {"eps": [1e-3], "iters": 2}, "max_samples": 200},
        },
        "params": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "sampler": {"name": "random", "seed": 0},
        "asha": {"enabled": asha, "grace_period": 2, "reduction_factor": 2},
        "num_samples": n,
        "max_concurrent": 2,
        "max_failures": 1,
        "resources": {"cpu": 1, "gpu": 0},
        "baselines": {"enabled": False},  # fault paths of the trials; references: test_baselines
    }
    p = d / f"{name}.yaml"
    p.write_text(yaml.safe_dump(space))
    return p


def search(cwd: Path, space: Path, name: str, uri: str, *extra: str) -> subprocess.Popen:
    args = [
        EXE,
        "search",
        str(space),
        "--name",
        name,
        "--tracking-uri",
        uri,
        "--storage",
        "studies.db",
        *extra,
    ]
    return subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(proc: subprocess.Popen, cond: Callable[[], bool], timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"search ended before the fault: {out[-1500:]}\n{err[-1500:]}")
        assert time.time() < deadline, "condition never held"
        time.sleep(0.2)


def trials(cwd: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return load_study(name, str(cwd / "studies.db")).trials
    except Exception:  # not created yet
        return []


def mid_training(
    cwd: Path, name: str, uri: str, finished: int = 0, every: bool = False
) -> Callable[[], bool]:
    """A trial (`every`: each running trial) has logged epochs and is still running, and
    `finished` trials are decided."""

    def cond() -> bool:
        ts = trials(cwd, name)
        if sum(t.state.is_finished() for t in ts) < finished:
            return False
        going = [
            len(tracking.metric_history(uri, t.user_attrs["mlflow_run_id"], "epoch_time_s")) >= 2
            for t in ts
            if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("mlflow_run_id")
        ]
        return bool(going) and (all(going) if every else any(going))

    return cond


def ray_descendants(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "ray" in p.name()]


def resume(cwd: Path, space: Path, name: str, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            EXE,
            "search",
            str(space),
            "--name",
            name,
            "--tracking-uri",
            uri,
            "--storage",
            "studies.db",
            "--resume",
            "--quiet",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=400,
    )


def resumed_mid_training(uri: str, runs: dict) -> list[int]:
    return [
        int(r.data.tags.get("attempt_resumed_at_epoch", 0))
        for r in runs.values()
        if int(r.data.tags.get("attempt_resumed_at_epoch", 0)) > 0
    ]


def test_trial_process_killed_continues_from_its_checkpoint(mlflow_server, tmp_path):
    sp = space_file(tmp_path, "killtrial", n=2)
    proc = search(tmp_path, sp, "kt", mlflow_server, "--quiet")
    wait_for(proc, lambda: len(trials(tmp_path, "kt")) == 2)
    wait_for(proc, mid_training(tmp_path, "kt", mlflow_server, every=True))
    workers = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        if p.name().startswith("ray::ImplicitFunc")
    ]
    assert len(workers) == 2, "trial processes not found"
    for w in workers:
        w.kill()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    got = assert_consistent(str(tmp_path / "studies.db"), mlflow_server, "killtrial", "kt", 2)
    assert [t.state.name for t in got["study"].trials] == ["COMPLETE", "COMPLETE"]
    assert len(resumed_mid_training(mlflow_server, got["runs"])) == 2


@pytest.mark.parametrize("moment", ["first-ask", "mid-training", "after-a-decision"])
def test_driver_killed_then_resumed(mlflow_server, tmp_path, moment):
    name = f"dk-{moment}"
    sp = space_file(tmp_path, "killdriver", n=3, asha=moment == "after-a-decision")
    proc = search(tmp_path, sp, name, mlflow_server, "--quiet")
    cond = {
        "first-ask": lambda: len(trials(tmp_path, name)) >= 1,
        "mid-training": mid_training(tmp_path, name, mlflow_server),
        "after-a-decision": mid_training(tmp_path, name, mlflow_server, finished=1),
    }[moment]
    wait_for(proc, cond)
    ray_procs = ray_descendants(proc.pid)
    assert ray_procs
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    _, alive = psutil.wait_procs(ray_procs, timeout=20)
    assert not alive, f"Ray processes outlived the driver: {[p.name() for p in alive]}"

    done = resume(tmp_path, sp, name, mlflow_server)
    assert done.returncode == 0, done.stderr[-2000:]
    got = assert_consistent(str(tmp_path / "studies.db"), mlflow_server, "killdriver", name, 3)
    lrs = {t.params["train.lr"] for t in got["study"].trials}
    assert len(lrs) == 3, "the resumed sampler replayed values it had proposed before"
    if moment != "first-ask":
        assert resumed_mid_training(mlflow_server, got["runs"])


def test_ctrl_c_exits_130_and_resumes(mlflow_server, tmp_path):
    sp = space_file(tmp_path, "sigint", n=3)
    proc = search(tmp_path, sp, "si", mlflow_server, "--quiet")
    wait_for(proc, mid_training(tmp_path, "si", mlflow_server))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--name si --resume" in err
    ts = trials(tmp_path, "si")
    left = [t for t in ts if not t.state.is_finished()]
    assert left and all(t.user_attrs["state"] == "interrupted" for t in left)
    for t in left:  # the run is closed, saying why, and reopened by the resume
        run = tracking.client(mlflow_server).get_run(t.user_attrs["mlflow_run_id"])
        assert (run.info.status, run.data.tags["status"]) == ("KILLED", "interrupted")

    done = resume(tmp_path, sp, "si", mlflow_server)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "interrupted" not in done.stdout.split("search si:")[-1]
    got = assert_consistent(str(tmp_path / "studies.db"), mlflow_server, "sigint", "si", 3)
    assert resumed_mid_training(mlflow_server, got["runs"])


def test_a_swallowed_interrupt_still_stops_the_search(ray_local, mlflow_server, tmp_path):
    """Library code that catches BaseException can swallow the KeyboardInterrupt a signal
    raises (seen once in CI: a search sent SIGINT mid-training ran to the end and exited 0).
    The request the handler remembers must still stop Tune: here it is made with no exception
    at all, exactly what is left of a swallowed one, and the search ends 130 with its running
    trials interrupted."""
    sp = space_file(tmp_path, "swallow", n=3)
    opts = SearchOptions(
        name="sw",
        tracking_uri=mlflow_server,
        storage=str(tmp_path / "studies.db"),
        results_dir=str(tmp_path / "ray"),
        quiet=True,
    )
    cond = mid_training(tmp_path, "sw", mlflow_server)

    def request_when_training() -> None:
        deadline = time.time() + 240
        while not cond() and time.time() < deadline:
            time.sleep(0.2)
        INTERRUPT.requested = True  # what the handler does before its raise is swallowed

    threading.Thread(target=request_when_training, daemon=True).start()
    s = run_search(load_space(sp), opts)
    assert s.interrupted and s.exit_code == 130
    left = [t for t in trials(tmp_path, "sw") if not t.state.is_finished()]
    assert left and all(t.user_attrs["state"] == "interrupted" for t in left)


def test_tracking_server_away_for_30s(tmp_path):
    server = start_mlflow_server(tmp_path / "mlflow")
    try:
        sp = space_file(tmp_path, "outage", n=2, epochs=150)
        proc = search(tmp_path, sp, "out", server.uri)
        wait_for(proc, mid_training(tmp_path, "out", server.uri))
        server.stop()
        time.sleep(30)
        server.start()
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-2000:]
        assert "tracking server unreachable" in out, out[-2000:]
        assert_consistent(str(tmp_path / "studies.db"), server.uri, "outage", "out", 2)
    finally:
        server.stop()


def test_two_searches_started_together_in_a_fresh_folder(tmp_path):
    sp = space_file(tmp_path, "together", n=2, epochs=3)
    args = [EXE, "search", str(sp), "--quiet"]
    procs = [
        subprocess.Popen(
            [*args, "--name", f"tg-{i}"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for i in range(2):
        assert_consistent(str(tmp_path / "remedies_studies.db"), uri, "together", f"tg-{i}", 2)


def test_resume_completes_a_trial_the_driver_died_creating(ray_local, mlflow_server, tmp_path):
    """The narrow windows of a driver's bookkeeping: killed after Optuna's ask but before the
    values were recorded, after the MLflow run was created but before its id was recorded, or
    after Optuna was told but before the run was closed. The resume finishes those very trials
    and closes that run — no second run, no extra Optuna trial, nothing left RUNNING."""
    from remedies.search.study import Study

    sp = space_file(tmp_path, "windows", n=1, epochs=2)
    storage = str(tmp_path / "studies.db")
    opts = SearchOptions(
        name="w",
        tracking_uri=mlflow_server,
        storage=storage,
        results_dir=str(tmp_path / "ray"),
        quiet=True,
    )
    assert run_search(load_space(sp), opts).exit_code == 0
    # what a driver killed mid-suggest leaves behind, made with the same calls suggest makes
    st = Study(storage, "w", load_space(sp))
    st.load()
    bare, _ = st.ask()  # values never recorded
    number, sample = st.ask()
    st.set_attrs(number, {"sample": sample, "state": "running"})
    parent, exp_id = st.attrs["mlflow_parent_run_id"], st.attrs["mlflow_experiment_id"]
    orphan = tracking.start_run(
        mlflow_server,
        exp_id,
        f"trial-{number:04d}",
        {"search": "w", "trial_number": number},
        parent=parent,
    )
    told = st.trials()[0].user_attrs["mlflow_run_id"]  # decided COMPLETE, run not yet closed
    tracking.client(mlflow_server).update_run(told, status="RUNNING")

    opts.resume, opts.num_samples = True, 3
    assert run_search(load_space(sp), opts).exit_code == 0
    got = assert_consistent(storage, mlflow_server, "windows", "w", 3)
    assert got["study"].trials[number].user_attrs["mlflow_run_id"] == orphan
    assert got["study"].trials[bare].state.name == "COMPLETE"
    assert len({t.params["train.lr"] for t in got["study"].trials}) == 3  # no replayed values
