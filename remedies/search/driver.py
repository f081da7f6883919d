"""One search from start to end. Read top to bottom, `run_search`:

1. checks everything the user gave (name, storage, tracking server, data, cluster) before
   anything is created;
2. takes the search's lock (`lock.py`, in the study's own database): one driver per search;
3. creates or loads the stores — the Optuna study (`study.py`, which keeps the space the search
   started with: a resume with another space is refused) and the MLflow parent run;
4. starts (or joins) Ray (`runtime.py`), then runs, each decided once: the references
   (`references.py`, Ray tasks) and the trials (Tune, `searcher.py` + `trainable.py`);
5. on any exit — finished, Ctrl-C or SIGTERM, a failed reference — marks what still runs as
   interrupted (resumable), logs the front, closes the parent run, stops Ray and returns a
   summary whose `exit_code` the CLI returns (0, 1 with no complete trial, 130 interrupted).
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from remedies.config import parse_config
from remedies.data import Splits, StreamSplits, load_data
from remedies.errors import ConfigError
from remedies.results.report import finish_search
from remedies.search import tracking
from remedies.search.fair import check_batches
from remedies.search.lock import DriverLock
from remedies.search.node_types import gpus_per_trial
from remedies.search.progress import Progress
from remedies.search.references import ReferenceFailed, References, reference_configs
from remedies.search.runtime import (
    INTERRUPT,
    alive_nodes,
    interruptible,
    missing_on_nodes,
    start_ray,
    stop_ray,
)
from remedies.search.searcher import (
    InterruptStopper,
    Stores,
    StudySearcher,
    Ticker,
    TrialErrors,
    close_decided_runs,
    directions,
)
from remedies.search.space import SearchSpace, base_raw
from remedies.search.space_edits import space_changes
from remedies.search.store import Results
from remedies.search.study import Study, storage_url, study_exists
from remedies.search.trainable import TrialContext, trial_fn
from remedies.search.trial import ASHA_METRIC, asha_rungs, objective_values
from remedies.trainer import build_model

log = logging.getLogger(__name__)

__all__ = ["ASHA_METRIC", "SearchOptions", "directions", "objective_values", "run_search"]

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


@dataclass
class Summary:
    name: str
    trials: int
    counts: dict[str, int]
    front: list[dict[str, Any]]
    table: str
    wall_time_s: float
    interrupted: bool
    resume_hint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    answer: str = ""  # "best recipe: ... × faster than SB" (searches with baselines)
    error: str = ""  # why the search could not go on (a reference failed)
    log_file: str = ""  # where Ray's own tracebacks went

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 0 if self.counts.get("complete", 0) > 0 and not self.error else 1

    def __getitem__(self, key: str) -> Any:  # summary["front"] as before
        return getattr(self, key)


# ------------------------------------------------------------------------------ 1. the input


def check_name(name: str) -> None:
    """A search name becomes a folder under `--results-dir` and a key in two stores: a plain
    identifier only (`../../evil` once wrote Tune's state outside the results folder)."""
    if not NAME.match(name) or ".." in name:
        raise ConfigError(
            "--name",
            f"{name!r} is not a plain name: use letters, digits, '_', '-' and '.' (not '..'), "
            "starting with a letter or digit, at most 100 characters",
        )


def _check_options(space: SearchSpace, opts: SearchOptions) -> str:
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


def _check_exists(opts: SearchOptions, name: str) -> None:
    exists = study_exists(opts.storage, name)
    if opts.resume and not exists:
        raise ConfigError("--resume", f"no search named {name!r} in {opts.storage}")
    if exists and not opts.resume:
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


# ----------------------------------------------------------------------------- 2-5. the search


def run_search(space: SearchSpace, opts: SearchOptions, space_path: str = "") -> Summary:
    """Run (or resume) one search; return a summary with the study name and the Pareto front."""
    # 1. the user's input, all of it, before anything is created
    name = _check_options(space, opts)
    target = tracking.resolve(opts.tracking_uri)
    tracking.preflight(target)
    _check_exists(opts, name)
    base = parse_config(base_raw(space))
    splits = load_data(base.data)  # generated/cached once, before trials race; shipped to them
    check_batches(space, splits.n_train)  # degenerate batches: refused before anything exists
    if base.model.factory is not None:  # the user's model: called and checked once, up front
        build_model(base, splits, "cpu")  # type: ignore[arg-type]
    threads = max(1, int(space.resources.cpu))
    refs = reference_configs(space, threads) if space.baselines.enabled else []
    if opts.address is not None:  # a cluster: its shape decides what storage can work
        files = node_files(space, base.data.path, int(splits.nbytes))
        join_cluster(opts.address, Results.parse(opts.results_dir), target, files)

    # 2. one driver per search
    lock = DriverLock(storage_url(opts.storage), name)
    lock.acquire()
    try:
        _check_exists(opts, name)  # again, under the lock: a new search may have lost a race
        # 3. the stores
        target.apply()
        tracking.prepare_store(target.uri)
        st = Study(opts.storage, name, space)
        exp_id = tracking.experiment_id(target.uri, opts.experiment or space.name)
        parent = (
            _resume_stores(st, space, target)
            if opts.resume
            else _create_stores(st, space, target, exp_id, name, space_path)
        )
        results = Results.parse(opts.results_dir).child(name)
        stores = Stores(st, target.public(), exp_id, parent, results.child("trials"))
        # 4. Ray, the references, the trials; 5. the end
        data = (base.data.model_dump(mode="json"), splits)
        return _run(space, opts, stores, results, data, refs, space_path)
    finally:
        lock.release()


def _create_stores(
    st: Study, space: SearchSpace, target: tracking.Target, exp_id: str, name: str, space_path: str
) -> str:
    """A new study (which keeps the space, its base inlined) and its MLflow parent run."""
    tags = {"search": name, "role": "search", "space": space.name}
    parent = tracking.start_run(target.uri, exp_id, name, tags)
    way: dict[str, Literal["maximize", "minimize"]] = {"max": "maximize", "min": "minimize"}
    st.create(
        [way[m] for m in directions(space)[1]],
        {
            "mlflow_parent_run_id": parent,
            "mlflow_experiment_id": exp_id,
            "tracking_uri": target.uri,
            "space": space.model_dump(mode="json"),
            "space_path": str(space_path),
            "metrics": [o.name for o in space.objectives],
            "modes": [o.mode for o in space.objectives],
            "constraints": [c.model_dump() for c in space.constraints],
        },
    )
    st.enqueue_plain()  # plain LB (no remedy) is always one of the candidates
    tracking.log_params(
        target.uri,
        parent,
        {
            "space": space.name,
            "sampler": space.sampler.name,
            "sampler.seed": space.sampler.seed,
            "num_samples": space.num_samples,
            "max_concurrent": space.max_concurrent,
            "asha": space.asha.enabled,
            "objectives": ",".join(space.metric_names),
            "scalarize": space.scalarize,
        },
    )
    tracking.log_yaml(target.uri, parent, space.model_dump(mode="json"), "space.yaml")
    return parent


def _resume_stores(st: Study, space: SearchSpace, target: tracking.Target) -> str:
    """The study as it was, refused if the space differs from the one it started with (only
    `num_samples` and `max_concurrent` may change), and its parent run reopened."""
    st.load()
    changed = space_changes(st.attrs.get("space") or {}, space.model_dump(mode="json"))
    if changed:
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        raise ConfigError(
            "--resume",
            f"the space differs from the one search {st.name!r} started with: "
            f"{'; '.join(changed[:3])}{more}; resume with the same space (only num_samples and "
            "max_concurrent may change) or start a new search",
        )
    if (done := st.finished_count()) > space.num_samples:
        raise ConfigError("--num-samples", f"must be ≥ the {done} trials already decided")
    parent = st.attrs["mlflow_parent_run_id"]
    tracking.resume_run(target.uri, parent)
    if n := close_decided_runs(st, target.uri):
        log.warning("closed %d MLflow runs of trials decided before the interruption", n)
    return parent


def ray_log_to_file(name: str) -> Path:
    """Ray's and Tune's own log records (a failed trial's traceback, repeated per retry) go to a
    file, not the terminal: a search on a full disk printed 327 lines of them. Each failed trial
    still gets one line with its error's last line, and the summary names this file."""
    folder = Path(tempfile.gettempdir()) / "remedies-logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    handler = logging.FileHandler(path, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    for n in ("ray", "ray.tune", "ray.train", "ray.air"):
        lg = logging.getLogger(n)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.addHandler(handler)
        lg.propagate = False
    return path


def _run(
    space: SearchSpace,
    opts: SearchOptions,
    stores: Stores,
    results: Results,
    data: tuple[dict[str, Any], Splits | StreamSplits],
    ref_configs: list[tuple[str, dict[str, Any]]],
    space_path: str,
) -> Summary:
    st, uri = stores.study, stores.target.uri
    todo = max(0, space.num_samples - st.finished_count())
    threads = max(1, int(space.resources.cpu))
    progress = Progress(space, quiet=opts.quiet, before=st.counts())
    t0 = time.time()
    searcher: StudySearcher | None = None
    interrupted, error = False, ""
    reaper = start_ray(opts.address)
    log_path = ray_log_to_file(st.name)
    try:
        with interruptible():
            try:
                refs = st.attrs.get("references")
                if space.baselines.enabled and refs is None:  # first: they score every trial
                    refs = References(
                        st,
                        space,
                        ref_configs,
                        target=stores.target,
                        exp_id=stores.exp_id,
                        parent=stores.parent,
                        state_root=results.child("references"),
                        threads=threads,
                        data=data,
                        quiet=opts.quiet,
                    ).run()
                    st.set_study_attr("references", refs)
                if todo > 0:
                    searcher = StudySearcher(stores, space, progress, todo, threads)
                    logging.getLogger("ray.tune").addHandler(TrialErrors(searcher))
                    _fit(space, searcher, stores, results, data, refs)
            except KeyboardInterrupt:
                interrupted = True
            except ReferenceFailed as e:
                error = f"a reference run failed, so no trial can be scored: {e}"
        # 5. the end, however it came (a second Ctrl-C now ends the process as usual)
        interrupted = interrupted or INTERRUPT.requested
        if searcher is not None:
            searcher.interrupt_all()
            if not searcher.outbox.drain(timeout_s=60):
                log.error(
                    "could not close %d MLflow runs: %s",
                    searcher.outbox.pending,
                    searcher.outbox.last_error,
                )
        interrupted = interrupted or (not error and st.finished_count() < space.num_samples)
        s = finish_search(st.study, uri, stores.parent, time.time() - t0)  # type: ignore[arg-type]
        status = "KILLED" if interrupted else ("FAILED" if error else "FINISHED")
        tracking.end_run(uri, stores.parent, status)
    finally:
        stop_ray(reaper)
    hint = f"remedies search {space_path or 'SPACE'} --name {st.name} --resume" + (
        f" --storage {opts.storage}" if opts.storage != SearchOptions.storage else ""
    )
    failed = st.counts().get("failed", 0)
    return Summary(
        name=st.name,
        trials=s["trials"],
        counts=st.counts(),
        front=s["front"],
        table=s["table"],
        wall_time_s=s["wall_time_s"],
        interrupted=interrupted,
        resume_hint=hint if interrupted or error else "",
        answer=s["answer"],
        error=error,
        log_file=str(log_path) if (failed or error) and log_path.exists() else "",
    )


def _fit(
    space: SearchSpace,
    searcher: StudySearcher,
    stores: Stores,
    results: Results,
    data: tuple[dict[str, Any], Splits | StreamSplits],
    refs: dict[str, Any] | None,
) -> None:
    """Tune runs the trials; `searcher` decides each. Ends early (KeyboardInterrupt) on a
    signal, even one whose KeyboardInterrupt library code swallowed."""

    gpu = gpus_per_trial(space.resources.gpu)  # auto: from the node types, not only those up
    # the base's data (config, splits), loaded once by the driver, travels with the trials
    # through Ray's object store: a node without the driver's files trains on it all the same
    shipped = data if data[1].nbytes <= SHIP_LIMIT_BYTES else None
    ctx = TrialContext(
        data=shipped,
        space=space,
        target=stores.target,
        state_root=stores.state_root.uri,
        rungs=asha_rungs(space, 100_000),
        references=refs,
        n_train=data[1].n_train,
    )
    trainable = tune.with_resources(
        tune.with_parameters(trial_fn, ctx=ctx), {"cpu": space.resources.cpu, "gpu": gpu}
    )
    scheduler = (
        ASHAScheduler(
            metric=ASHA_METRIC,
            mode="max",
            time_attr="epoch",
            max_t=100_000,
            grace_period=space.asha.grace_period,
            reduction_factor=space.asha.reduction_factor,
        )
        if space.asha.enabled
        else FIFOScheduler()
    )
    fs, base = results.filesystem()
    listed = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    attempt = 1 + sum(1 for f in listed if f.base_name.startswith("attempt-"))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=searcher.to_launch,
            max_concurrent_trials=space.max_concurrent,
            # a trial's process keeps torch, MLflow and the data
            # imported for the next one: seconds per trial
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"attempt-{attempt}",
            storage_path=base,
            storage_filesystem=fs,
            verbose=0,
            callbacks=[Ticker(searcher)],
            stop=InterruptStopper(),
            failure_config=tune.FailureConfig(max_failures=space.max_failures),
        ),
    )
    tuner.fit()
    if INTERRUPT.requested:  # its KeyboardInterrupt was swallowed; the stopper ended fit()
        raise KeyboardInterrupt
