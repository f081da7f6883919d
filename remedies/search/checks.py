"""Step 1 of a search: everything the user gave, checked before anything is created — the
options, the name, whether the search exists, and on a cluster what its nodes can reach."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import ray

from remedies.errors import ConfigError
from remedies.search.lock import being_run, live_holder
from remedies.search.runtime import alive_nodes, missing_on_nodes, start_ray
from remedies.search.space import SearchSpace
from remedies.stores import tracking
from remedies.stores.optuna_storage import storage_url, study_exists
from remedies.stores.results_dir import Results

SHIP_LIMIT_BYTES = 512 * 2**20  # larger data sets are read by each trial from data.path
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class SearchOptions:
    name: str | None = None
    num_samples: int | None = None
    max_concurrent: int | None = None
    tracking_uri: str | None = None
    storage: str = "remedies_studies.db"
    address: str | None = None
    resume: bool = False
    results_dir: str = "ray_results"
    experiment: str | None = None  # MLflow experiment; default: the space's name
    quiet: bool = False


def check_name(name: str) -> None:
    """A search name becomes a folder under `--results-dir` and a key in two stores: a plain
    identifier only (`../../evil` once wrote Tune's state outside the results folder)."""
    if not NAME.match(name) or ".." in name:
        raise ConfigError(
            "--name",
            f"{name!r} is not a plain name: use letters, digits, '_', '-' and '.' (not '..'), "
            "starting with a letter or digit, at most 100 characters",
        )


def check_options(space: SearchSpace, opts: SearchOptions) -> str:
    """Every option, checked; the space takes the CLI's counts. Returns the search's name."""
    if opts.num_samples is not None and opts.num_samples < 1:
        raise ConfigError("--num-samples", f"must be ≥ 1, got {opts.num_samples}")
    if opts.max_concurrent is not None and opts.max_concurrent < 1:
        raise ConfigError("--max-concurrent", f"must be ≥ 1, got {opts.max_concurrent}")
    if opts.num_samples is not None:
        space.num_samples = opts.num_samples
    if opts.max_concurrent is not None:
        space.max_concurrent = opts.max_concurrent
    name = opts.name if opts.name is not None else f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_name(name)
    Results.parse(opts.results_dir).check()
    return name


def check_exists(opts: SearchOptions, name: str) -> None:
    exists = study_exists(opts.storage, name)
    if opts.resume and not exists:
        raise ConfigError("--resume", f"no search named {name!r} in {opts.storage}")
    if exists and not opts.resume:
        if (held := live_holder(storage_url(opts.storage), name)) is not None:
            raise being_run(name, held)  # a taken name whose search runs now: name the driver
        raise ConfigError(
            "--name",
            f"a search named {name!r} already exists in {opts.storage}; "
            "use --resume to continue it or choose another name",
        )


def node_files(space: SearchSpace, base_path: Path | None, nbytes: int) -> list[str]:
    """Files each trial reads on its own node: none while the driver ships the base's data; the
    data path (every sampled choice of it) when the data is too large to ship or `data.*` is
    sampled, since then a trial loads its own data where it runs."""
    sampled = [k for k in space.params if k.startswith("data.")]
    if nbytes <= SHIP_LIMIT_BYTES and not sampled:
        return []
    paths = {str(base_path)} if base_path is not None else set()
    if "data.path" in space.params:
        paths |= {str(c) for c in space.params["data.path"].ends() if c is not None}
    return sorted(paths)


def join_cluster(
    address: str, results: Results, target: tracking.Target, files: list[str] | None = None
) -> None:
    """Connect to an existing cluster and refuse, in one line, storage that only this machine
    sees once it has more than one node: trials on other nodes could not save or resume there;
    and data files (`files`) that a node able to run trials does not have."""
    start_ray(address)

    nodes = alive_nodes()
    if files and (gone := missing_on_nodes(files)):
        ray.shutdown()
        raise ConfigError(
            "data.path",
            f"{gone[1]} does not exist on node {gone[0]}; trials there "
            "read it themselves (data over 512 MiB, or data.* searched): put it "
            "on every node or on storage they share",
        )
    if len(nodes) > 1 and results.local:
        ray.shutdown()
        raise ConfigError(
            "--results-dir",
            f"{results.uri} is a local folder but the cluster has "
            f"{len(nodes)} nodes; give storage every node reaches, e.g. "
            "s3://BUCKET/PREFIX or an NFS mount",
        )
    if len(nodes) > 1 and target.uri.startswith("sqlite:"):
        ray.shutdown()
        raise ConfigError(
            "--tracking-uri",
            f"{target.uri} is a file on this machine but the "
            f"cluster has {len(nodes)} nodes; use http://HOST:PORT of an MLflow "
            "server every node reaches",
        )
