"""The cluster as `ray_cluster.yaml` builds it, on one box: a head without CPUs, one worker that
shares the driver's files and one that does not (its own mount namespace, an empty tmpfs over
the test folder), Tune's storage and MLflow's artifacts in an S3-compatible store (moto's
server), and a tracking server with basic auth whose admin password comes from the
environment. Every trial completes, the trials ran on both workers, and every artifact is
readable through the tracking server (proxied to the bucket, never written by the nodes)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import pytest

from remedies.stores import tracking
from tests.conftest import start_mlflow_server
from tests.search.consistency import assert_consistent
from tests.search.test_cluster_refusals import THREE
from tests.search.test_faults import EXE, space_file

pytestmark = pytest.mark.slow
# one more worker for a running cluster, as `Cluster.add_node` starts one (`ray start` would
# rewrite the test cluster's 127.0.0.1 address to the host's IP, where nothing listens)
JOIN = """
import os, signal, sys, time
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
from ray._private.node import Node
from ray._private.parameter import RayParams
p = RayParams(gcs_address=sys.argv[1], node_ip_address="127.0.0.1", num_cpus=1, num_gpus=0,
              object_store_memory=150 * 2**20, min_worker_port=0, max_worker_port=0,
              include_log_monitor=False, node_manager_port=0)
p.dashboard_agent_listen_port = None
node = Node(p, head=False, shutdown_at_exit=True, spawn_reaper=True)
print(node.node_id, flush=True)
def stop(*_):
    node.kill_all_processes(check_alive=False, allow_graceful=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(1)
"""


@pytest.fixture
def proxied_auth_server(tmp_path_factory, s3_server):
    """`mlflow server --app-name basic-auth`, artifacts proxied to the bucket. The ini holds
    only where the user table lives; the admin password is read from the environment."""
    d = tmp_path_factory.mktemp("auth-s3")
    ini = d / "auth.ini"
    ini.write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{d}/users.db\n"
        "admin_username = admin\n"
    )
    password = "pw-" + secrets.token_hex(8)
    endpoint = "http://" + s3_server.split("endpoint_override=")[1].split("&")[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env |= {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }
    server = start_mlflow_server(
        d / "server",
        extra=["--app-name", "basic-auth"],
        env=env,
        artifacts="s3://remedies-test/mlartifacts",
    )
    assert password not in ini.read_text()
    yield server.uri, password, endpoint
    server.stop()


def test_search_on_a_cluster_with_s3_and_an_authenticated_server(
    proxied_auth_server, s3_server, tmp_path
):
    uri, password, endpoint = proxied_auth_server
    creds = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
    node_env = {**os.environ, **creds}  # what the YAML gives every node: its own credentials
    cluster = subprocess.Popen(
        [sys.executable, "-c", THREE.replace("range(2)", "range(1)")],
        env=node_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    hidden = None
    try:
        address = cluster.stdout.readline().strip()
        assert address, "the cluster did not start"
        # the second worker: a node that sees none of the driver's files
        hide = f'mount -t tmpfs tmpfs {tmp_path} && exec {sys.executable} -c "$JOIN" {address}'
        hidden = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", hide],
            env={**node_env, "JOIN": JOIN},
            stdout=subprocess.PIPE,
            text=True,
        )
        hidden_id = hidden.stdout.readline().strip()
        assert hidden_id, "the hidden worker did not start"
        _wait_for_workers(address, 2)
        sp = space_file(tmp_path, "full", n=2, epochs=3)
        args = [
            EXE,
            "search",
            sp.name,
            "--name",
            "fc",
            "--address",
            address,
            "--storage",
            "studies.db",
            "--tracking-uri",
            uri,
            "--results-dir",
            s3_server.format("full"),
            "--quiet",
        ]
        p = subprocess.run(
            args,
            cwd=tmp_path,
            env={**os.environ, **creds},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert p.returncode == 0, p.stderr[-3000:]
        os.environ.update(creds)  # this test reads the server as the user would
        try:
            got = assert_consistent(str(tmp_path / "studies.db"), uri, "full", "fc", 2)
            assert [t.state.name for t in got["study"].trials] == ["COMPLETE"] * 2
            nodes = {r.data.tags["node_id"] for r in got["runs"].values()}
            assert len(nodes) == 2 and hidden_id in nodes, (nodes, hidden_id)  # both trained
            parent = got["study"].user_attrs["mlflow_parent_run_id"]
            read = _read_every_artifact(uri, [parent, *got["runs"]])
        finally:
            for k in creds:
                os.environ.pop(k, None)
        assert "config.yaml" in read[next(iter(got["runs"]))] and "pareto.png" in read[parent]
        keys = [
            o["Key"]
            for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(
                Bucket="remedies-test", Prefix="mlartifacts/"
            )["Contents"]
        ]
        assert sum(k.endswith("config.yaml") for k in keys) == 2, keys  # in the bucket, not on disk
        assert password not in p.stdout + p.stderr
    finally:
        if hidden is not None:
            hidden.terminate()
            hidden.wait(timeout=60)
        cluster.stdin.close()
        cluster.wait(timeout=120)


def _wait_for_workers(address: str, n: int) -> None:
    code = (
        "import ray,time,sys\nray.init(address=sys.argv[1], log_to_driver=False)\n"
        "t=time.time()\nwhile sum(1 for x in ray.nodes() if x['Alive'] and "
        "x['Resources'].get('CPU',0)>0) < int(sys.argv[2]):\n"
        "    assert time.time()-t < 90, ray.nodes()\n    time.sleep(0.5)\n"
    )
    subprocess.run([sys.executable, "-c", code, address, str(n)], check=True, timeout=180)


def _read_every_artifact(uri: str, run_ids: list[str]) -> dict[str, set[str]]:
    """Download every artifact of each run through the server; each must be non-empty."""
    c = tracking.client(uri)
    out: dict[str, set[str]] = {}
    for run_id in run_ids:
        names: set[str] = set()
        stack = [""]
        while stack:
            for f in c.list_artifacts(run_id, stack.pop() or None):
                if f.is_dir:
                    stack.append(f.path)
                    continue
                with tempfile.TemporaryDirectory() as d:
                    local = Path(c.download_artifacts(run_id, f.path, d))
                    assert local.stat().st_size > 0, (run_id, f.path)
                names.add(Path(f.path).name)
        out[run_id] = names
    return out
