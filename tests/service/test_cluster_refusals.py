"""On a cluster of more than one node, storage that only the driver's machine sees is refused up
front: one line, exit 2, nothing created. A real two-node `ray.cluster_utils.Cluster`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.service.test_faults import EXE, space_file

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


@pytest.mark.parametrize(("flags", "field"), [
    ([], "--results-dir"),
    (["--results-dir", "s3://bucket/x"], "--tracking-uri"),
])  # fmt: skip
def test_machine_local_storage_is_refused_on_a_cluster(two_nodes, mlflow_server, s3_server,
                                                      tmp_path, flags, field):  # fmt: skip
    sp = space_file(tmp_path, "cluster", n=1, epochs=1)
    if field == "--tracking-uri":  # results in S3 are fine; a SQLite tracking file is not
        flags = ["--results-dir", s3_server.format("c"), "--tracking-uri",
                 f"sqlite:///{tmp_path / 'mlflow.db'}"]  # fmt: skip
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
