"""The invariant every fault test checks: the stores agree trial for trial, with exact counts."""

from __future__ import annotations

from collections import Counter

from remedies.results.report import load_study
from remedies.search.outcome import Outcome
from remedies.stores import tracking

EXPECTED_STATUS = {o.value: o.mlflow_status for o in Outcome}


def assert_consistent(storage: str, uri: str, experiment: str, name: str, n: int) -> dict:
    """Exactly `n` Optuna trials and `n` child runs, one per trial, none RUNNING, each run's
    status and tag equal to its trial's decision, and no metric step logged twice."""
    study = load_study(name, storage)
    trials = study.trials
    assert len(trials) == n, [t.state for t in trials]
    assert all(t.state.is_finished() for t in trials), [t.state for t in trials]
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert tracking.run_status(uri, parent) == "FINISHED"
    runs = {r.info.run_id: r for r in tracking.child_runs(uri, experiment, parent)}
    assert len(runs) == n, f"{len(runs)} child runs for {n} trials"
    linked = [t.user_attrs["mlflow_run_id"] for t in trials]
    assert sorted(linked) == sorted(runs), "trials and runs are not one to one"
    for t in trials:
        r = runs[t.user_attrs["mlflow_run_id"]]
        state = t.user_attrs["state"]
        assert Outcome(state).optuna_state == t.state.name, (t.number, state, t.state)
        assert r.data.tags["status"] == state, (t.number, r.data.tags["status"], state)
        assert r.info.status == EXPECTED_STATUS[state], (t.number, r.info.status, state)
        steps = [s for s, _ in tracking.metric_history(uri, r.info.run_id, "epoch_time_s")]
        dup = [s for s, c in Counter(steps).items() if c > 1]
        assert not dup, f"trial {t.number}: metric steps {dup} logged twice"
        assert steps == sorted(steps) and (not steps or steps == list(range(1, max(steps) + 1))), (
            f"trial {t.number}: steps {steps}"
        )
        assert max(steps, default=0) == t.user_attrs["epochs_run"], (t.number, steps)
    return {"study": study, "runs": runs}
