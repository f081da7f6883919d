"""The search's Tune side: Optuna proposes (ask), Tune runs, `StudySearcher` decides — once —
what became of each trial and writes that one decision to every store.

Trials a previous driver left unfinished are handed out first, with their number, values and
MLflow run, so `--resume` continues them instead of adding new ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback, Stopper
from ray.tune.search import Searcher

from remedies.search.outcome import Decision, Outcome, decide
from remedies.search.progress import Progress
from remedies.search.runtime import INTERRUPT
from remedies.search.space import SearchSpace
from remedies.search.study import Study
from remedies.search.trial import TRIAL_METRICS, run_config
from remedies.stores import tracking
from remedies.stores.results_dir import Results

log = logging.getLogger(__name__)


def directions(space: SearchSpace) -> tuple[list[str], list[str]]:
    if space.scalarize:
        return ["score"], ["max"]
    return [o.name for o in space.objectives], [o.mode for o in space.objectives]


@dataclass
class Stores:
    """Where a search's decisions go: its study, its MLflow experiment and parent run, and the
    folder (or URI) of its trials' saved states."""

    study: Study
    target: tracking.Target
    exp_id: str
    parent: str
    state_root: Results


class StudySearcher(Searcher):
    """Tune's search algorithm, backed by the Optuna study (see the module's docstring)."""

    def __init__(
        self, stores: Stores, space: SearchSpace, progress: Progress, todo: int, threads: int
    ) -> None:
        super().__init__()
        self.stores, self.space, self.progress = stores, space, progress
        self.metrics = directions(space)[0]
        self.threads = threads
        self.resumable = [t.number for t in stores.study.unfinished()]
        self.to_launch = todo
        self.live: dict[str, int] = {}  # Tune trial id → Optuna number
        self.last: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, str] = {}  # Tune trial id → its error's last line (callback)
        self.outbox = tracking.Outbox()  # run closes, held while the server is away
        self.blocked = 0  # 1 while no run can be created for the next trial

    def set_search_properties(self, metric, mode, config, **spec) -> bool:  # type: ignore[no-untyped-def]
        return True  # the objectives come from the space file, not from Tune

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the Optuna study is the searcher's state (resume reads it)."""

    def restore(self, checkpoint_path: str) -> None:
        """See `save`."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next trial: an unfinished one first, else a new one from Optuna. Each step is
        recorded before the next, so a driver killed anywhere in here leaves a trial that the
        resume completes (values re-read, run found by its `trial_number` tag). The trial gets
        its complete, validated run config: it reads no file of the driver's."""
        if self.to_launch <= 0:
            return Searcher.FINISHED  # type: ignore[return-value]  # Tune's "no more" marker
        st, uri = self.stores.study, self.stores.target.uri
        if not self.resumable:
            number, sample = st.ask()
            st.set_attrs(number, {"sample": sample, "state": "running"})
            self.resumable.append(number)
        number = self.resumable[0]
        attrs = st.trial_attrs(number)
        sample = attrs.get("sample") or st.resample(number)
        try:  # the server is away: Tune asks again at its next step
            run_id = attrs.get("mlflow_run_id") or tracking.find_child_run(
                uri, self.stores.exp_id, self.stores.parent, number
            )
            if run_id is None:
                tags = {"search": st.name, "trial_number": str(number)}
                run_id = tracking.start_run(
                    uri, self.stores.exp_id, f"trial-{number:04d}", tags, parent=self.stores.parent
                )
            else:
                tracking.client(uri).update_run(run_id, status="RUNNING")
        except Exception as e:
            log.debug("no run for trial %d yet: %s", number, e)
            self.outbox.retries += 1
            self.blocked = 1  # shown on the status line until a run can be created
            return None
        self.blocked = 0
        self.resumable.pop(0)
        st.set_attrs(
            number,
            {
                "sample": sample,
                "mlflow_run_id": run_id,
                "tune_trial_id": trial_id,
                "state": "running",
            },
        )
        tags = {"status": "running", "tune_trial_id": trial_id}
        self.outbox.put("running", lambda: tracking.set_tags(uri, run_id, tags))
        self.live[trial_id] = number
        self.to_launch -= 1
        config = run_config(self.space, sample, self.threads)
        return {"number": number, "run_id": run_id, "sample": sample, "config": config}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.last[trial_id] = result

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id not in self.live or INTERRUPT.requested:
            return  # interrupted: stopped, not finished (interrupt_all decides it)
        res = result or self.last.get(trial_id) or {}
        why = None
        if error:
            why = self.errors.pop(trial_id, "") or "crashed (see the run's 'error' tag)"
        self.record(trial_id, decide(res, self.metrics, error=why), res)

    def record(self, trial_id: str, d: Decision, res: dict[str, Any]) -> None:
        """Write the one decision to Optuna, MLflow, the progress line and the state dir."""
        st, space = self.stores.study, self.space
        number = self.live.pop(trial_id)
        self.last.pop(trial_id, None)
        keep = ("val_accuracy", "train_accuracy", "test_accuracy", "gap", "diverged")
        attrs: dict[str, Any] = {k: res[k] for k in keep if res.get(k) is not None}
        if res.get("final"):
            attrs["config"] = json.loads(res["config_json"])
            attrs["sharpness"] = json.loads(res["sharpness_json"])
            attrs["sharpness_suspect"] = json.loads(res.get("sharpness_suspect_json", "{}"))
            attrs["objectives"] = {m: res.get(m) for m in self.metrics}
            attrs["metrics"] = {k: res.get(k) for k in TRIAL_METRICS}
            attrs["curve"] = json.loads(res.get("curve_json", "[]"))
        if space.constraints:  # Study.tell hands them to Optuna (≤ 0: feasible)
            attrs["constraints"] = [
                c.violation(res.get(c.name) if res.get("final") else None)
                for c in space.constraints
            ]
        st.tell(number, d, attrs)
        run_id = st.trials()[number].user_attrs["mlflow_run_id"]
        uri = self.stores.target.uri
        self.outbox.put(f"close run of trial {number}", lambda: close_trial_run(uri, run_id, d))
        self.outbox.flush()
        if d.outcome.finished:
            try:
                self.stores.state_root.child(f"{number:05d}").remove()
            except OSError as e:  # the state is only a resume aid once decided
                log.warning("could not remove the saved state of trial %d: %s", number, e)
        self.progress.decided(number, d, res, len(self.live), self.to_launch)

    def interrupt_all(self) -> None:
        for trial_id in list(self.live):
            d = decide(self.last.get(trial_id), self.metrics, interrupted=True)
            self.record(trial_id, d, {})

    def tracking_state(self) -> tuple[int, int]:
        """(retries, unsent writes) of the driver and of every running trial."""
        rows = self.last.values()
        retries = self.outbox.retries + sum(int(r.get("tracking_retries", 0)) for r in rows)
        unsent = self.blocked + self.outbox.pending
        unsent += sum(int(r.get("tracking_pending", 0)) for r in rows)
        return retries, unsent


def close_trial_run(uri: str, run_id: str, d: Decision) -> None:
    """The MLflow side of a decision: the run's status and tags say what Optuna says."""
    tags = {
        "status": d.outcome.value,
        "pruned": d.outcome == Outcome.PRUNED,
        "diverged": d.outcome == Outcome.DIVERGED,
        "epochs_run": d.epochs,
        **({"failure": d.reason[:500]} if d.reason else {}),
    }
    tracking.close_run(uri, run_id, d.outcome.mlflow_status, tags)


def close_decided_runs(st: Study, uri: str) -> int:
    """A driver killed between telling Optuna and closing the run leaves a decided trial whose
    run is still RUNNING: close it now from the decision Optuna recorded (resume, start)."""
    n = 0
    for t in st.trials():
        run_id = t.user_attrs.get("mlflow_run_id")
        if t.state.is_finished() and run_id and tracking.run_status(uri, run_id) == "RUNNING":
            d = Decision(
                Outcome(t.user_attrs["state"]),
                None,
                int(t.user_attrs["epochs_run"]),
                t.user_attrs.get("error", ""),
            )
            close_trial_run(uri, run_id, d)
            n += 1
    return n


class Ticker(Callback):
    """Each scheduler step: retry held tracking writes and refresh the progress line."""

    def __init__(self, searcher: StudySearcher) -> None:
        self.searcher = searcher

    def on_step_end(self, iteration, trials, **info):  # type: ignore[no-untyped-def]
        s = self.searcher
        try:
            s.outbox.flush()
        except tracking.TrackingLost as e:
            log.error("%s", e)
        running = sum(t.status == "RUNNING" for t in trials)
        pending = sum(t.status == "PENDING" for t in trials)
        retries, unsent = s.tracking_state()
        s.progress.tick(running, pending, retries=retries, unsent=unsent)


class TrialErrors(logging.Handler):
    """Keeps the last line of each failed trial's error (`OSError: [Errno 28] No space left on
    device`) for its one-line decision. Tune logs every failed attempt with its traceback
    before it tells the searcher; the tracebacks themselves go to the search's log file.

    Why a log handler and not Tune's own hook (Ray 2.60, `TuneController._process_trial_failure`):
    a `Searcher` is told `on_trial_complete(trial_id, error=True)` with no exception and no
    `Trial`, and `Callback.on_trial_error`, which gets the `Trial`, runs only *after* that call,
    so the decision the searcher writes would not have the error's text yet. Tune's record of
    the failure is the one place that has it in time."""

    def __init__(self, searcher: StudySearcher) -> None:
        super().__init__(level=logging.ERROR)
        self.searcher = searcher

    def emit(self, record: logging.LogRecord) -> None:
        msg = str(record.msg)
        if not msg.startswith("Trial task failed for trial") or not record.exc_info:
            return
        name = msg.rsplit(" ", 1)[-1]
        exc = record.exc_info[1]
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        for trial_id in self.searcher.live:
            if name.endswith(trial_id):
                self.searcher.errors[trial_id] = (lines[-1] if lines else type(exc).__name__)[:300]


class InterruptStopper(Stopper):
    """Ends Tune's fit() once Ctrl-C or SIGTERM came, even if the KeyboardInterrupt was
    swallowed by library code (see `runtime.Interrupt`)."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return INTERRUPT.requested

    def stop_all(self) -> bool:
        return INTERRUPT.requested
