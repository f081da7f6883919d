"""The seams of a search's lifecycle, broken on purpose (issue: one lifecycle for every run a
search starts): the references cut off by `kill -9`, two drivers on one search, SIGTERM, a space
edited between drivers, a path-like name, a truncated study database, a full results disk.

Every search runs as its own `remedies search` process, as a user runs it, against real Ray,
MLflow and Optuna storage; each ends with exact counts of Optuna trials, trial runs and reference
runs, none RUNNING and no metric step logged twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import psutil
import pytest
import yaml

from remedies.stores import tracking
from tests.search.consistency import assert_consistent
from tests.search.test_faults import (
    EXE,
    mid_training,
    ray_descendants,
    resume,
    search,
    space_file,
    trials,
    wait_for,
)

pytestmark = pytest.mark.slow


def with_references(path: Path, epochs: int = 30) -> Path:
    """The fault tests' space with references: SB at batch 16, one lr, then plain LB at 32 —
    one at a time, so one reference is decided while the next is still training."""
    raw = yaml.safe_load(path.read_text())
    raw["base"]["train"]["epochs"] = epochs
    raw["base"]["data"]["num_samples"] = 2000
    raw["baselines"] = {"enabled": True, "sb_batch": 16, "lr_factors": [1.0]}
    raw["max_concurrent"] = 1
    path.write_text(yaml.safe_dump(raw))
    return path


def reference_records(cwd: Path, name: str) -> dict:
    try:
        st = optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'studies.db'}")
    except Exception:  # not created yet
        return {}
    return st.user_attrs.get("reference_runs") or {}


def reference_mid_training(cwd: Path, name: str, uri: str):
    """One reference decided, the next one RUNNING with epochs logged."""

    def cond() -> bool:
        recs = reference_records(cwd, name)
        done = [r for r in recs.values() if r["state"] == "complete"]
        going = [r for r in recs.values() if r["state"] == "running"]
        return bool(done) and any(
            len(tracking.metric_history(uri, r["run_id"], "epoch_time_s")) >= 2 for r in going
        )

    return cond


def assert_references_once(cwd: Path, name: str, uri: str, experiment: str, n: int) -> list:
    """Exactly `n` reference runs, one per reference, FINISHED, no metric step twice."""
    parent = optuna.load_study(
        study_name=name, storage=f"sqlite:///{cwd / 'studies.db'}"
    ).user_attrs["mlflow_parent_run_id"]
    runs = tracking.child_runs(uri, experiment, parent, role="reference")
    assert len(runs) == n, [(r.data.tags.get("reference_key"), r.info.status) for r in runs]
    assert Counter(r.data.tags["reference_key"] for r in runs).most_common(1)[0][1] == 1
    for r in runs:
        assert r.info.status == "FINISHED", (r.data.tags["reference_key"], r.info.status)
        steps = [s for s, _ in tracking.metric_history(uri, r.info.run_id, "epoch_time_s")]
        assert steps == list(range(1, max(steps) + 1)), (r.data.tags["reference_key"], steps)
    return runs


def kill_driver(proc: subprocess.Popen) -> None:
    """`kill -9` of a search's driver; its Ray processes (workers included) must end with it."""
    ray_procs = ray_descendants(proc.pid)
    assert ray_procs, "no Ray process under the driver"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    _, alive = psutil.wait_procs(ray_procs, timeout=20)
    assert not alive, f"Ray processes outlived the driver: {[p.name() for p in alive]}"


@pytest.mark.parametrize("moment", ["references", "trials"])
def test_driver_killed_then_resumed_with_references(mlflow_server, tmp_path, moment):
    """`kill -9` while a reference trains (one already decided) or while the trials train:
    the resume runs no decided reference again, continues the one cut off from its saved state
    in its own run, and ends with 2 reference runs and 2 trial runs, none RUNNING."""
    name = f"kr-{moment}"
    sp = with_references(space_file(tmp_path, "killrefs", n=2))
    proc = search(tmp_path, sp, name, mlflow_server, "--quiet")
    cond = (
        reference_mid_training(tmp_path, name, mlflow_server)
        if moment == "references"
        else mid_training(tmp_path, name, mlflow_server)
    )
    wait_for(proc, cond, timeout=400)
    kill_driver(proc)

    done = resume(tmp_path, sp, name, mlflow_server)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_consistent(str(tmp_path / "studies.db"), mlflow_server, "killrefs", name, 2)
    runs = assert_references_once(tmp_path, name, mlflow_server, "killrefs", 2)
    attempts = {r.data.tags["reference_key"].split("-")[0]: r.data.tags for r in runs}
    assert attempts["sb"]["attempt"] == "1", "a decided reference was run again"
    if moment == "references":  # the cut-off one continued from its saved state
        assert attempts["lb"]["attempt"] == "2"
        assert int(attempts["lb"]["attempt_resumed_at_epoch"]) > 0


def test_one_driver_per_search_and_sigterm_then_resume(mlflow_server, tmp_path):
    """While a search runs, a new search with its name is refused naming it (pid); SIGTERM
    (what kill, systemd, Kubernetes and Slurm send) is Ctrl-C: exit 130 with the resume command
    and no stack trace (Ray's own handler used to abort with exit 134); then two `--resume`
    started together: one continues the search, the other is refused in one line naming the
    driver that holds it (exit 2), and the study ends with exactly `num_samples` trials."""
    sp = space_file(tmp_path, "onedriver", n=3, epochs=40)
    proc = search(tmp_path, sp, "od", mlflow_server, "--quiet")
    wait_for(proc, mid_training(tmp_path, "od", mlflow_server))

    second = search(tmp_path, sp, "od", mlflow_server, "--quiet")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2 and err.count("\n") == 1, err
    assert f"being run by another driver (pid {proc.pid} on" in err, err

    ray_procs = ray_descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--name od --resume" in err
    assert "Traceback" not in err and "PC: @" not in err and "SIGTERM received" not in err, err
    _, alive = psutil.wait_procs(ray_procs, timeout=20)
    assert not alive, [p.name() for p in alive]
    left = [t for t in trials(tmp_path, "od") if not t.state.is_finished()]
    assert left and all(t.user_attrs["state"] == "interrupted" for t in left)

    args = [EXE, "search", str(sp), "--name", "od", "--tracking-uri", mlflow_server,
            "--storage", "studies.db", "--resume", "--quiet"]  # fmt: skip
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=400) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], [(p.returncode, e[-800:]) for p, (_, e) in zip(procs, outs)]
    refused = next(e for p, (_, e) in zip(procs, outs) if p.returncode == 2)
    assert refused.count("\n") == 1 and "being run by another driver (pid" in refused, refused
    assert_consistent(str(tmp_path / "studies.db"), mlflow_server, "onedriver", "od", 3)


def run_cli(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_resume_keeps_the_space_it_started_with(mlflow_server, tmp_path):
    """An edited space on `--resume` is one line saying what differs, exit 2, nothing written;
    raising `--num-samples` is allowed and adds exactly that many trials."""
    sp = space_file(tmp_path, "keepspace", n=1, epochs=2)
    common = ["--name", "ks", "--tracking-uri", mlflow_server, "--storage", "studies.db", "--quiet"]
    assert run_cli(tmp_path, "search", str(sp), *common).returncode == 0
    parent = optuna.load_study(
        study_name="ks", storage=f"sqlite:///{tmp_path / 'studies.db'}"
    ).user_attrs["mlflow_parent_run_id"]
    for change, says in [
        (["--set", "params.train.lr.high=0.1"], "params.train.lr.high: 0.01 → 0.1"),
        (["--set", "base.train.epochs=3"], "base.train.epochs: 2 → 3"),
        (["--set", "remedies={}", "--set", "sampler.seed=4"], "sampler.seed: 0 → 4"),
    ]:
        r = run_cli(tmp_path, "search", str(sp), *common, "--resume", *change)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith("remedies: error: --resume: the space differs"), r.stderr
        assert says in r.stderr, r.stderr
    assert len(trials(tmp_path, "ks")) == 1  # nothing asked, nothing opened
    assert len(tracking.child_runs(mlflow_server, "keepspace", parent)) == 1
    assert tracking.run_status(mlflow_server, parent) == "FINISHED"

    r = run_cli(tmp_path, "search", str(sp), *common, "--resume", "--num-samples", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert_consistent(str(tmp_path / "studies.db"), mlflow_server, "keepspace", "ks", 2)


def test_a_path_like_name_is_refused(tmp_path):
    sp = space_file(tmp_path, "evil", n=1, epochs=2)
    for bad in ["../../evil", "a/b", "a b", ".hidden", ""]:
        r = run_cli(tmp_path, "search", str(sp), "--name", bad, "--quiet", timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (bad, r.stderr)
        assert r.stderr.startswith("remedies: error: --name:"), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.yaml"]
    assert not (tmp_path.parent.parent / "evil").exists()


def test_a_truncated_study_database_says_so(tmp_path):
    db = tmp_path / "studies.db"
    study = optuna.create_study(study_name="a1", storage=f"sqlite:///{db}")
    for _ in range(20):
        study.enqueue_trial({"x": 1.0})
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    sp = space_file(tmp_path, "trunc", n=1, epochs=2)
    for args in (
        ["search", str(sp), "--name", "a1", "--resume"],
        ["report", "a1"],
        ["export", "a1"],
    ):
        r = run_cli(tmp_path, *args, "--storage", str(db), timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (args, r.stderr)
        assert "is not a readable SQLite database" in r.stderr, (args, r.stderr)
    assert db.read_bytes() == data[: len(data) // 2]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs: a results disk that fills up (needs root to mount, as CI runs)."""
    d = tmp_path / "full"
    d.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], check=True)
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


def test_a_full_results_disk_is_one_line_per_failed_trial(mlflow_server, tmp_path, tiny_disk):
    """Every trial fails to save its state on a 1 MiB disk: exit 1, one line per failed trial
    and a summary — Ray's tracebacks go to the log file the summary names — and the stores
    agree (both trials FAILED, both runs FAILED)."""
    sp = space_file(tmp_path, "fulldisk", n=2, epochs=3)
    raw = yaml.safe_load(sp.read_text())
    raw["base"]["model"]["width"] = 1.0  # its saved state is over 1 MiB
    sp.write_text(yaml.safe_dump(raw))
    t0 = time.time()
    r = run_cli(
        tmp_path,
        "search",
        str(sp),
        "--name",
        "fd",
        "--tracking-uri",
        mlflow_server,
        "--storage",
        "studies.db",
        "--results-dir",
        str(tiny_disk),
    )
    assert r.returncode == 1, r.stderr[-3000:]
    text = r.stdout + r.stderr
    assert "Traceback" not in text, text[-3000:]
    failed = [ln for ln in text.splitlines() if ln.strip().startswith("trial #")]
    assert len(failed) == 2 and all("No space left on device" in ln for ln in failed), text
    assert len(text.splitlines()) < 40, text
    log = next(ln for ln in r.stderr.splitlines() if "Ray's own log" in ln).split(": ", 1)[1]
    assert "No space left on device" in Path(log).read_text()
    got = assert_consistent(str(tmp_path / "studies.db"), mlflow_server, "fulldisk", "fd", 2)
    assert [t.user_attrs["state"] for t in got["study"].trials] == ["failed", "failed"]
    assert time.time() - t0 < 300
