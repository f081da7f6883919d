"""`gpu: auto` on an autoscaling cluster: decided from the node types it may launch (the
autoscaler's config), so a search started while only the CPU head is up still asks for GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from remedies.search.node_types import (
    CONFIG_ENV,
    autoscaler_gpus,
    gpus_in_node_types,
    resolve_auto_gpu,
)

SHIPPED = Path(__file__).resolve().parents[2] / "ray_cluster.yaml"


def prepared() -> dict:
    """The shipped YAML as the autoscaler holds it (Ray's own defaults filled in)."""
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(yaml.safe_load(SHIPPED.read_text()))


def test_the_shipped_cluster_may_launch_gpu_nodes():
    assert gpus_in_node_types(prepared()) == 1.0


def test_node_types_without_gpus_or_never_launched_give_none():
    raw = prepared()
    for t in raw["available_node_types"].values():
        t["resources"].pop("GPU", None)
    assert gpus_in_node_types(raw) == 0.0
    raw = prepared()
    for name, t in raw["available_node_types"].items():
        if name != raw["head_node_type"]:
            t["max_workers"] = 0  # the GPU type exists but may never be launched
    assert gpus_in_node_types(raw) == 0.0


def test_auto_asks_for_a_gpu_before_any_gpu_node_is_up(tmp_path, monkeypatch):
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(yaml.safe_dump(prepared()))
    monkeypatch.setenv(CONFIG_ENV, str(path))
    possible = autoscaler_gpus()
    assert possible == (1.0, str(path))
    assert resolve_auto_gpu(0.0, possible) == 1.0  # only the CPU head is up
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "absent.yaml"))
    assert autoscaler_gpus() is None
    assert resolve_auto_gpu(0.0, None) == 0.0  # a fixed CPU cluster: CPU trials
    assert resolve_auto_gpu(2.0, None) == 1.0
