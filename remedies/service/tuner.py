"""Ray Tune wiring: the trial function, the Optuna searcher, ASHA, and one search from start to end.

Contract between the pieces (see stack.md's traps):
  * per epoch a trial reports `epoch` and `epoch_val_accuracy` — ASHA stops on those;
  * only a trial that finishes reports its objectives (`final: 1`); the searcher tells Optuna
    COMPLETE only then, PRUNED when ASHA stopped it, FAIL when it crashed or diverged;
  * the trial logs to MLflow itself; its run id goes into its Tune checkpoint before training, so
    a retried or restored trial continues the same run, and into every result, so the driver can
    close the run of a trial that Tune stopped from outside.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from remedies.errors import ConfigError
from remedies.service import tracking
from remedies.service.optuna_space import (
    define_by_run,
    fail_orphans,
    finite,
    make_sampler,
    open_storage,
)
from remedies.service.space import SearchSpace, base_raw, resolve

os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# trials are the work: Ray would start them at niceness 15, behind any other process
os.environ.setdefault("RAY_worker_niceness", "0")
REPORT_INTERVAL_S = 1.0  # per-epoch reporting period of a trial (seconds)

ASHA_METRIC = "epoch_val_accuracy"


@dataclass
class SearchContext:
    """What every trial needs besides its sampled values (passed with tune.with_parameters)."""

    space: dict[str, Any]  # SearchSpace as JSON (re-validated cheaply in the worker)
    name: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    threads: int
    crash_once_after_epoch: int | None = None  # fault injection for tests of retries


# ------------------------------------------------------------------------------------- trial


def objective_values(space: SearchSpace, metrics: dict[str, Any]) -> dict[str, float | None]:
    vals = {o.name: metrics.get(o.name) for o in space.objectives}
    if space.scalarize:
        if all(finite(v) for v in vals.values()):
            vals["score"] = sum(o.weight * (1 if o.mode == "max" else -1) * vals[o.name]  # type: ignore[operator]
                                for o in space.objectives)  # fmt: skip
        else:
            vals["score"] = None
    return vals


def asha_rungs(space: SearchSpace, epochs: int) -> set[int]:
    """The epochs at which ASHA compares trials: grace_period · reduction_factor^k."""
    if not space.asha.enabled:
        return set()
    rungs, m = set(), float(space.asha.grace_period)
    while m <= epochs:
        rungs.add(math.ceil(m))
        m *= space.asha.reduction_factor
    return rungs


def trial_fn(config: dict[str, Any], ctx: SearchContext) -> None:
    """One Tune trial: resolve the run config, train in-process, log to MLflow, report."""
    import ray
    from ray import tune

    from remedies.config import config_to_dict, flatten, parse_config
    from remedies.trainer import pick_device, train

    space = SearchSpace.model_validate(ctx.space)
    uri = ctx.tracking_uri
    tctx = tune.get_context()
    trial_id, trial_name = tctx.get_trial_id(), tctx.get_trial_name()

    # the MLflow run: continued from the checkpoint on a retry/restore, else created now
    run_id = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            run_id = json.loads((Path(d) / "mlflow.json").read_text())["run_id"]
        tracking.resume_run(uri, run_id)
    else:
        run_id = tracking.start_run(uri, ctx.experiment_id, trial_name,
                                    {"trial_id": trial_id, "search": ctx.name,
                                     "status": "running"}, parent=ctx.parent_run_id)  # fmt: skip
    try:
        cfg = parse_config(resolve(space, config))
        if cfg.train.threads is None:  # pinned, so an export re-trains bit for bit on CPU
            cfg.train.threads = max(1, ctx.threads)
        full = config_to_dict(cfg)
        tracking.log_params(uri, run_id, flatten(full))
        # where it runs: the GPUs Ray gave the trial (its CUDA_VISIBLE_DEVICES), torch's device
        tracking.set_tags(uri, run_id, {"gpu_ids": ",".join(map(str, ray.get_gpu_ids())) or "none",
                                        "device": str(pick_device(cfg.train.device))})  # fmt: skip
        if ckpt is None:
            tracking.log_yaml(uri, run_id, full, "config.yaml")
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "mlflow.json").write_text(json.dumps({"run_id": run_id}))
            tune.report({"epoch": 0, "mlflow_run_id": run_id},
                        checkpoint=tune.Checkpoint.from_directory(d))  # fmt: skip

        # per-epoch rows go to MLflow and Tune at most every REPORT_INTERVAL_S, and always at
        # ASHA's rung epochs and the last one: short epochs would otherwise keep the driver busy
        # on a core the trials need, while ASHA still decides exactly where it would have.
        # MLflow is written first, so a trial ASHA stops inside tune.report loses nothing.
        pending: list[dict[str, Any]] = []
        last = [time.monotonic()]
        rungs = asha_rungs(space, cfg.train.epochs)

        def flush() -> None:
            tracking.log_metric_rows(uri, run_id, pending, [r["epoch"] for r in pending])
            pending.clear()

        def report(row: dict[str, Any]) -> None:
            pending.append(row)
            end = row["epoch"] >= cfg.train.epochs or not finite(row.get("val_accuracy"))
            due = time.monotonic() - last[0] >= REPORT_INTERVAL_S or row["epoch"] in rungs
            if due or end or ctx.crash_once_after_epoch:
                flush()
                last[0] = time.monotonic()
                va = row.get("val_accuracy")
                tune.report({"epoch": row["epoch"], ASHA_METRIC: va if finite(va) else 0.0,
                             "mlflow_run_id": run_id})  # fmt: skip
            if ckpt is None and row["epoch"] == ctx.crash_once_after_epoch:
                raise RuntimeError("injected fault (first attempt only)")

        result = train(cfg, report=report, progress=False)
        if pending:  # epochs the budget grew by (train_longer) or a divergence left unsent
            flush()
        metrics: dict[str, Any] = {
            "val_accuracy": result.val_accuracy, "train_accuracy": result.train_accuracy,
            "test_accuracy": result.test_accuracy,
            "gap": result.train_accuracy - result.val_accuracy,
            "val_loss": result.val_loss, "train_loss": result.train_loss,
            "wall_time_s": result.wall_time_s, **result.sharpness,
        }  # fmt: skip
        objs = objective_values(space, metrics)
        tracking.log_metrics(uri, run_id, {f"final_{k}": v for k, v in metrics.items()
                                           if finite(v)}, step=result.epochs_run)  # fmt: skip
        ok = not result.diverged and all(finite(v) for v in objs.values())
        tracking.set_tags(uri, run_id, {"status": "complete" if ok else "failed",
                                        "pruned": False, "diverged": result.diverged,
                                        "epochs_run": result.epochs_run})  # fmt: skip
        tracking.end_run(uri, run_id, "FINISHED" if ok else "FAILED")
        final = {k: v for k, v in {**metrics, **objs}.items() if finite(v)}
        tune.report({**final, "final": 1, "diverged": result.diverged, "epoch": result.epochs_run,
                     "epochs_run": result.epochs_run, "mlflow_run_id": run_id,
                     "config_json": json.dumps(full),
                     "sharpness_json": json.dumps(result.sharpness)})  # fmt: skip
    except (SystemExit, KeyboardInterrupt):
        # Tune stopped the trial (ASHA: `sys.exit` inside tune.report) or the driver is going
        # down: the driver closes the run as pruned/interrupted, so the two never race
        raise
    except Exception as e:  # a crash: the run says so; a retry reopens it
        tracking.set_tags(uri, run_id, {"status": "failed", "error": repr(e)[:500]})
        tracking.end_run(uri, run_id, "FAILED")
        raise


# ---------------------------------------------------------------------------------- searcher


class StudySearch(OptunaSearch):
    """OptunaSearch that never tells half-trained values and records each trial's results.

    Stock OptunaSearch tells `[None, None]` as COMPLETE for a trial without its objectives
    (stopped by ASHA) — it fails and the trial stays RUNNING forever; with partial values it
    would pollute the front. Here: all objectives present and finite → COMPLETE; crashed or
    diverged → FAIL; otherwise (stopped early) → PRUNED.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        return  # objectives arrive only at the end; intermediate values mean nothing to it

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:  # fmt: skip
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot = self._ot_trials[trial_id]
        result = result or {}
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        vals = [result.get(m) for m in metrics]
        final = bool(result.get("final"))
        attrs: dict[str, Any] = {"tune_trial_id": trial_id}
        for k in ("mlflow_run_id", "epochs_run", "val_accuracy", "train_accuracy",
                  "test_accuracy", "gap", "diverged"):  # fmt: skip
            if result.get(k) is not None:
                attrs[k] = result[k]
        if not final and result.get("epoch") is not None:
            attrs["epochs_run"] = result["epoch"]
        if result.get("config_json"):
            attrs["config"] = json.loads(result["config_json"])
        if result.get("sharpness_json"):
            attrs["sharpness"] = json.loads(result["sharpness_json"])
        if final:
            attrs["objectives"] = {m: result.get(m) for m in metrics}
        if final and not error and all(finite(v) for v in vals):
            state, values = optuna.trial.TrialState.COMPLETE, vals
        elif error or final:
            state, values = optuna.trial.TrialState.FAIL, None
        else:
            state, values = optuna.trial.TrialState.PRUNED, None
        attrs["status"] = state.name.lower()
        self._completed_trials.add(trial_id)
        storage = self._ot_study._storage
        frozen = storage.get_trial(ot._trial_id)
        if frozen.state.is_finished():
            # a resumed search: the interrupted driver failed this trial; record the outcome of
            # its re-run as a new trial with the same parameters
            self._ot_study.add_trial(
                optuna.trial.create_trial(
                    state=state,
                    values=values,
                    params=frozen.params,
                    distributions=frozen.distributions,
                    user_attrs={**frozen.user_attrs, **attrs, "resumed_from": frozen.number},
                )
            )
            return
        for k, v in attrs.items():
            ot.set_user_attr(k, v)
        try:
            self._ot_study.tell(ot, values, state=state)
        except Exception as exc:  # never leave it RUNNING
            optuna.logging.get_logger(__name__).warning(f"tell failed: {exc}")
            self._ot_study.tell(ot, state=optuna.trial.TrialState.FAIL)


def make_tracking_callback(uri: str):
    from ray.tune import Callback

    class CloseRuns(Callback):
        """Driver side: close the MLflow run of a trial Tune stopped (ASHA) or that errored."""

        def _close(self, trial, status: str) -> None:
            res = trial.last_result or {}
            run_id = res.get("mlflow_run_id")
            if not run_id or res.get("final"):
                return
            try:
                if tracking.run_status(uri, run_id) == "RUNNING":
                    tracking.set_tags(uri, run_id, {"status": status, "pruned": status == "pruned",
                                                    "diverged": False,
                                                    "epochs_run": res.get("epoch", 0)})  # fmt: skip
                    tracking.end_run(uri, run_id, "KILLED" if status == "pruned" else "FAILED")
            except Exception as e:  # tracking must never break the search
                print(f"warning: could not close MLflow run {run_id}: {e}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._close(trial, "pruned")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._close(trial, "failed")

    return CloseRuns()


# ------------------------------------------------------------------------------------ search


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


def directions(space: SearchSpace) -> tuple[list[str] | str, list[str] | str]:
    if space.scalarize:
        return "score", "max"
    return [o.name for o in space.objectives], [o.mode for o in space.objectives]


def run_search(space: SearchSpace, opts: SearchOptions, space_path: str = "") -> dict[str, Any]:
    """Run (or resume) one search; return a summary with the study name and the Pareto front."""
    import ray
    from ray import tune

    from remedies.data import load_data
    from remedies.service import report as rep
    from remedies.service.progress import Progress

    if opts.num_samples is not None:
        space.num_samples = opts.num_samples
    if opts.max_concurrent is not None:
        space.max_concurrent = opts.max_concurrent
    if opts.num_samples is not None and opts.num_samples < 1:
        raise ConfigError("--num-samples", f"must be ≥ 1, got {opts.num_samples}")
    if opts.max_concurrent is not None and opts.max_concurrent < 1:
        raise ConfigError("--max-concurrent", f"must be ≥ 1, got {opts.max_concurrent}")
    uri = tracking.resolve_uri(opts.tracking_uri)
    tracking.check_reachable(uri)
    storage = open_storage(opts.storage)
    name = opts.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    results = Path(opts.results_dir).resolve()
    exp_path = results / name
    existing = name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if opts.resume and not existing:
        raise ConfigError("--resume", f"no search named {name!r} in {opts.storage}")
    if existing and not opts.resume:
        raise ConfigError("--name", f"a search named {name!r} already exists in {opts.storage}; "
                          "use --resume to continue it or choose another name")  # fmt: skip

    # the data once on the driver: mnist1d is generated and cached before trials race for it
    from remedies.config import parse_config

    load_data(parse_config(base_raw(space)).data)

    if not ray.is_initialized():
        try:
            ray.init(address=opts.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = opts.address or "a local instance"
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError("--address", f"cannot start or reach Ray at {where}: {msg}") from None
    gpu = space.resources.gpu
    if gpu == "auto":
        gpu = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    metric, mode = directions(space)
    exp_id = tracking.experiment_id(uri, opts.experiment or space.name)  # one per space
    if opts.resume:
        study = optuna.load_study(study_name=name, storage=storage)
        parent = study.user_attrs["mlflow_parent_run_id"]
        tracking.resume_run(uri, parent)
    else:
        modes = [mode] if isinstance(mode, str) else mode
        dirs = [{"max": "maximize", "min": "minimize"}[m] for m in modes]
        study = optuna.create_study(study_name=name, storage=storage, directions=dirs)
        parent = tracking.start_run(uri, exp_id, name, {"search": name, "space": space.name,
                                                        "role": "search"})  # fmt: skip
        study.set_user_attr("mlflow_parent_run_id", parent)
        study.set_user_attr("mlflow_experiment_id", exp_id)
        study.set_user_attr("tracking_uri", uri)
        study.set_user_attr("space", space.model_dump(mode="json"))
        study.set_user_attr("space_path", str(space_path))
        study.set_user_attr("metrics", [o.name for o in space.objectives])
        study.set_user_attr("modes", [o.mode for o in space.objectives])
        tracking.log_params(uri, parent, {"space": space.name, "sampler": space.sampler.name,
                                          "sampler.seed": space.sampler.seed,
                                          "num_samples": space.num_samples,
                                          "max_concurrent": space.max_concurrent,
                                          "asha": space.asha.enabled,
                                          "objectives": ",".join(space.metric_names),
                                          "scalarize": space.scalarize})  # fmt: skip
        tracking.log_yaml(uri, parent, space.model_dump(mode="json"), "space.yaml")

    status = "FAILED"
    t0 = time.time()
    progress = Progress(space, quiet=opts.quiet)
    try:
        ctx = SearchContext(space=space.model_dump(mode="json"), name=name, tracking_uri=uri,
                            experiment_id=exp_id, parent_run_id=parent,
                            threads=max(1, int(space.resources.cpu)),
                            crash_once_after_epoch=opts.crash_once_after_epoch)  # fmt: skip
        trainable = tune.with_resources(tune.with_parameters(trial_fn, ctx=ctx),
                                        {"cpu": space.resources.cpu, "gpu": gpu})  # fmt: skip
        callbacks = [make_tracking_callback(uri), progress]
        if opts.resume and tune.Tuner.can_restore(str(exp_path)):
            tuner = tune.Tuner.restore(str(exp_path), trainable, resume_errored=True)
            # callbacks are not restored: attach ours again
            tuner._local_tuner._run_config.callbacks = callbacks  # type: ignore[union-attr]
        else:
            searcher = StudySearch(space=define_by_run(space), metric=metric, mode=mode,
                                   sampler=make_sampler(space), storage=storage,
                                   study_name=name)  # fmt: skip
            from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

            scheduler = (ASHAScheduler(metric=ASHA_METRIC, mode="max", time_attr="epoch",
                                       max_t=100_000, grace_period=space.asha.grace_period,
                                       reduction_factor=space.asha.reduction_factor)
                         if space.asha.enabled else FIFOScheduler())  # fmt: skip
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                            num_samples=space.num_samples,
                                            max_concurrent_trials=space.max_concurrent,
                                            # a trial's process keeps torch, MLflow and the
                                            # data imported for the next one: seconds per trial
                                            reuse_actors=True),
                run_config=tune.RunConfig(
                    name=name, storage_path=str(results), verbose=0, callbacks=callbacks,
                    failure_config=tune.FailureConfig(max_failures=space.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                ),
            )  # fmt: skip
        tuner.fit()
        study = optuna.load_study(study_name=name, storage=storage)
        done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        status = "FINISHED" if done >= space.num_samples else "KILLED"
        if status == "KILLED":
            print(
                f"search interrupted; continue it with: remedies search {space_path or 'SPACE'}"
                f" --name {name} --resume"
            )
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        study = optuna.load_study(study_name=name, storage=storage)
        fail_orphans(study)
        tracking.close_children(uri, exp_id, parent, "interrupted")
        try:
            summary = rep.finish_search(study, uri, parent, time.time() - t0)
        finally:
            tracking.end_run(uri, parent, status)
    return summary
