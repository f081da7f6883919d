"""`gpu: auto` decided from what the cluster *can* have, not only from what is up.

An autoscaling cluster (`ray up` with `min_workers: 0`) starts with its head alone: at that
moment it has no GPU at all, and deciding from the nodes that are up would request 0 GPUs per
trial — CPU trials on a GPU cluster, and the GPU workers never launched. So `auto` also reads
the autoscaler's node types: the config `ray up` leaves on the head
(`~/ray_bootstrap_config.yaml`, with each node type's resources filled in from its instance
type). Ray's in-memory record of that config is reachable only through `ray._private` (no public
API in Ray 2.60), so it is not read: the file is the autoscaler's own input, and the same.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)
CONFIG_ENV = "REMEDIES_AUTOSCALER_CONFIG"  # where the autoscaler's YAML is, if not the default
BOOTSTRAP = "~/ray_bootstrap_config.yaml"  # written by `ray up` on the head node


def gpus_in_node_types(raw: dict[str, Any]) -> float:
    """The most GPUs any launchable node type of an autoscaler config declares (0 if none)."""
    types = raw.get("available_node_types") or {}
    head = raw.get("head_node_type")
    best = 0.0
    for name, t in types.items():
        launchable = name == head or int(t.get("max_workers", raw.get("max_workers", 0))) > 0
        if launchable:
            best = max(best, float((t.get("resources") or {}).get("GPU", 0)))
    return best


def autoscaler_gpus() -> tuple[float, str] | None:
    """(most GPUs per node of any node type, where that came from), or None when this driver
    sees no autoscaler config (a fixed cluster, or a local Ray)."""
    path = Path(os.environ.get(CONFIG_ENV) or BOOTSTRAP).expanduser()
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        log.warning("could not read the autoscaler config %s: %s", path, e)
        return None
    return gpus_in_node_types(raw), str(path)


def resolve_auto_gpu(live_gpus: float, possible: tuple[float, str] | None) -> float:
    """1 GPU per trial when a GPU is up now or any node type the cluster may launch has one."""
    if live_gpus > 0:
        return 1.0
    if possible is not None and possible[0] > 0:
        log.info(
            "gpu: auto -> 1 GPU per trial: no GPU is up yet, but %s has GPU nodes", possible[1]
        )
        return 1.0
    return 0.0


def gpus_per_trial(setting: float | str) -> float:
    """The GPUs a trial (or a reference run) asks Ray for: `setting`, with `auto` resolved from
    the GPUs up now and the node types the cluster may launch. Needs a connected Ray."""
    if setting != "auto":
        return float(setting)
    import ray

    return resolve_auto_gpu(ray.cluster_resources().get("GPU", 0), autoscaler_gpus())
