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
