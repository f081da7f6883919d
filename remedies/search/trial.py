"""One trial, worker side: train a sampled config, checkpoint it, log to its MLflow run, report.

Imports no Ray: `trainable.py` calls `run_trial` with a `send` function (Tune's report). The trial
does not open or close its MLflow run — the driver does both, from the trial's one decision —
it only logs into the run it is given.

Order at every save (every `checkpoint_every` epochs or minutes, at most every REPORT_INTERVAL_S,
and always at ASHA's rungs and the end):
training state saved → the epochs' metrics queued to MLflow → Tune told. So a trial killed at any
point restarts from a state whose epochs are all either logged or still to be logged from the
saved history (`_catch_up`): never a metric step twice, never one lost.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remedies.config import RunConfig, config_to_dict, flatten, parse_config
from remedies.engine.trainer import TrainResult, pick_device
from remedies.launch import fit
from remedies.results.measures_report import suspect_flags, suspect_metrics
from remedies.results.target import curve_of
from remedies.search.fair import compare_from
from remedies.search.scores import scores
from remedies.search.space import REFERENCE_METRICS, SearchSpace, resolve
from remedies.stats import finite
from remedies.stores import tracking
from remedies.stores.results_dir import Results

REPORT_INTERVAL_S = 1.0  # per-epoch reporting period of a trial (seconds)
ASHA_METRIC = "epoch_val_accuracy"
# what every finished trial keeps in the study besides its objectives: times split (training
# alone vs measures), how long it ran, the threads its times were taken on, and its standing
# against the references
TRIAL_METRICS = (
    "train_time_s",
    "train_cpu_s",
    "measure_time_s",
    "wall_time_s",
    "epochs",
    "steps",
    "threads",
    *REFERENCE_METRICS,  # speed-ups (to target and whole budgets), scaling, gap closed
    "reached_target",
    "batch_size",
    "lr",
    # where sharpness was measured (the sharpness evidence reads them as confounders)
    "train_loss",
    "end_batch_size",
    "end_lr",
)
STATE_FILE = "state.pt"


@dataclass
class TrialSpec:
    """Everything a trial needs, decided by the driver before it starts."""

    number: int  # the Optuna trial number (stable across retries and resumes); -1: reference
    run_id: str  # its MLflow run, opened by the driver
    config: dict[str, Any]  # its complete run config, resolved and validated by the driver
    space: SearchSpace  # objectives and checkpoint cadence (the driver's validated space)
    target: tracking.Target
    state_dir: str  # where its training state lives between attempts (folder or URI)
    rungs: tuple[int, ...] = ()  # ASHA's comparison epochs: always reported
    references: dict[str, Any] | None = None  # the search's SB / plain-LB results
    n_train: int = 0  # the base data's training samples (for compare_from)
    measure: bool = True  # references train only: accuracy and time, no sharpness
    per_worker: dict[str, float] | None = None  # train.workers > 1: each worker's Ray resources


def asha_rungs(space: SearchSpace, epochs: int) -> tuple[int, ...]:
    """The epochs at which ASHA compares trials: grace_period · reduction_factor^k."""
    if not space.asha.enabled:
        return ()
    rungs, m = set(), float(space.asha.grace_period)
    while m <= epochs:
        rungs.add(math.ceil(m))
        m *= space.asha.reduction_factor
    return tuple(sorted(rungs))


def objective_values(space: SearchSpace, metrics: dict[str, Any]) -> dict[str, float | None]:
    vals: dict[str, float | None] = {o.name: metrics.get(o.name) for o in space.objectives}
    if space.scalarize:
        got = [(o, v) for o in space.objectives if finite(v := vals[o.name])]
        score = sum(o.weight * (1 if o.mode == "max" else -1) * float(v) for o, v in got)  # type: ignore[arg-type]
        vals["score"] = score if len(got) == len(space.objectives) else None
    return vals


def _catch_up(uri: str, run_id: str, history: list[dict[str, Any]]) -> None:
    """Log the saved epochs the run does not have yet (a kill between save and log)."""
    have = {s for s, _ in tracking.metric_history(uri, run_id, "epoch_time_s")}
    rows = [r for r in history if r["epoch"] not in have]
    tracking.log_metric_rows(uri, run_id, rows, [r["epoch"] for r in rows])


def run_config(space: SearchSpace, sample: dict[str, Any], threads: int) -> dict[str, Any]:
    """The complete run config of one trial (driver side, once): base + sample, validated, its
    thread count pinned so an export re-trains bit for bit on CPU. `auto` values stay `auto`."""
    cfg = parse_config(resolve(space, sample))
    if cfg.train.threads is None:
        cfg.train.threads = max(1, threads)
    return config_to_dict(cfg)


def run_trial(
    spec: TrialSpec,
    send: Callable[[dict[str, Any]], None],
    placement: dict[str, str],
    shipped: tuple[dict[str, Any], Any] | None = None,
) -> dict[str, Any]:
    """Train the trial (continuing its saved state if any); `placement` are tags saying where it
    runs (the GPUs and resources Ray gave it); `shipped` the driver's (data config, splits),
    used when the trial's data config is that one (it is, unless the space samples `data.*`).
    Returns (and sends) the final row."""
    spec.target.apply()
    # MLflow's own convention: code in the run (a user's model or data factory) that calls
    # mlflow.start_run() logs into this trial's run
    os.environ["MLFLOW_RUN_ID"] = spec.run_id
    cfg = _placed(spec, placement)
    store = Results(spec.state_dir)  # on a cluster: storage every node reaches
    resume = store.load_torch(STATE_FILE)
    out = _open_attempt(spec, cfg, placement, resume)
    saver = _Saver(spec, cfg, store, out, send, resume)
    same = shipped is not None and shipped[0] == cfg.data.model_dump(mode="json")
    result = fit(
        cfg,
        splits=shipped[1] if same else None,  # type: ignore[index]
        report=saver.report,
        progress=False,
        resume=resume,
        expose_state=saver.capture.append,
        measure=spec.measure,
        per_worker=spec.per_worker,
    )
    saver.queue_rest()
    metrics = trial_metrics(spec, cfg, result)
    objs = objective_values(spec.space, metrics)
    _log_final(spec, out, metrics, result)
    final_row = {
        **{k: v for k, v in {**metrics, **objs}.items() if finite(v)},
        "final": 1,
        "diverged": result.diverged,
        "epoch": result.epochs_run,
        "epochs_run": result.epochs_run,
        "config_json": json.dumps(spec.config),
        "curve_json": json.dumps(metrics["curve"]),
        "sharpness_json": json.dumps(result.sharpness),
        "sharpness_suspect_json": json.dumps(suspect_flags(result.sharpness_details)),
        "tracking_retries": out.retries,
        "tracking_pending": 0,
        "device": result.device,
    }
    send(final_row)
    return final_row


def _placed(spec: TrialSpec, placement: dict[str, str]) -> RunConfig:
    """The trial's config as it trains here: on the CPU when Ray gave it no GPU."""
    cfg = parse_config(spec.config)  # typed again from the dict the driver validated
    single = cfg.train.workers == 1  # else the workers get their GPUs from Ray Train
    if single and placement.get("gpu_ids", "none") == "none" and cfg.train.device == "auto":
        # Ray gave this trial no GPU: it must not use one behind Ray's back (another trial's)
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": "cpu"})})
    return cfg


def _open_attempt(
    spec: TrialSpec, cfg: RunConfig, placement: dict[str, str], resume: dict[str, Any] | None
) -> tracking.Outbox:
    """This attempt on the trial's run: its params, its attempt tags, and its config (a first
    attempt) or the saved epochs the run lacks (a continued one); the outbox it logs through."""
    uri, run_id, full = spec.target.uri, spec.run_id, spec.config
    out = tracking.Outbox()
    out.put("params", lambda: tracking.log_params(uri, run_id, flatten(full)))

    def tag_attempt() -> None:
        before = tracking.client(uri).get_run(run_id).data.tags.get("attempt", "0")
        tracking.set_tags(
            uri,
            run_id,
            {
                **placement,
                "device": str(pick_device(cfg.train.device)),
                "workers": cfg.train.workers,
                "attempt": int(before) + 1,
                "attempt_resumed_at_epoch": resume["epoch"] if resume else 0,
            },
        )

    out.put("tags", tag_attempt)
    if resume is None:
        out.put("config.yaml", lambda: tracking.log_yaml(uri, run_id, full, "config.yaml"))
    else:
        hist = resume["history"]
        out.put("catch-up", lambda: _catch_up(uri, run_id, hist))
    out.flush()
    return out


class _Saver:
    """The trial's per-epoch hook: at every save, the training state saved → the epochs'
    metrics queued to MLflow → Tune told (the order in the module's docstring)."""

    def __init__(
        self,
        spec: TrialSpec,
        cfg: RunConfig,
        store: Results,
        out: tracking.Outbox,
        send: Callable[[dict[str, Any]], None],
        resume: dict[str, Any] | None,
    ) -> None:
        self.spec, self.cfg, self.store, self.out, self.send = spec, cfg, store, out, send
        self.pending: list[dict[str, Any]] = []
        self.capture: list[Callable[[], dict[str, Any]]] = []
        self.last = -math.inf  # the first epoch always saves: a retry never starts from nothing
        self.saved = (resume["epoch"] if resume else 0, time.monotonic())  # last state
        self.first = compare_from(cfg, spec.n_train) if spec.n_train else 1

    def tell(self, row: dict[str, Any]) -> None:
        va = row.get("val_accuracy")
        # no rung value while the trial's curve-changing phase lasts: ASHA compares it from the
        # first rung after (a diverged trial reports 0 at once, so it is cut at the next rung)
        rung = (
            {ASHA_METRIC: va if finite(va) else 0.0}
            if row["epoch"] >= self.first or not finite(va)
            else {}
        )
        out = self.out
        self.send(
            {
                "epoch": row["epoch"],
                **rung,
                "tracking_retries": out.retries,
                "tracking_pending": out.pending,
            }
        )

    def report(self, row: dict[str, Any]) -> None:
        self.pending.append(row)
        now, epoch = time.monotonic(), row["epoch"]
        every = self.spec.space.checkpoint_every
        end = epoch >= self.cfg.train.epochs or not finite(row.get("val_accuracy"))
        cadence = epoch - self.saved[0] >= every.epochs or (
            every.minutes is not None and now - self.saved[1] >= 60 * every.minutes
        )
        # the default cadence (every epoch) is thinned to one save a REPORT_INTERVAL_S for
        # epochs faster than that; a cadence the space sets is kept as set
        default = every.epochs == 1 and every.minutes is None
        throttled = default and now - self.last < REPORT_INTERVAL_S
        due = (cadence and not throttled) or epoch in self.spec.rungs
        if not (due or end):
            return
        if finite(row.get("train_loss")):
            self.store.save_torch(STATE_FILE, self.capture[0]())
            self.saved = (epoch, now)
        self._queue("epochs")
        self.out.flush()
        self.last = time.monotonic()
        self.tell(row)  # ASHA may stop the trial in here (SystemExit): all is saved and queued

    def queue_rest(self) -> None:
        """Epochs the budget grew by (train_longer), a stop rule ended early or a divergence
        left unsent."""
        if self.pending:
            self._queue("last epochs")

    def _queue(self, what: str) -> None:
        rows, (uri, run_id) = list(self.pending), (self.spec.target.uri, self.spec.run_id)
        label = f"{what} {rows[0]['epoch']}-{rows[-1]['epoch']}" if what == "epochs" else what
        self.out.put(
            label, lambda: tracking.log_metric_rows(uri, run_id, rows, [r["epoch"] for r in rows])
        )
        self.pending.clear()


def trial_metrics(spec: TrialSpec, cfg: RunConfig, result: TrainResult) -> dict[str, Any]:
    """What a finished trial (or reference) is judged by: accuracies, sharpness, its times and
    curve, and its standing against the references (`scores`)."""
    metrics: dict[str, Any] = {
        "val_accuracy": result.val_accuracy,
        "train_accuracy": result.train_accuracy,
        "test_accuracy": result.test_accuracy,
        "gap": result.train_accuracy - result.val_accuracy,
        "val_loss": result.val_loss,
        "train_loss": result.train_loss,
        "wall_time_s": result.wall_time_s,
        **result.sharpness,
        "train_time_s": result.train_time_s,
        "measure_time_s": result.measure_time_s,
        "train_cpu_s": result.train_cpu_s,
        "device": result.device,
        "epochs": result.epochs_run,
        "steps": result.steps,
        "threads": result.threads,
        "batch_size": result.batch_size,
        "lr": cfg.train.lr,
        "curve": curve_of(result.history),  # every evaluation: the time to any target
        # the last step's batch and lr (warm start, ramps and lr scaling move them off the config)
        "end_batch_size": result.history[-1].get("batch_size") if result.history else None,
        "end_lr": result.history[-1].get("lr") if result.history else None,
    }
    metrics.update(scores(spec.references, metrics))
    return metrics


def _log_final(
    spec: TrialSpec, out: tracking.Outbox, metrics: dict[str, Any], result: TrainResult
) -> None:
    """The final_* metrics, once (a trial resumed after its end must not log them twice); then
    everything queued is delivered, or the trial fails as the tracking server's loss."""
    uri, run_id = spec.target.uri, spec.run_id
    final = {f"final_{k}": v for k, v in metrics.items() if finite(v)}
    # 1.0 where a measure doubts its own value (final_suspect_<key>)
    final.update({f"final_{k}": v for k, v in suspect_metrics(result.sharpness_details).items()})

    def log_final() -> None:
        if "final_val_accuracy" not in tracking.client(uri).get_run(run_id).data.metrics:
            tracking.log_metrics(uri, run_id, final, step=result.epochs_run)

    out.put("final metrics", log_final)
    if not out.drain(timeout_s=out.limit_s):
        raise tracking.TrackingLost(f"could not log to {uri}: {out.last_error}")
