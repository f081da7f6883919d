"""Pareto front, knee, hypervolume, the text report, and the parent run's artifacts.

Everything here reads the Optuna study only (its trials carry their measured results as user
attributes), so `remedies report` and `remedies export` work after the driver is gone.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.exc import SQLAlchemyError

from remedies.errors import ConfigError
from remedies.results import evidence_report
from remedies.results.answer import answer_line, references_text
from remedies.results.baseline_plots import plot_gap_vs_speedup
from remedies.results.batch_frontier import frontier_text, plot_batch_frontier
from remedies.results.measures_report import measures_section
from remedies.results.plots import (
    plot_accuracy_vs_sharpness,
    plot_learning_curves,
    plot_pareto,
    plot_remedy_matrix,
)
from remedies.results.rows import trial_rows
from remedies.stats import finite, kendall_tau_p
from remedies.stores.optuna_storage import open_storage, storage_exists

log = logging.getLogger(__name__)


def load_study(name: str, storage: str) -> optuna.Study:
    """The study of search `name`. An absent database is refused before Optuna opens it, since
    opening creates it: `report`/`export` of a mistyped path must not leave an empty file."""

    if not storage_exists(storage):
        raise ConfigError(
            "--storage",
            f"no such study database {storage}; a search creates it "
            "(remedies search SPACE --storage PATH)",
        )
    try:
        db = open_storage(storage)
        names = [s.study_name for s in optuna.get_all_study_summaries(db)]
    except (SQLAlchemyError, RuntimeError, ValueError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        msg = f"cannot open {storage} as a study database ({why})"
        raise ConfigError("--storage", msg) from None
    if name not in names:
        shown = ", ".join(names[-10:]) or "none"
        raise ConfigError("NAME", f"no search named {name!r} in {storage}; known: {shown}")
    return optuna.load_study(study_name=name, storage=db)


def objectives_of(study: optuna.Study) -> list[tuple[str, str]]:
    return list(zip(study.user_attrs["metrics"], study.user_attrs["modes"], strict=True))


def point(row: dict[str, Any], objs: list[tuple[str, str]]) -> list[float] | None:
    """Objective values of a COMPLETE trial, all as 'larger is better' (min objectives negated)."""
    if row["state"] != "COMPLETE":
        return None
    out = []
    for m, mode in objs:
        v = value_of(row, m)
        if not finite(v):
            return None
        out.append(v if mode == "max" else -v)
    return out


def value_of(row: dict[str, Any], metric: str) -> float | None:
    if metric in row["objectives"]:
        return row["objectives"][metric]
    if metric in row["sharpness"]:
        return row["sharpness"][metric]
    if metric in (row.get("metrics") or {}):
        return row["metrics"][metric]
    return row.get(metric)


def _objective(row: dict[str, Any], metric: str) -> float:
    """`value_of` an objective of a row with a `point` (so all its objectives are finite)."""
    v = value_of(row, metric)
    assert finite(v), (row["number"], metric, v)
    return v


def pareto(points: list[list[float]]) -> list[int]:
    """Indices of the non-dominated points (all objectives maximised)."""
    front = []
    for i, p in enumerate(points):
        dominated = any(
            all(a >= b for a, b in zip(q, p, strict=True)) and q != p
            for j, q in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def knee(points: list[list[float]]) -> int:
    """The front point closest to the utopia point after min-max normalisation of each objective."""
    lo = [min(c) for c in zip(*points, strict=True)]
    hi = [max(c) for c in zip(*points, strict=True)]

    def dist(p: list[float]) -> float:
        return math.sqrt(
            sum(
                ((h - v) / (h - low) if h > low else 0.0) ** 2
                for v, low, h in zip(p, lo, hi, strict=True)
            )
        )

    return min(range(len(points)), key=lambda i: dist(points[i]))


def hypervolume_2d(points: list[list[float]], ref: list[float]) -> float:
    """Area dominated by `points` (maximised) above the reference point; 2 objectives."""
    pts = sorted((p for p in points if p[0] > ref[0] and p[1] > ref[1]), key=lambda p: -p[0])
    hv, best_y = 0.0, ref[1]
    for x, y in pts:
        if y > best_y:
            hv += (x - ref[0]) * (y - best_y)
            best_y = y
    return hv


def front_rows(study: optuna.Study) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(all trial rows, Pareto rows), the front sorted by the first objective, best first."""
    rows = trial_rows(study)
    objs = objectives_of(study)
    # with constraints, the front is that of the feasible trials (Optuna's convention too)
    done = [(r, p) for r in rows if (p := point(r, objs)) is not None and feasible(r)]
    idx = pareto([p for _, p in done])
    front = sorted((done[i][0] for i in idx), key=lambda r: -(point(r, objs) or [0])[0])
    return rows, front


def feasible(row: dict[str, Any]) -> bool:
    """A trial satisfies every constraint of its search (trials of unconstrained searches do)."""
    c = row.get("constraints")
    return c is None or all(v <= 0 for v in c)


def pick(study: optuna.Study, how: str) -> list[dict[str, Any]]:
    rows, front = front_rows(study)
    if not front:
        raise ConfigError("NAME", f"search {study.study_name!r} has no completed trial to export")
    objs = objectives_of(study)
    if how == "pareto":
        return front
    if how == "best-accuracy":
        key = next((m for m, _ in objs if m == "val_accuracy"), objs[0][0])
        return [max(front, key=lambda r: value_of(r, key) or -math.inf)]
    return [front[knee([point(r, objs) for r in front])]]  # type: ignore[misc]


# ------------------------------------------------------------------------------------ text


def _fmt(v: Any, w: int = 9) -> str:
    if isinstance(v, float):
        return f"{v:{w}.4g}"
    return f"{'' if v is None else v!s:>{w}}"


def front_table(study: optuna.Study, front: list[dict[str, Any]]) -> str:
    objs = objectives_of(study)
    cols = " ".join(f"{m[:22]:>22}" for m, _ in objs)
    # beside the objectives: what the user decides on (test accuracy, speed against SB)
    extra = [
        m
        for m in ("val_accuracy", "test_accuracy", "speedup_vs_sb", "gap_closed")
        if m not in dict(objs)
    ]
    head = f"{'trial':>6} {cols} " + " ".join(f"{m[:13]:>13}" for m in extra) + "  params"
    lines = [head]
    for r in front:
        vals = " ".join(f"{_num(value_of(r, m)):>22.5g}" for m, _ in objs)
        more = " ".join(f"{_num(value_of(r, m)):>13.4g}" for m in extra)
        params = ", ".join(f"{k}={_short(v)}" for k, v in r["params"].items())
        lines.append(f"{r['number']:>6} {vals} {more}  {params}")
    return "\n".join(lines)


def _num(v: Any) -> float:
    return float(v) if finite(v) else float("nan")


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def kendall(study: optuna.Study) -> list[tuple[str, float, float, int]]:
    """Per sharpness measure: Kendall τ (and p) between the measure and the generalization gap
    (train − val accuracy, points) over the completed trials — does sharpness track the gap?"""
    rows = [r for r in trial_rows(study) if r["state"] == "COMPLETE"]
    keys = sorted({k for r in rows for k in r["sharpness"]})
    out = []
    for k in keys:
        pairs = [
            (r["sharpness"][k], r["train_accuracy"] - r["val_accuracy"])
            for r in rows
            if finite(r["sharpness"].get(k))
            and finite(r["train_accuracy"])
            and finite(r["val_accuracy"])
        ]
        if len(pairs) >= 3:
            tau, p = kendall_tau_p([a for a, _ in pairs], [b for _, b in pairs])
            out.append((k, tau, p, len(pairs)))
        else:
            out.append((k, float("nan"), float("nan"), len(pairs)))
    return out


def text_report(study: optuna.Study) -> str:
    rows, front = front_rows(study)
    objs = objectives_of(study)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    out = [
        f"search {study.study_name}: {len(rows)} trials ("
        + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()))
        + ")",
        "objectives: " + ", ".join(f"{m} ({mode})" for m, mode in objs),
        "",
        f"{'trial':>6} {'state':>9} {'epochs':>6} {'val_acc':>9} {'train_acc':>9} "
        f"{'test_acc':>9} {'sharpness':>10} {'× SB':>6}  params",
    ]
    sharp_key = next(
        (m for m, _ in objs if m not in ("val_accuracy", "train_accuracy", "test_accuracy", "gap")),
        None,
    )
    for r in rows:
        s = r["sharpness"].get(sharp_key) if sharp_key else None
        params = ", ".join(f"{k}={_short(v)}" for k, v in r["params"].items())
        out.append(
            f"{r['number']:>6} {r['state'].lower():>9} {_fmt(r['epochs'], 6)} "
            f"{_fmt(r['val_accuracy'])} {_fmt(r['train_accuracy'])} "
            f"{_fmt(r['test_accuracy'])} {_fmt(s, 10)} "
            f"{_fmt(value_of(r, 'speedup_vs_sb'), 6)}  {params}"
        )

    refs = study.user_attrs.get("references")
    cons = study.user_attrs.get("constraints") or []
    out += ["", *references_text(refs), ""]
    if cons:
        shown = ", ".join(f"{c['name']} {c['op']} {c['value']:g}" for c in cons)
        out.append(f"constraints: {shown} (the front holds the feasible trials)")
    out += [
        f"Pareto front ({len(front)} trials):",
        front_table(study, front),
        "",
        *frontier_text(rows, refs),
        "",
        answer_line(rows, refs),
        "",
        "How well each sharpness measure tracked the generalization gap (train − val accuracy)",
        "across the completed trials (Kendall τ; +1 = sharper always meant a larger gap):",
    ]
    for k, tau, p, n in kendall(study):
        out.append(f"  {k:<28} τ = {tau:+.3f}  (p = {p:.3g}, n = {n})")
    out += evidence_report.section(rows, [m for m, _ in objs])  # did sharpness predict?
    out.append(measures_section(study))  # every measure side by side, suspect values marked
    return "\n".join(out)


# ------------------------------------------------------------------------- parent artifacts


def write_artifacts(
    study: optuna.Study, d: Path, curves: dict[int, list[tuple[float, float]]] | None = None
) -> list[Path]:
    """pareto.png, accuracy_vs_sharpness.png (all trials), remedies_on_front.png, pareto.csv and,
    given each trial's (epoch, val_accuracy) `curves`, learning_curves.png in folder `d`."""
    rows, front = front_rows(study)
    objs = objectives_of(study)
    figs: dict[str, Any] = {}
    if len(objs) >= 2:
        (mx, _), (my, _) = objs[0], objs[1]
        done = [(_objective(r, my), _objective(r, mx)) for r in rows if point(r, objs) is not None]
        fr = sorted(front, key=lambda r: _objective(r, my))
        figs["pareto.png"] = plot_pareto(
            done,
            [(_objective(r, my), _objective(r, mx), r["number"]) for r in fr],
            xlabel=my,
            ylabel=mx,
            title=study.study_name,
        )
    skeys = sorted({k for r in rows for k in r["sharpness"]})
    series = {
        k: [
            (r["sharpness"][k], r["val_accuracy"])
            for r in rows
            if finite(r["sharpness"].get(k)) and finite(r["val_accuracy"])
        ]
        for k in skeys
    }
    figs["accuracy_vs_sharpness.png"] = plot_accuracy_vs_sharpness(series)
    refs = study.user_attrs.get("references")
    if refs:
        figs["gap_vs_speedup.png"] = plot_gap_vs_speedup(rows, refs, study.study_name)
        if refs.get("target"):
            figs["batch_frontier.png"] = plot_batch_frontier(rows, refs, study.study_name)
    if curves is not None:
        figs["learning_curves.png"] = plot_learning_curves(curves, [r["number"] for r in front])
    searched = list((study.user_attrs.get("space") or {}).get("remedies") or {})
    used = [set((r["config"] or {}).get("remedies", {})) for r in front]
    names = sorted({*searched, *(n for u in used for n in u)})
    on = [[n in u for n in names] for u in used]
    figs["remedies_on_front.png"] = plot_remedy_matrix([r["number"] for r in front], names, on)
    paths = [_pareto_csv(front, objs, d / "pareto.csv")]
    for name, fig in figs.items():
        fig.savefig(d / name, dpi=100)
        paths.append(d / name)
    if refs:
        (d / "answer.txt").write_text(answer_line(rows, refs) + "\n")
        paths.append(d / "answer.txt")
    paths += evidence_report.write_files(rows, [m for m, _ in objs], d, study.study_name)
    return paths


def _pareto_csv(front: list[dict[str, Any]], objs: list[tuple[str, str]], path: Path) -> Path:
    """The front as a table: trial, objectives, accuracies, MLflow run and parameters."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["trial", *[m for m, _ in objs], "train_accuracy", "test_accuracy", "mlflow_run_id",
             "params"]
        )  # fmt: skip
        for r in front:
            w.writerow(
                [
                    r["number"],
                    *[value_of(r, m) for m, _ in objs],
                    r["train_accuracy"],
                    r["test_accuracy"],
                    r["mlflow_run"],
                    "; ".join(f"{k}={v}" for k, v in r["params"].items()),
                ]
            )
    return path
