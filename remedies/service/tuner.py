"""One search from start to end — the only module that imports Ray.

Read top to bottom, `run_search`:
  1. checks everything the user gave (tracking server and credentials, storage, name, data)
     before anything is created;
  2. creates or loads the stores: the Optuna study (`study.py`), the MLflow parent run
     (`tracking.py`), each once, under a lock;
  3. starts (or joins) Ray — locally bound to 127.0.0.1, with a reaper so no Ray process
     outlives the driver even when it is SIGKILLed;
  4. lets Tune run the trials: `StudySearcher` asks Optuna for each trial, opens its MLflow run,
     and decides its outcome exactly once (`outcome.decide`) when Tune is done with it;
  5. on any exit marks the trials still running as interrupted (they stay resumable), logs the
     front, closes the parent run, and returns a summary whose `exit_code` the CLI returns.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remedies.errors import ConfigError
from remedies.service import tracking
from remedies.service.fair import check_batches
from remedies.service.node_types import gpus_per_trial
from remedies.service.outcome import Decision, Outcome, decide
from remedies.service.progress import Progress
from remedies.service.results import Results
from remedies.service.space import SearchSpace, base_raw
from remedies.service.study import Study, study_exists
from remedies.service.trial import (
    ASHA_METRIC,
    TRIAL_METRICS,
    TrialSpec,
    asha_rungs,
    objective_values,
    run_trial,
)

log = logging.getLogger("remedies.search")

os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Ctrl-C raises KeyboardInterrupt here (Tune's own handler would end fit() as if finished)
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
# trials are the work: Ray would start them at niceness 15, behind any other process
os.environ.setdefault("RAY_worker_niceness", "0")

SHIP_LIMIT_BYTES = 512 * 2**20  # larger data sets are read by each trial from data.path


class Interrupt:
    """Ctrl-C or SIGTERM, remembered as well as raised. A KeyboardInterrupt lands in whatever
    Python code runs at that instant, and library code that catches BaseException can swallow
    it (seen once in CI: a search sent SIGINT mid-training ran all its trials and exited 0). The
    flag survives that: Tune's stopper ends fit(), no trial is decided from the partial result
    it was stopped at, and the search exits 130 with its running trials `interrupted`."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        if os.environ.get("REMEDIES_TEST_SWALLOWED_INTERRUPT"):  # tests: as if it were swallowed
            return
        raise KeyboardInterrupt


INTERRUPT = Interrupt()


def interrupt_stopper():
    from ray.tune import Stopper

    class InterruptStopper(Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return INTERRUPT.requested

        def stop_all(self) -> bool:
            return INTERRUPT.requested

    return InterruptStopper()


__all__ = ["ASHA_METRIC", "SearchOptions", "directions", "objective_values", "run_search"]


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
    crash_once_after_epoch: int | None = None  # tests: every trial's first attempt crashes


@dataclass
class TrialContext:
    """What every trial needs besides its sampled values (shipped once with tune.with_parameters:
    the object store, not the trial config, so credentials never land in Tune's files)."""

    space: dict[str, Any]
    target: tracking.Target
    threads: int
    state_root: str
    rungs: tuple[int, ...]
    crash_once_after_epoch: int | None = None
    data: tuple[dict[str, Any], Any] | None = None  # (base data config, its Splits), shipped
    references: dict[str, Any] | None = None  # the search's SB / plain-LB results (baselines)
    n_train: int = 0  # the base data's training samples (ASHA's per-trial compare_from)


def trial_fn(config: dict[str, Any], ctx: TrialContext) -> None:
    """Tune's trainable: a thin adapter from Tune's API to `trial.run_trial`."""
    import ray
    from ray import tune

    n = config["number"]
    spec = TrialSpec(number=n, run_id=config["run_id"], sample=config["sample"], space=ctx.space,
                     target=ctx.target, threads=ctx.threads,
                     state_dir=Results(ctx.state_root).child(f"{n:05d}").uri, rungs=ctx.rungs,
                     crash_once_after_epoch=ctx.crash_once_after_epoch,
                     references=ctx.references, n_train=ctx.n_train)  # fmt: skip
    try:
        import socket

        rt = ray.get_runtime_context()
        assigned = rt.get_assigned_resources()
        run_trial(spec, tune.report, shipped=ctx.data, placement={
            "gpu_ids": ",".join(map(str, ray.get_gpu_ids())) or "none",
            "resources": ", ".join(f"{k}={v:g}" for k, v in sorted(assigned.items())),
            "node_id": rt.get_node_id(), "hostname": socket.gethostname()})  # fmt: skip
    except Exception as e:  # the run says why; the driver decides FAILED if retries run out
        try:
            tracking.set_tags(ctx.target.uri, config["run_id"], {"error": repr(e)[:500]})
        except Exception:  # the tracking server may be the reason
            pass
        raise


def directions(space: SearchSpace) -> tuple[list[str], list[str]]:
    if space.scalarize:
        return ["score"], ["max"]
    return [o.name for o in space.objectives], [o.mode for o in space.objectives]


# ---------------------------------------------------------------------------------- searcher


def make_searcher(st: Study, space: SearchSpace, target: tracking.Target, exp_id: str,
                  parent: str, progress: Progress, state_root: Results, todo: int):  # fmt: skip
    from ray.tune.search import Searcher

    metrics, _ = directions(space)

    class StudySearcher(Searcher):
        """Optuna proposes (ask), Tune runs, and this decides — once — what became of a trial.

        Trials a previous driver left unfinished are handed out first, with their number,
        values and MLflow run, so `--resume` continues them instead of adding new ones.
        """

        def __init__(self) -> None:
            super().__init__()
            self.resumable = [t.number for t in st.unfinished()]
            self.to_launch = todo
            self.live: dict[str, int] = {}  # Tune trial id → Optuna number
            self.last: dict[str, dict[str, Any]] = {}
            self.outbox = tracking.Outbox()  # run closes, held while the server is away
            self.blocked = 0  # 1 while no run can be created for the next trial

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True  # the objectives come from the space file, not from Tune

        def save(self, checkpoint_path: str) -> None:
            """Nothing to save: the Optuna study is the searcher's state (resume reads it)."""

        def restore(self, checkpoint_path: str) -> None:
            """See `save`."""

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            """The next trial: an unfinished one first, else a new one from Optuna. Each step
            is recorded before the next, so a driver killed anywhere in here leaves a trial
            that the resume completes (values re-read, run found by its `trial_number` tag)."""
            if self.to_launch <= 0:
                return Searcher.FINISHED
            uri = target.uri
            if not self.resumable:
                number, sample = st.ask()
                st.set_attrs(number, {"sample": sample, "state": "running"})
                self.resumable.append(number)
            number = self.resumable[0]
            attrs = st.trial_attrs(number)
            sample = attrs.get("sample") or st.resample(number)
            try:  # the server is away: Tune asks again at its next step
                run_id = attrs.get("mlflow_run_id") or tracking.find_child_run(
                    uri, exp_id, parent, number)  # fmt: skip
                if run_id is None:
                    run_id = tracking.start_run(uri, exp_id, f"trial-{number:04d}", {
                        "search": st.name, "trial_number": number}, parent=parent)  # fmt: skip
                else:
                    tracking.client(uri).update_run(run_id, status="RUNNING")
            except Exception as e:
                log.debug("no run for trial %d yet: %s", number, e)
                self.outbox.retries += 1
                self.blocked = 1  # shown on the status line until a run can be created
                return None
            self.blocked = 0
            self.resumable.pop(0)
            st.set_attrs(number, {"sample": sample, "mlflow_run_id": run_id,
                                  "tune_trial_id": trial_id, "state": "running"})  # fmt: skip
            self.outbox.put("running", lambda: tracking.set_tags(uri, run_id, {
                "status": "running", "tune_trial_id": trial_id}))  # fmt: skip
            self.live[trial_id] = number
            self.to_launch -= 1
            return {"number": number, "run_id": run_id, "sample": sample}

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            self.last[trial_id] = result

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:  # fmt: skip
            if trial_id not in self.live or INTERRUPT.requested:
                return  # interrupted: stopped, not finished (interrupt_all decides it)
            res = result or self.last.get(trial_id) or {}
            why = "crashed (see the run's 'error' tag and Tune's error.txt)" if error else None
            self.record(trial_id, decide(res, metrics, error=why), res)

        def record(self, trial_id: str, d: Decision, res: dict[str, Any]) -> None:
            """Write the one decision to Optuna, MLflow, the progress line and the state dir."""
            import json

            number = self.live.pop(trial_id)
            self.last.pop(trial_id, None)
            attrs: dict[str, Any] = {k: res[k] for k in ("val_accuracy", "train_accuracy",
                                                         "test_accuracy", "gap", "diverged")
                                     if res.get(k) is not None}  # fmt: skip
            if res.get("final"):
                attrs["config"] = json.loads(res["config_json"])
                attrs["sharpness"] = json.loads(res["sharpness_json"])
                attrs["sharpness_suspect"] = json.loads(res.get("sharpness_suspect_json", "{}"))
                attrs["objectives"] = {m: res.get(m) for m in metrics}
                attrs["metrics"] = {k: res.get(k) for k in TRIAL_METRICS}
            if space.constraints:  # Study.tell hands them to Optuna (≤ 0: feasible)
                attrs["constraints"] = [c.violation(res.get(c.name) if res.get("final") else None)
                                        for c in space.constraints]  # fmt: skip
            st.tell(number, d, attrs)
            run_id = st.trials()[number].user_attrs["mlflow_run_id"]
            self.outbox.put(f"close run of trial {number}",
                            lambda: close_trial_run(target.uri, run_id, d))  # fmt: skip
            self.outbox.flush()
            if d.outcome.finished:
                try:
                    state_root.child(f"{number:05d}").remove()
                except OSError as e:  # the state is only a resume aid once decided
                    log.warning("could not remove the saved state of trial %d: %s", number, e)
            progress.decided(number, d, res, len(self.live), self.to_launch)

        def interrupt_all(self) -> None:
            for trial_id in list(self.live):
                self.record(trial_id, decide(self.last.get(trial_id), metrics, interrupted=True),
                            {})  # fmt: skip

        def tracking_state(self) -> tuple[int, int]:
            """(retries, unsent writes) of the driver and of every running trial."""
            retries = self.outbox.retries + sum(int(r.get("tracking_retries", 0))
                                                for r in self.last.values())  # fmt: skip
            unsent = self.blocked + self.outbox.pending + sum(int(r.get("tracking_pending", 0))
                                               for r in self.last.values())  # fmt: skip
            return retries, unsent

    return StudySearcher()


def close_trial_run(uri: str, run_id: str, d: Decision) -> None:
    """The MLflow side of a decision: the run's status and tags say what Optuna says."""
    tags = {"status": d.outcome.value, "pruned": d.outcome == Outcome.PRUNED,
            "diverged": d.outcome == Outcome.DIVERGED, "epochs_run": d.epochs,
            **({"failure": d.reason[:500]} if d.reason else {})}  # fmt: skip
    tracking.close_run(uri, run_id, d.outcome.mlflow_status, tags)


def close_decided_runs(st: Study, uri: str) -> int:
    """A driver killed between telling Optuna and closing the run leaves a decided trial whose
    run is still RUNNING: close it now from the decision Optuna recorded (resume, start)."""
    n = 0
    for t in st.trials():
        run_id = t.user_attrs.get("mlflow_run_id")
        if t.state.is_finished() and run_id and tracking.run_status(uri, run_id) == "RUNNING":
            d = Decision(Outcome(t.user_attrs["state"]), None, int(t.user_attrs["epochs_run"]),
                         t.user_attrs.get("error", ""))  # fmt: skip
            close_trial_run(uri, run_id, d)
            n += 1
    return n


def make_ticker(searcher, progress: Progress):
    from ray.tune import Callback

    class Ticker(Callback):
        """Each scheduler step: retry held tracking writes and refresh the progress line."""

        def on_step_end(self, iteration, trials, **info):
            try:
                searcher.outbox.flush()
            except tracking.TrackingLost as e:
                log.error("%s", e)
            running = sum(t.status == "RUNNING" for t in trials)
            pending = sum(t.status == "PENDING" for t in trials)
            retries, unsent = searcher.tracking_state()
            progress.tick(running, pending, retries=retries, unsent=unsent)

    return Ticker()


# ------------------------------------------------------------------------------------- Ray


def start_ray(address: str | None) -> subprocess.Popen | None:
    """Join `address`, or start a local instance bound to 127.0.0.1 with no dashboard, watched
    by a reaper process that ends Ray's processes if this driver dies without cleaning up.
    Returns the reaper (None when Ray was already running in this process or is remote)."""
    if address is None and "ray" not in sys.modules:
        # Ray 2.60 has no public "bind to localhost" switch; this variable (ray_constants,
        # read at import) makes the node IP 127.0.0.1, and every Ray server binds to it
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return None
    try:
        # "local": always a new instance — with None, Ray joins whatever cluster another
        # process on this machine started (its /tmp/ray/ray_current_cluster)
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 configure_logging=False)  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local instance"
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("--address", f"cannot start or reach Ray at {where}: {msg}") from None
    if address is not None:
        return None
    return subprocess.Popen([sys.executable, "-m", "remedies.service.reaper", str(os.getpid())],
                            start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


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


def _missing_on_nodes(nodes: list[dict[str, Any]], paths: list[str]) -> tuple[str, str] | None:
    """(node, path) of the first file a node that can run trials does not have, else None."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def missing(ps: list[str]) -> list[str]:
        return [p for p in ps if not os.path.exists(p)]

    runners = [n for n in nodes if n["Resources"].get("CPU", 0) > 0]
    refs = [missing.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote(paths) for n in runners]  # fmt: skip
    for n, gone in zip(runners, ray.get(refs, timeout=120), strict=True):
        if gone:
            return f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})", gone[0]
    return None


def join_cluster(address: str, results: Results, target: tracking.Target,
                 files: list[str] | None = None) -> None:  # fmt: skip
    """Connect to an existing cluster and refuse, in one line, storage that only this machine
    sees once it has more than one node: trials on other nodes could not save or resume there;
    and data files (`files`) that a node able to run trials does not have."""
    start_ray(address)
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if files and (gone := _missing_on_nodes(nodes, files)):
        ray.shutdown()
        raise ConfigError("data.path", f"{gone[1]} does not exist on node {gone[0]}; trials there "
                          "read it themselves (data over 512 MiB, or data.* searched): put it "
                          "on every node or on storage they share")  # fmt: skip
    if len(nodes) > 1 and results.local:
        ray.shutdown()
        raise ConfigError("--results-dir", f"{results.uri} is a local folder but the cluster has "
                          f"{len(nodes)} nodes; give storage every node reaches, e.g. "
                          "s3://BUCKET/PREFIX or an NFS mount")  # fmt: skip
    if len(nodes) > 1 and target.uri.startswith("sqlite:"):
        ray.shutdown()
        raise ConfigError("--tracking-uri", f"{target.uri} is a file on this machine but the "
                          f"cluster has {len(nodes)} nodes; use http://HOST:PORT of an MLflow "
                          "server every node reaches")  # fmt: skip


def stop_ray(reaper: subprocess.Popen | None) -> None:
    import ray

    if reaper is None:
        return
    ray.shutdown()
    reaper.terminate()  # it would also end by itself once this process is gone


# ------------------------------------------------------------------------------------ search


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

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 0 if self.counts.get("complete", 0) > 0 else 1

    def __getitem__(self, key: str) -> Any:  # summary["front"] as before
        return getattr(self, key)


def _check_options(space: SearchSpace, opts: SearchOptions) -> None:
    if opts.num_samples is not None and opts.num_samples < 1:
        raise ConfigError("--num-samples", f"must be ≥ 1, got {opts.num_samples}")
    if opts.max_concurrent is not None and opts.max_concurrent < 1:
        raise ConfigError("--max-concurrent", f"must be ≥ 1, got {opts.max_concurrent}")
    if opts.num_samples is not None:
        space.num_samples = opts.num_samples
    if opts.max_concurrent is not None:
        space.max_concurrent = opts.max_concurrent
    Results.parse(opts.results_dir).check()


def run_search(space: SearchSpace, opts: SearchOptions, space_path: str = "") -> Summary:
    """Run (or resume) one search; return a summary with the study name and the Pareto front."""
    from remedies.config import parse_config
    from remedies.data import load_data
    from remedies.service import report as rep

    # 1. the user's input, all of it, before anything is created
    _check_options(space, opts)
    target = tracking.resolve(opts.tracking_uri)
    tracking.preflight(target)
    name = opts.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    exists = study_exists(opts.storage, name)
    if opts.resume and not exists:
        raise ConfigError("--resume", f"no search named {name!r} in {opts.storage}")
    if exists and not opts.resume:
        raise ConfigError("--name", f"a search named {name!r} already exists in {opts.storage}; "
                          "use --resume to continue it or choose another name")  # fmt: skip
    base = parse_config(base_raw(space))
    base_data = base.data
    splits = load_data(base_data)  # generated/cached once, before trials race; shipped to them
    check_batches(space, splits.n_train)  # degenerate batches: refused before anything exists
    if base.model.factory is not None:  # the user's model: called and checked once, up front
        from remedies.trainer import build_model

        build_model(base, splits, "cpu")  # type: ignore[arg-type]
    if opts.address is not None:  # a cluster: its shape decides what storage can work
        files = node_files(space, base_data.path, splits.nbytes)
        join_cluster(opts.address, Results.parse(opts.results_dir), target, files)

    # 2. the stores
    target.apply()
    tracking.prepare_store(target.uri)
    st = Study(opts.storage, name, space)
    metrics, modes = directions(space)
    exp_id = tracking.experiment_id(target.uri, opts.experiment or space.name)
    if opts.resume:
        st.load()
        parent = st.attrs["mlflow_parent_run_id"]
        tracking.resume_run(target.uri, parent)
        if n := close_decided_runs(st, target.uri):
            log.warning("closed %d MLflow runs of trials decided before the interruption", n)
    else:
        parent = tracking.start_run(target.uri, exp_id, name, {"search": name, "role": "search",
                                                               "space": space.name})  # fmt: skip
        st.create([{"max": "maximize", "min": "minimize"}[m] for m in modes], {
            "mlflow_parent_run_id": parent, "mlflow_experiment_id": exp_id,
            "tracking_uri": target.uri, "space": space.model_dump(mode="json"),
            "space_path": str(space_path), "metrics": [o.name for o in space.objectives],
            "modes": [o.mode for o in space.objectives],
            "constraints": [c.model_dump() for c in space.constraints]})  # fmt: skip
        st.enqueue_plain()  # plain LB (no remedy) is always one of the candidates
        tracking.log_params(target.uri, parent, {
            "space": space.name, "sampler": space.sampler.name, "sampler.seed": space.sampler.seed,
            "num_samples": space.num_samples, "max_concurrent": space.max_concurrent,
            "asha": space.asha.enabled, "objectives": ",".join(space.metric_names),
            "scalarize": space.scalarize})  # fmt: skip
        tracking.log_yaml(target.uri, parent, space.model_dump(mode="json"), "space.yaml")
    done_before = st.finished_count()
    todo = max(0, space.num_samples - done_before)
    results = Results.parse(opts.results_dir).child(name)
    state_root = results.child("trials")

    # 3. Ray, 4. the trials
    t0 = time.time()
    progress = Progress(space, quiet=opts.quiet, before=st.counts())
    reaper = None
    searcher = None
    interrupted = False
    old_term, old_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    INTERRUPT.requested = False
    try:
        signal.signal(signal.SIGTERM, INTERRUPT.handler)  # SIGTERM: same as Ctrl-C
        signal.signal(signal.SIGINT, INTERRUPT.handler)
        reaper = start_ray(opts.address)
        refs = st.attrs.get("references")
        if space.baselines.enabled and refs is None:  # first, so every trial can be scored
            from remedies.service.baselines import run_references

            refs = run_references(space, target=target.public(), exp_id=exp_id, parent=parent,
                                  search=name, threads=max(1, int(space.resources.cpu)),
                                  data=(base_data.model_dump(mode="json"), splits),
                                  quiet=opts.quiet)  # fmt: skip
            st.study.set_user_attr("references", refs)  # type: ignore[union-attr]
        if todo > 0:
            searcher = make_searcher(st, space, target.public(), exp_id, parent, progress,
                                     state_root, todo)  # fmt: skip
            _fit(
                space,
                opts,
                searcher,
                progress,
                target.public(),
                state_root,
                results,
                (base_data.model_dump(mode="json"), splits),
                refs,
            )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        interrupted = interrupted or INTERRUPT.requested
        try:
            # 5. the end, however it came
            if searcher is not None:
                searcher.interrupt_all()
                if not searcher.outbox.drain(timeout_s=60):
                    log.error("could not close %d MLflow runs: %s", searcher.outbox.pending,
                              searcher.outbox.last_error)  # fmt: skip
            interrupted = interrupted or st.finished_count() < space.num_samples
            s = rep.finish_search(st.study, target.uri, parent, time.time() - t0)  # type: ignore[arg-type]
            tracking.end_run(target.uri, parent, "KILLED" if interrupted else "FINISHED")
        finally:
            stop_ray(reaper)
    hint = f"remedies search {space_path or 'SPACE'} --name {name} --resume" + (
        f" --storage {opts.storage}" if opts.storage != SearchOptions.storage else ""
    )
    return Summary(name=name, trials=s["trials"], counts=st.counts(), front=s["front"],
                   table=s["table"], wall_time_s=s["wall_time_s"], interrupted=interrupted,
                   resume_hint=hint if interrupted else "", answer=s["answer"])  # fmt: skip


def _fit(space: SearchSpace, opts: SearchOptions, searcher, progress: Progress,
         target: tracking.Target, state_root: Results, results: Results,
         data: tuple[dict[str, Any], Any], refs: dict[str, Any] | None = None
         ) -> None:  # fmt: skip
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    gpu = gpus_per_trial(space.resources.gpu)  # auto: from the node types, not only those up
    # the base's data (config, splits), loaded once by the driver, travels with the trials
    # through Ray's object store: a node without the driver's files trains on it all the same
    shipped = data if data[1].nbytes <= SHIP_LIMIT_BYTES else None
    ctx = TrialContext(data=shipped, space=space.model_dump(mode="json"), target=target,
                       threads=max(1, int(space.resources.cpu)), state_root=state_root.uri,
                       rungs=asha_rungs(space, 100_000),
                       crash_once_after_epoch=opts.crash_once_after_epoch,
                       references=refs, n_train=data[1].n_train)  # fmt: skip
    trainable = tune.with_resources(tune.with_parameters(trial_fn, ctx=ctx),
                                    {"cpu": space.resources.cpu, "gpu": gpu})  # fmt: skip
    scheduler = (ASHAScheduler(metric=ASHA_METRIC, mode="max", time_attr="epoch", max_t=100_000,
                               grace_period=space.asha.grace_period,
                               reduction_factor=space.asha.reduction_factor)
                 if space.asha.enabled else FIFOScheduler())  # fmt: skip
    import pyarrow.fs as pafs

    fs, base = results.filesystem()
    listed = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    attempt = 1 + sum(1 for f in listed if f.base_name.startswith("attempt-"))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=searcher.to_launch,
                                    max_concurrent_trials=space.max_concurrent,
                                    # a trial's process keeps torch, MLflow and the data
                                    # imported for the next one: seconds per trial
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"attempt-{attempt}", storage_path=base, storage_filesystem=fs, verbose=0,
            callbacks=[make_ticker(searcher, progress)], stop=interrupt_stopper(),
            failure_config=tune.FailureConfig(max_failures=space.max_failures)),
    )  # fmt: skip
    tuner.fit()
    if INTERRUPT.requested:  # its KeyboardInterrupt was swallowed; the stopper ended fit()
        raise KeyboardInterrupt
