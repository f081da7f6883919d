"""Tune's trainable: a thin adapter from Tune's API to `trial.run_trial`."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune

from remedies.search.space import SearchSpace
from remedies.search.trial import TrialSpec, run_trial
from remedies.stores import tracking
from remedies.stores.results_dir import Results


@dataclass
class TrialContext:
    """What every trial needs besides its own config (shipped once with tune.with_parameters:
    the object store, not the trial config, so credentials never land in Tune's files)."""

    space: SearchSpace
    target: tracking.Target
    state_root: str
    rungs: tuple[int, ...]
    data: tuple[dict[str, Any], Any] | None = None  # (base data config, its Splits), shipped
    references: dict[str, Any] | None = None  # the search's SB / plain-LB results
    n_train: int = 0  # the base data's training samples (ASHA's per-trial compare_from)
    per_worker: dict[str, float] | None = None  # a K-worker trial's Ray resources per worker


def trial_fn(config: dict[str, Any], ctx: TrialContext) -> None:
    n = config["number"]
    spec = TrialSpec(
        number=n,
        run_id=config["run_id"],
        config=config["config"],
        space=ctx.space,
        target=ctx.target,
        state_dir=Results(ctx.state_root).child(f"{n:05d}").uri,
        rungs=ctx.rungs,
        references=ctx.references,
        n_train=ctx.n_train,
        per_worker=ctx.per_worker,
    )
    rt = ray.get_runtime_context()
    assigned = rt.get_assigned_resources()
    placement = {
        "gpu_ids": ",".join(map(str, ray.get_gpu_ids())) or "none",
        "resources": ", ".join(f"{k}={v:g}" for k, v in sorted(assigned.items())),
        "node_id": rt.get_node_id(),
        "hostname": socket.gethostname(),
    }
    try:
        run_trial(spec, tune.report, shipped=ctx.data, placement=placement)
    except Exception as e:  # the run says why; the driver decides FAILED if retries run out
        try:
            tracking.set_tags(ctx.target.uri, config["run_id"], {"error": repr(e)[:500]})
        except Exception:  # the tracking server may be the reason
            pass
        raise
