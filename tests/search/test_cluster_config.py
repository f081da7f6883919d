"""`ray_cluster.yaml` passes Ray's own autoscaler validator offline (typos fail its schema)."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PATH = Path(__file__).resolve().parents[2] / "ray_cluster.yaml"


def test_ray_cluster_yaml_validates():
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(PATH.read_text())
    validate_config(prepare_config(raw))
    assert raw["available_node_types"][raw["head_node_type"]]["resources"] == {"CPU": 0}
    assert any("mlflow server" in c for c in raw["head_start_ray_commands"])
    assert any(
        "GPU" in str(t.get("resources", {})) or "g" in t["node_config"]["InstanceType"][:2]
        for n, t in raw["available_node_types"].items()
        if n != raw["head_node_type"]
    )
    # data-parallel trials' drivers take a slot, not a CPU, wherever trials run (placement.py)
    from remedies.search.placement import SLOT

    workers = [t for n, t in raw["available_node_types"].items() if n != raw["head_node_type"]]
    assert all(t["resources"].get(SLOT, 0) >= 1 for t in workers)


def test_a_typo_fails_validation():
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(PATH.read_text())
    raw["max_worker"] = 3
    with pytest.raises(Exception):  # noqa: B017 - jsonschema's ValidationError
        validate_config(prepare_config(raw))


def test_every_node_gets_python_311_and_the_pinned_stack():
    """The DLAMI's python3 is 3.10 and unpinned installs drift between autoscaled workers: the
    setup makes a 3.11 venv and installs with the constraints, whose pins are what this suite
    runs (so a version bump here without one there fails)."""
    from importlib.metadata import version

    raw = yaml.safe_load(PATH.read_text())
    setup = "\n".join(raw["setup_commands"])
    assert "python3.11 -m venv" in setup and "-c cluster/constraints.txt" in setup
    for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]:
        # ray and mlflow always from the node's venv, never the AMI's python3.10 ones
        assert not re.search(r"(^|[\s;&|])(ray|mlflow) ", c), c
        assert "~/venv/bin/" in c or c.startswith("pkill"), c
    pins = {}
    for line in (PATH.parent / "cluster" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, v = line.partition("==")
            pins[name.split("[")[0].lower()] = v
    for pkg in ("ray", "mlflow", "optuna", "pydantic", "pyarrow", "numpy", "scipy", "boto3"):
        assert pins[pkg] == version(pkg), (pkg, pins[pkg], version(pkg))
    assert pins["torch"] == version("torch").split("+")[0]
    assert '"ray[default]"' in setup  # extras go on the install line: pip refuses them in -c
    assert " boto3 " in setup  # the MLflow server's artifact proxy writes to S3 through it
    assert {"**/.venv", "**/*.db", "**/ray_results"} <= set(raw["rsync_exclude"])


def test_token_auth_ssh_cidr_and_no_secret_in_the_config():
    """Ray token auth on every node and the driver, SSH only from a configured CIDR, and the
    tracking password nowhere in the YAML or the files it ships — only read into environments."""
    raw = yaml.safe_load(PATH.read_text())
    starts = [
        c
        for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]
        if " start " in c and "/ray " in c
    ]
    assert len(starts) == 2 and all(c.startswith("RAY_AUTH_MODE=token ") for c in starts)
    assert raw["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    node_env = (PATH.parent / "cluster" / "node_env.sh").read_text()
    assert "export RAY_AUTH_MODE=token" in node_env  # the driver's shell too
    assert any("cluster/node_env.sh" in c and "1i" in c for c in raw["setup_commands"])
    subprocess.run(["bash", "-n", str(PATH.parent / "cluster" / "node_env.sh")], check=True)
    (rule,) = raw["provider"]["security_group"]["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"]) == (22, 22) and rule["IpRanges"][0]["CidrIp"]
    ini = (PATH.parent / "cluster" / "mlflow_auth.ini").read_text()
    shipped = PATH.read_text() + node_env + ini
    assert "admin_password" not in shipped.replace("MLFLOW_AUTH_ADMIN_PASSWORD", "")
    assert re.search(r"PASSWORD=[^$\"]", shipped) is None, "a literal password"


def test_the_heads_mlflow_command_runs_as_written(s3_server, tmp_path):
    """The YAML's own MLflow command line, run here with HOME standing in for the head's (its
    venv and checkout linked in) and only the port changed: basic auth refuses a request without
    credentials, accepts the admin whose password came from the environment, and an artifact
    logged through it lands in the bucket."""
    import urllib.error
    import urllib.request

    import boto3
    import mlflow

    from tests.conftest import free_port, wait_up

    raw = yaml.safe_load(PATH.read_text())
    heads = raw["head_start_ray_commands"]
    (cmd,) = [c for c in heads if "mlflow server" in c and "pkill" not in c]
    port = free_port()
    cmd = cmd.replace("--port 5000", f"--port {port}").replace("--host 0.0.0.0", "--host 127.0.0.1")
    (tmp_path / "venv").symlink_to(sys.prefix)
    (tmp_path / "remedies").symlink_to(PATH.parent)
    password = "pw-" + secrets.token_hex(8)
    endpoint = "http://" + s3_server.split("endpoint_override=")[1].split("&")[0]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "HOME": str(tmp_path),
        "MLFLOW_TRACKING_PASSWORD": password,
        "REMEDIES_BUCKET": "remedies-test",
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }
    # its own process group: the server it leaves running in the background is ended with it
    shell = subprocess.run(
        ["bash", "-c", f"{cmd}\necho $$"],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=30,
        start_new_session=True,
        capture_output=True,
        text=True,
    )
    group = int(shell.stdout.split()[-1])
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_up(
            f"{uri}/health",
            lambda: True,
            120,
            lambda: (tmp_path / "mlflow.log").read_text()[-2000:],
        )
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(search, timeout=120)
        assert e.value.code == 401
        req = urllib.request.Request(
            search,
            headers={
                "Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
            },
        )
        assert urllib.request.urlopen(req, timeout=120).status == 200
        os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password)
        try:
            c = mlflow.MlflowClient(uri)
            run = c.create_run(c.create_experiment("yaml-check"))
            (tmp_path / "note.txt").write_text("through the proxy")
            c.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
        finally:
            for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(k, None)
        keys = [
            o["Key"]
            for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(
                Bucket="remedies-test", Prefix="mlartifacts/"
            )["Contents"]
        ]
        assert any(k.endswith(f"{run.info.run_id}/artifacts/note.txt") for k in keys), keys
        assert password not in (tmp_path / "mlflow.log").read_text()
    finally:
        import signal

        os.killpg(group, signal.SIGKILL)
