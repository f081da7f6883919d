"""`ray_cluster.yaml` passes Ray's own autoscaler validator offline (typos fail its schema)."""

from __future__ import annotations

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
    assert all(c.split()[0].startswith("~/venv/bin/") for c in raw["head_start_ray_commands"]
               + raw["worker_start_ray_commands"] if not c.startswith("nohup"))  # fmt: skip
    pins = {}
    for line in (PATH.parent / "cluster" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, v = line.partition("==")
            pins[name.split("[")[0].lower()] = v
    for pkg in ("ray", "mlflow", "optuna", "pydantic", "pyarrow", "numpy", "scipy"):
        assert pins[pkg] == version(pkg), (pkg, pins[pkg], version(pkg))
    assert pins["torch"] == version("torch").split("+")[0]
    assert '"ray[default]"' in setup  # extras go on the install line: pip refuses them in -c
    assert {"**/.venv", "**/*.db", "**/ray_results"} <= set(raw["rsync_exclude"])
