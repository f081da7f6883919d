"""Closing a search: its front, plots and answer logged to the search's parent MLflow run.

Why in `search/`: closing writes (MLflow artifacts, metrics and the answer tag), and only the
search writes; `results/` computes what is logged here from the finished study and writes
nothing to MLflow or the study itself.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import optuna

from remedies.results import evidence_report
from remedies.results.answer import answer_line
from remedies.results.batch_frontier import parent_metrics
from remedies.results.report import front_rows, front_table, write_artifacts
from remedies.stores import tracking

log = logging.getLogger(__name__)


def learning_curves(uri: str, rows: list[dict[str, Any]]) -> dict[int, list[tuple[float, float]]]:
    """Each trial's (epoch, val_accuracy) from its MLflow run, where the per-epoch history is."""

    curves: dict[int, list[tuple[float, float]]] = {}
    for r in rows:
        if not r.get("mlflow_run"):
            continue
        try:
            hist = tracking.metric_history(uri, r["mlflow_run"], "val_accuracy")
        except Exception as e:  # noqa: BLE001 - one unreadable run must not cost the other figures
            log.warning("no learning curve for trial %s: %s", r["number"], e)
            continue
        curves[r["number"]] = [(float(step), v) for step, v in hist]
    return curves


def finish_search(study: optuna.Study, uri: str, parent: str, wall: float) -> dict[str, Any]:
    """Log the front and plots to the parent run; return a summary for the CLI."""

    rows, front = front_rows(study)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    try:
        with tempfile.TemporaryDirectory() as d:
            curves = learning_curves(uri, rows)
            tracking.log_files(uri, parent, write_artifacts(study, Path(d), curves))
        metrics = {
            "trials": len(rows),
            "pareto_size": len(front),
            "wall_time_s": wall,
            **{f"trials_{k.lower()}": v for k, v in counts.items()},
            **parent_metrics(rows, study.user_attrs.get("references")),
            **evidence_report.parent_metrics(rows, study.user_attrs["metrics"]),
        }
        tracking.log_metrics(uri, parent, metrics)
        if refs := study.user_attrs.get("references"):
            tracking.set_tags(uri, parent, {"answer": answer_line(rows, refs)[:4000]})
    except Exception as e:  # artifacts are a convenience; the study already holds the results
        log.warning("could not log the search artifacts to MLflow: %s", e)

    refs = study.user_attrs.get("references")
    return {
        "name": study.study_name,
        "trials": len(rows),
        "counts": counts,
        "front": front,
        "wall_time_s": wall,
        "table": front_table(study, front),
        "answer": answer_line(rows, refs) if refs else "",
    }
