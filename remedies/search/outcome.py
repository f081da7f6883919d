"""A trial's outcome: one enum, decided once, read by everything else.

Why one place: Optuna's state, MLflow's run status and tags, the progress line, the summary and
the exit code used to be derived separately from Tune's callbacks and disagreed (a trial stopped
by ASHA could be "complete" for one and "pruned" for another). Now the driver calls `decide`
exactly once per trial and every store is written from its answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from remedies.stats import finite


class Outcome(StrEnum):
    RUNNING = "running"  # launched, not decided yet (a dead driver leaves trials here)
    COMPLETE = "complete"  # trained to the end; every objective finite
    PRUNED = "pruned"  # stopped early by the scheduler (ASHA)
    FAILED = "failed"  # crashed past its retries, objectives not finite, or tracking lost
    DIVERGED = "diverged"  # a NaN/inf loss ended training
    INTERRUPTED = "interrupted"  # the driver stopped (Ctrl-C); `--resume` continues the trial

    @property
    def optuna_state(self) -> str:
        """Name of the Optuna TrialState it is told as. INTERRUPTED stays RUNNING: Optuna has no
        such state, and a RUNNING trial is exactly what `--resume` picks up again."""
        return {
            "complete": "COMPLETE",
            "pruned": "PRUNED",
            "failed": "FAIL",
            "diverged": "FAIL",
        }.get(self.value, "RUNNING")

    @property
    def mlflow_status(self) -> str:
        return {
            "complete": "FINISHED",
            "pruned": "KILLED",
            "interrupted": "KILLED",
            "running": "RUNNING",
        }.get(self.value, "FAILED")

    @property
    def finished(self) -> bool:
        return self not in (Outcome.RUNNING, Outcome.INTERRUPTED)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    values: list[float] | None  # the objectives Optuna is told (COMPLETE only)
    epochs: int
    reason: str = ""  # why a trial failed, for the run's tags and the summary


def decide(
    result: dict[str, Any] | None,
    metrics: list[str],
    *,
    error: str | None = None,
    interrupted: bool = False,
) -> Decision:
    """The outcome of one trial from its last reported result.

    `result` is the last row the trial reported (its final row carries `final: 1`), `error` the
    reason Tune gave up on it after its retries, `interrupted` whether the driver is stopping.
    """
    result = result or {}
    epochs = int(result.get("epochs_run") or result.get("epoch") or 0)
    if result.get("final"):
        if result.get("diverged"):
            return Decision(Outcome.DIVERGED, None, epochs, "loss became NaN/inf")
        vals = [result.get(m) for m in metrics]
        if all(finite(v) for v in vals):
            return Decision(Outcome.COMPLETE, [float(v) for v in vals], epochs)  # type: ignore[arg-type]
        bad = [m for m, v in zip(metrics, vals, strict=True) if not finite(v)]
        return Decision(Outcome.FAILED, None, epochs, f"objective not finite: {', '.join(bad)}")
    if error is not None:
        return Decision(Outcome.FAILED, None, epochs, error)
    if interrupted:
        return Decision(Outcome.INTERRUPTED, None, epochs)
    return Decision(Outcome.PRUNED, None, epochs)
