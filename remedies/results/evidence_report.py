"""The sharpness evidence as the user meets it: a report section, a warning on the answer line,
metrics for the search's parent run, and a JSON file and a figure beside the other artifacts.

Why apart from `sharpness_evidence`: that module computes; this one words and writes. Each entry
point takes the trial rows (and objective names) and returns nothing to add — an empty list, an
empty string, an empty dict — for a search without a sharpness objective, so its callers need no
condition of their own.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from remedies.results.sharpness_evidence import (
    CONFIDENCE,
    MIN_TRIALS,
    Evidence,
    Pairs,
    Tau,
    evidence,
)

JSON_FILE = "sharpness_evidence.json"
PLOT_FILE = "sharpness_vs_test_accuracy.png"

_VERDICT = {
    "predicts": "sharpness predicted generalisation in this search: flatter trials were more "
    "accurate (the interval of τ lies below 0)",
    "no evidence": "sharpness did NOT predict generalisation in this search: the interval of "
    "τ(sharpness, test accuracy) includes 0",
    "reversed": "sharpness did NOT predict generalisation in this search: sharper trials were "
    "MORE accurate (the interval of τ lies above 0) — minimising it works against accuracy",
    "not enough trials": f"sharpness is unverified in this search: not enough trials (fewer than "
    f"{MIN_TRIALS} completed with distinct values)",
}


_SHORT = {  # the answer line's version: one clause
    "no evidence": "sharpness did not predict test accuracy in this search (its τ interval "
    "includes 0)",
    "reversed": "sharpness did not predict test accuracy in this search (sharper trials were "
    "more accurate)",
}


def objective_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The objectives, read off the trials themselves (each COMPLETE row names its own)."""
    names: dict[str, None] = {}
    for r in rows:
        if r.get("state") == "COMPLETE":
            names.update(dict.fromkeys(r.get("objectives") or {}))
    return list(names)


def answer_warning(rows: Sequence[dict[str, Any]]) -> str:
    """The answer line's addition: '' where sharpness predicted test accuracy (or the search has
    no sharpness objective), else one clause saying it did not."""
    ev = evidence(rows, objective_names(rows))
    if ev is None or not ev.warns:
        return ""
    if ev.verdict == "not enough trials":
        return f" — WARNING: sharpness is unverified in this search ({_tau(ev.tau_accuracy)})"
    return f" — WARNING: {_SHORT[ev.verdict]}: {_tau(ev.tau_accuracy)}"


AnswerLine = Callable[[list[dict[str, Any]], dict[str, Any] | None], str]


def with_sharpness_warning(answer_line: AnswerLine) -> AnswerLine:
    """`answer_line` with `answer_warning` appended: a decorator, so the answer's own wording
    stays in one function and the warning in this module."""

    @functools.wraps(answer_line)
    def line(rows: list[dict[str, Any]], refs: dict[str, Any] | None) -> str:
        return answer_line(rows, refs) + answer_warning(rows)

    return line


def section(rows: Sequence[dict[str, Any]], objectives: Iterable[str]) -> list[str]:
    """The report's lines; none without a sharpness objective."""
    ev = evidence(rows, objectives)
    if ev is None:
        return []
    pct = f"{100 * CONFIDENCE:.0f} %"
    out = [
        "",
        f"Sharpness evidence: did {ev.key} predict generalisation in this search?",
        f"  ({len(ev.trials)} completed trials; Kendall τ-b, {pct} bootstrap interval over trials)",
        f"  τ(sharpness, test accuracy)  {_tau(ev.tau_accuracy)}   (< 0: flatter = more accurate)",
        f"  τ(sharpness, train − test)   {_tau(ev.tau_gap)}   (> 0: sharper = larger gap)",
        f"  pairs: the flatter trial was the more accurate in {_pairs(ev.pairs)}",
    ]
    if ev.one_remedy:
        out.append(
            "  pairs differing in one remedy only (on/off; the flatter was the more accurate):"
        )
        for name, pr in ev.one_remedy.items():
            out.append(
                f"    {name:<16} {_pairs(pr)}; with it sharper and more accurate: "
                f"{pr.on_sharper_better}"
            )
    out.append(
        "  confounders, τ with sharpness: "
        + ", ".join(f"{k} {_sig(v)}" for k, v in ev.confounders.items())
    )
    out.append(
        f"  {'trial':>5} {'remedies':<24} {'sharpness':>10} {'test_acc':>8} {'gap':>6} "
        f"{'batch':>6} {'lr':>9} {'lr/B':>9} {'train_loss':>10}"
    )
    for p in sorted(ev.trials, key=lambda p: p.sharpness):
        out.append(
            f"  {p.number:>5} {p.label[:24]:<24} {p.sharpness:>10.4g} {p.test_accuracy:>8.2f} "
            f"{_g(p.gap, 6, '.2f')} {_g(p.batch_size, 6, '.0f')} {_g(p.lr, 9, '.3g')} "
            f"{_g(p.lr_per_batch, 9, '.3g')} {_g(p.train_loss, 10, '.4g')}"
            + ("  * sharper but more accurate" if p.sharper_but_more_accurate else "")
        )
    out.append(
        "  (* above the search's median in both sharpness and test accuracy; batch and lr at "
        "the last step)"
    )
    out.append(("  WARNING: " if ev.warns else "  ") + _VERDICT[ev.verdict])
    return out


def parent_metrics(rows: Sequence[dict[str, Any]], objectives: Iterable[str]) -> dict[str, float]:
    """τ values, intervals and pair fractions as MLflow metrics of the parent run (finite ones;
    `sharpness_predicts` 1/0)."""
    ev = evidence(rows, objectives)
    if ev is None:
        return {}
    vals = {
        "sharpness_evidence_trials": float(len(ev.trials)),
        "sharpness_predicts": float(not ev.warns),
        "sharpness_pairs_agree_fraction": ev.pairs.fraction,
    }
    for name, t in (("test_accuracy", ev.tau_accuracy), ("gap", ev.tau_gap)):
        vals |= {
            f"sharpness_tau_{name}": t.tau,
            f"sharpness_tau_{name}_lo": t.lo,
            f"sharpness_tau_{name}_hi": t.hi,
        }
    return {k: v for k, v in vals.items() if math.isfinite(v)}


def as_json(ev: Evidence) -> dict[str, Any]:
    """Everything in the section, machine-readable (NaN as null)."""

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    def tau(t: Tau) -> dict[str, Any]:
        return {"tau": clean(t.tau), "lo": clean(t.lo), "hi": clean(t.hi), "n": t.n}

    def pairs(p: Pairs) -> dict[str, Any]:
        return {"agree": p.agree, "n": p.n, "ties": p.ties, "fraction": clean(p.fraction)}

    return {
        "sharpness": ev.key,
        "confidence": CONFIDENCE,
        "verdict": ev.verdict,
        "warning": _VERDICT[ev.verdict] if ev.warns else None,
        "tau_test_accuracy": tau(ev.tau_accuracy),
        "tau_gap": tau(ev.tau_gap),
        "pairs": pairs(ev.pairs),
        "one_remedy_pairs": {
            k: {**pairs(p), "on_sharper_and_more_accurate": p.on_sharper_better}
            for k, p in ev.one_remedy.items()
        },
        "confounder_tau": {k: clean(v) for k, v in ev.confounders.items()},
        "trials": [
            {
                "number": p.number,
                "remedies": list(p.remedies),
                "sharpness": p.sharpness,
                "test_accuracy": p.test_accuracy,
                "gap": p.gap,
                "batch_size": p.batch_size,
                "lr": p.lr,
                "lr_per_batch": p.lr_per_batch,
                "train_loss": p.train_loss,
                "sharper_but_more_accurate": p.sharper_but_more_accurate,
            }
            for p in ev.trials
        ],
    }


def write_files(
    rows: Sequence[dict[str, Any]], objectives: Iterable[str], d: Path, title: str = ""
) -> list[Path]:
    """sharpness_evidence.json and sharpness_vs_test_accuracy.png in folder `d`; none without a
    sharpness objective."""
    from remedies.results.plots import plot_sharpness_vs_accuracy

    ev = evidence(rows, objectives)
    if ev is None:
        return []
    (d / JSON_FILE).write_text(json.dumps(as_json(ev), indent=2) + "\n")
    pts = [(p.sharpness, p.test_accuracy, p.label, p.sharper_but_more_accurate) for p in ev.trials]
    subtitle = f"{title}: " if title else ""
    fig = plot_sharpness_vs_accuracy(
        pts, xlabel=ev.key, title=f"{subtitle}τ(sharpness, test acc) {_tau(ev.tau_accuracy)}"
    )
    fig.savefig(d / PLOT_FILE, dpi=100)
    return [d / JSON_FILE, d / PLOT_FILE]


def _tau(t: Tau) -> str:
    if not t.defined:
        return f"not enough trials (n = {t.n})"
    return f"τ = {t.tau:+.2f} [{t.lo:+.2f}, {t.hi:+.2f}] (n = {t.n})"


def _pairs(p: Pairs) -> str:
    if not p.n:
        return f"no untied pair ({p.ties} tied)"
    return f"{p.agree} of {p.n} pairs ({p.fraction:.2f})" + (f", {p.ties} tied" if p.ties else "")


def _sig(v: float) -> str:
    return f"{v:+.2f}" if math.isfinite(v) else "n/a"


def _g(v: float | None, w: int, spec: str) -> str:
    return f"{v:>{w}{spec}}" if v is not None else f"{'':>{w}}"
