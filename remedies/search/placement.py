"""Where a data-parallel trial (`resources.workers` or a searched `train.workers` > 1) runs.

Such a trial is a Tune trial whose process only drives Ray Train: its K workers are Ray Train's
own placement group, K bundles of `resources.cpu` CPUs (and `resources.gpu` GPUs), placed all at
once or not at all — a trial gets all its workers or waits. The driver must hold none of the
CPUs its workers need, or two such trials each holding a CPU can leave too few for either
group and wait forever (docs/search.md). So the driver asks only for one unit of the custom
resource SLOT, which a local Ray started by the search declares; a cluster whose nodes do not
declare it gives the driver DRIVER_CPU instead (a sliver, counted in the check below).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from remedies.errors import ConfigError
from remedies.search.space import SearchSpace

SLOT = "remedies_trial"  # custom resource: one per data-parallel trial driver
SLOTS = 1000  # how many a local Ray started by the search declares (never the limit)
DRIVER_CPU = 0.01  # a data-parallel trial driver's CPU where the cluster has no SLOT


def max_workers(space: SearchSpace) -> int:
    """The most workers any trial of the space trains on (its probes: every searched end)."""
    return max((cfg.train.workers for _, cfg in space.probes), default=1)


def driver_bundle(have: dict[str, float]) -> dict[str, float]:
    return {"CPU": 0.0, SLOT: 1.0} if have.get(SLOT, 0) >= 1 else {"CPU": DRIVER_CPU}


def per_worker(space: SearchSpace, gpu: float) -> dict[str, float]:
    """One worker's Ray resources."""
    return {"CPU": space.resources.cpu, **({"GPU": gpu} if gpu > 0 else {})}


def trial_resources(
    space: SearchSpace, gpu: float, have: dict[str, float]
) -> Callable[[dict[str, Any]], Any]:
    """Tune's resources for a trial, from its config: a single-process trial takes
    `resources.cpu`/`gpu` itself; a K-worker trial's driver takes `driver_bundle`."""
    from ray.tune import PlacementGroupFactory

    def resources(config: dict[str, Any]) -> PlacementGroupFactory:
        if workers_of(config) > 1:
            return PlacementGroupFactory([driver_bundle(have)])
        return PlacementGroupFactory([{"CPU": space.resources.cpu, "GPU": gpu}])

    return resources


def workers_of(config: dict[str, Any]) -> int:
    return int(((config.get("config") or {}).get("train") or {}).get("workers", 1))


def check_workers(space: SearchSpace, have: dict[str, float], gpu: float) -> None:
    """One line, before anything is created, when the cluster (`have`: Ray's resources, or
    what a local Ray will have) cannot place the most workers a trial of the space asks for:
    Ray Train would wait for them forever."""
    k = max_workers(space)
    if k == 1:
        return
    c = space.resources.cpu
    driver = driver_bundle(have)["CPU"]
    cpus, gpus = have.get("CPU", 0.0), have.get("GPU", 0.0)
    fit = math.floor((cpus - driver) / c + 1e-9)
    if gpu > 0:
        fit = min(fit, math.floor(gpus / gpu + 1e-9))
    if k > fit:
        need = f"{k * c + driver:g} CPUs" + (f" and {k * gpu:g} GPUs" if gpu > 0 else "")
        got = f"{cpus:g} CPUs" + (f" and {gpus:g} GPUs" if gpu > 0 else "")
        raise ConfigError(
            "resources.workers",
            f"{k} workers × {c:g} CPU{f' × {gpu:g} GPU' if gpu > 0 else ''} need {need}, but "
            f"Ray can place {got}; allowed: 1..{max(fit, 1)}",
        )


def local_resources() -> dict[str, float]:
    """What a local Ray started by the search will have (it is not started yet)."""
    import torch

    from remedies.workers import placeable

    return {"CPU": float(placeable(False)), "GPU": float(torch.cuda.device_count()), SLOT: SLOTS}
