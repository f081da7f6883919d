"""A finished (or running) search's trials as flat rows, read from its Optuna study alone: the
study outlives the driver, so every report and export starts from these rows."""

from __future__ import annotations

from typing import Any

import optuna


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One flat row per trial from the study (survives the driver): state, objectives, extras."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        u = t.user_attrs
        # an interrupted trial stays RUNNING in Optuna (to be resumed); say what it is
        state = "INTERRUPTED" if u.get("state") == "interrupted" else t.state.name
        row = {
            "number": t.number,
            "state": state,
            "tune_trial": u.get("tune_trial_id"),
            "mlflow_run": u.get("mlflow_run_id"),
            "epochs": u.get("epochs_run"),
            "val_accuracy": u.get("val_accuracy"),
            "train_accuracy": u.get("train_accuracy"),
            "test_accuracy": u.get("test_accuracy"),
            "diverged": u.get("diverged"),
            "sharpness": u.get("sharpness") or {},
            "objectives": u.get("objectives") or {},
            "params": dict(t.params),
            "config": u.get("config"),
            "metrics": u.get("metrics") or {},
            "curve": u.get("curve"),  # None: a trial from before curves were stored
            "constraints": u.get("constraints"),
        }
        rows.append(row)
    return rows
