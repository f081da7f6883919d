"""Searches on a real multi-node `ray.cluster_utils.Cluster`: storage that only the driver's
machine sees is refused up front (one line, exit 2, nothing created), and a trial whose node is
removed mid-training continues on another node from the state it saved in shared storage."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from remedies.stores import tracking
from tests.search.consistency import assert_consistent
from tests.search.test_faults import EXE, mid_training, space_file, trials, wait_for

pytestmark = pytest.mark.slow

CLUSTER = """
import os, signal, sys, time
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
from ray.cluster_utils import Cluster
c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
c.add_node(num_cpus=1)
c.wait_for_nodes()
print(c.address, flush=True)
signal.signal(signal.SIGTERM, lambda *a: (c.shutdown(), sys.exit(0)))
while True:
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def two_nodes():
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER], stdout=subprocess.PIPE, text=True)
    address = proc.stdout.readline().strip()
    assert address, "the cluster did not start"
    yield address
    proc.terminate()
    proc.wait(timeout=60)


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ([], "--results-dir"),
        (["--results-dir", "s3://bucket/x"], "--tracking-uri"),
    ],
)
def test_machine_local_storage_is_refused_on_a_cluster(
    two_nodes, mlflow_server, s3_server, tmp_path, flags, field
):
    sp = space_file(tmp_path, "cluster", n=1, epochs=1)
    if field == "--tracking-uri":  # results in S3 are fine; a SQLite tracking file is not
        flags = [
            "--results-dir",
            s3_server.format("c"),
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
        ]
    else:
        flags = ["--tracking-uri", mlflow_server]
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [EXE, "search", sp.name, "--address", two_nodes, "--storage", "s.db", *flags]
    p = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"remedies: error: {field}:"), lines
    assert "2 nodes" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# head without CPUs and two one-CPU workers; a line "remove NODE_ID" on stdin removes that node
THREE = """
import os, sys
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
from ray.cluster_utils import Cluster
c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
workers = [c.add_node(num_cpus=1) for _ in range(2)]
c.wait_for_nodes()
print(c.address, flush=True)
for line in sys.stdin:
    cmd, _, node_id = line.strip().partition(" ")
    if cmd == "remove":
        c.remove_node(next(n for n in workers if n.node_id == node_id), allow_graceful=False)
        print("removed", flush=True)
c.shutdown()
"""


def test_node_removed_mid_trial_resumes_on_the_other(mlflow_server, s3_server, tmp_path):
    cluster = subprocess.Popen(
        [sys.executable, "-c", THREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        address = cluster.stdout.readline().strip()
        assert address, "the cluster did not start"
        sp = space_file(tmp_path, "nodes", n=1, epochs=60)
        args = [
            EXE,
            "search",
            sp.name,
            "--name",
            "nd",
            "--address",
            address,
            "--storage",
            "studies.db",
            "--tracking-uri",
            mlflow_server,
            "--results-dir",
            s3_server.format("nodes"),
            "--quiet",
        ]
        proc = subprocess.Popen(
            args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        wait_for(proc, mid_training(tmp_path, "nd", mlflow_server))
        run_id = trials(tmp_path, "nd")[0].user_attrs["mlflow_run_id"]
        first = tracking.client(mlflow_server).get_run(run_id).data.tags["node_id"]
        cluster.stdin.write(f"remove {first}\n")
        cluster.stdin.flush()
        assert cluster.stdout.readline().strip() == "removed"
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-2000:]
        got = assert_consistent(str(tmp_path / "studies.db"), mlflow_server, "nodes", "nd", 1)
        tags = next(iter(got["runs"].values())).data.tags
        assert tags["node_id"] != first and tags["attempt"] == "2"
        assert int(tags["attempt_resumed_at_epoch"]) > 0  # from the state saved in the bucket
    finally:
        cluster.stdin.close()
        cluster.wait(timeout=120)


@pytest.fixture(scope="module")
def hidden(tmp_path_factory):
    """(cluster address, folder): a head without CPUs and one worker in their own mount namespace
    with an empty tmpfs over the folder — the data file there and everything else the driver
    keeps in it are invisible to the cluster's nodes."""
    import os

    import numpy as np

    d = tmp_path_factory.mktemp("hidden")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    np.savez(d / "data.npz", x_train=x[:500], y_train=y[:500], x_test=x[500:], y_test=y[500:])
    hide = f'mount -t tmpfs tmpfs {d} && exec {sys.executable} -c "$CLUSTER"'
    env = {**os.environ, "CLUSTER": THREE.replace("range(2)", "range(1)")}
    cluster = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", hide],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        address = cluster.stdout.readline().strip()
        assert address, "the cluster did not start"
        yield address, d
    finally:
        cluster.stdin.close()
        cluster.wait(timeout=120)


def npz_space(d, name: str, **params) -> object:
    sp = space_file(d, name, n=1, epochs=3)
    raw = yaml.safe_load(sp.read_text())
    raw["base"]["data"] = {"name": "npz", "path": str(d / "data.npz")}
    raw["params"] |= params
    sp.write_text(yaml.safe_dump(raw))
    return sp


def test_a_worker_without_the_drivers_files_trains_on_shipped_data(
    hidden, mlflow_server, s3_server
):
    """The trial still trains — on the data the driver shipped through Ray's object store."""
    address, d = hidden
    sp = npz_space(d, "hidden")
    args = [
        EXE,
        "search",
        sp.name,
        "--name",
        "hid",
        "--address",
        address,
        "--storage",
        "studies.db",
        "--tracking-uri",
        mlflow_server,
        "--results-dir",
        s3_server.format("hidden"),
        "--quiet",
    ]
    p = subprocess.run(args, cwd=d, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    got = assert_consistent(str(d / "studies.db"), mlflow_server, "hidden", "hid", 1)
    assert [t.state.name for t in got["study"].trials] == ["COMPLETE"]


def test_data_a_worker_must_read_itself_but_lacks_is_refused(hidden, mlflow_server, s3_server):
    """A space that samples `data.*` makes each trial load its own data where it runs: a node
    without the file is one line, exit 2, before any study, run or folder exists."""
    address, d = hidden
    sub = d / "refused"
    sub.mkdir()
    (sub / "data.npz").write_bytes((d / "data.npz").read_bytes())
    sp = npz_space(sub, "needs", **{"data.max_train": {"type": "int", "low": 200, "high": 400}})
    before = sorted(p.name for p in sub.iterdir())
    args = [
        EXE,
        "search",
        sp.name,
        "--name",
        "nf",
        "--address",
        address,
        "--storage",
        "studies.db",
        "--tracking-uri",
        mlflow_server,
        "--results-dir",
        s3_server.format("needs"),
        "--quiet",
    ]
    p = subprocess.run(args, cwd=sub, capture_output=True, text=True, timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("remedies: error: data.path:"), lines
    assert f"{sub / 'data.npz'} does not exist on node 127.0.0.1" in lines[0]
    assert sorted(p.name for p in sub.iterdir()) == before
