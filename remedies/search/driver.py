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
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from remedies.config import parse_config
from remedies.data import Splits, StreamSplits, load_data
from remedies.engine.trainer import build_model
from remedies.errors import ConfigError
from remedies.search.checks import (
    SHIP_LIMIT_BYTES,
    SearchOptions,
    check_exists,
    check_options,
    join_cluster,
    node_files,
)
from remedies.search.close import finish_search
from remedies.search.fair import check_batches
from remedies.search.lock import DriverLock
from remedies.search.node_types import gpus_per_trial
from remedies.search.placement import (
    check_workers,
    local_resources,
    per_worker,
    trial_resources,
)
from remedies.search.progress import Progress
from remedies.search.references import ReferenceFailed, References, reference_configs
from remedies.search.runtime import (
    INTERRUPT,
    interruptible,
    ray_log_to_file,
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
from remedies.search.study import Study
from remedies.search.trainable import TrialContext, trial_fn
from remedies.search.trial import ASHA_METRIC, asha_rungs, objective_values
from remedies.stores import tracking
from remedies.stores.optuna_storage import storage_url
from remedies.stores.results_dir import Results

log = logging.getLogger(__name__)

__all__ = ["ASHA_METRIC", "SearchOptions", "directions", "objective_values", "run_search"]


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


# ----------------------------------------------------------------------------- 2-5. the search


def run_search(space: SearchSpace, opts: SearchOptions, space_path: str = "") -> Summary:
    """Run (or resume) one search; return a summary with the study name and the Pareto front."""
    # 1. the user's input, all of it, before anything is created
    name = check_options(space, opts)
    if opts.address is None:  # K workers this machine cannot place: refused (cluster: below)
        check_workers(space, *_placeable(space))
    target = tracking.resolve(opts.tracking_uri)
    tracking.preflight(target)
    check_exists(opts, name)
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
        check_workers(space, *_placeable(space))  # K workers the cluster cannot place

    # 2. one driver per search
    lock = DriverLock(storage_url(opts.storage), name)
    lock.acquire()
    try:
        check_exists(opts, name)  # again, under the lock: a new search may have lost a race
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


def _placeable(space: SearchSpace) -> tuple[dict[str, float], float]:
    """(Ray's resources, GPUs per worker): the running Ray's, else what a local one will have."""
    import ray

    if ray.is_initialized():
        return dict(ray.cluster_resources()), gpus_per_trial(space.resources.gpu)
    have = local_resources()
    g = space.resources.gpu
    return have, float(g) if g != "auto" else float(have["GPU"] > 0)


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
    # a K-worker trial's driver holds none of its workers' CPUs (placement.py)
    have = dict(ray.cluster_resources())
    ctx.per_worker = per_worker(space, gpu)
    trainable = tune.with_resources(
        tune.with_parameters(trial_fn, ctx=ctx), trial_resources(space, gpu, have)
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
