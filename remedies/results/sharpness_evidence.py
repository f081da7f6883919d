"""Did sharpness predict generalisation in *this* search? The evidence, from its completed trials.

Why every search carries it: a sharpness objective assumes that flatter minima generalise
better, and across recipes that often fails — augmentation and SAM can reach sharper minima that
generalise better, and sharpness moves with lr/B and the training loss more than with the test
error (Dziugaite et al. 2020; Kaur, Cohen & Lipton 2023; Andriushchenko et al. 2023). So each
search with one says, from its own trials, whether the assumption held there:

  * Kendall τ-b of sharpness against test accuracy and against the gap (train − test accuracy),
    each with a seeded 95 % bootstrap interval over the trials (`remedies.stats`);
  * sign agreement over trial pairs: in how many pairs the flatter trial is the more accurate
    one — over all pairs, and over the pairs whose remedy sets differ in exactly one remedy;
  * the confounders where sharpness was measured: batch size, lr, lr/B, training loss;
  * the trials that are sharper *and* more accurate than the search's median trial.

Pure functions of the trial rows (`optuna_space.trial_rows`): no Optuna or MLflow in here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any, Literal

from remedies.stats import finite, kendall_tau, kendall_tau_interval

MIN_TRIALS = 3  # fewer completed trials give no ranking worth an interval
CONFIDENCE = 0.95

Verdict = Literal["predicts", "no evidence", "reversed", "not enough trials"]


@dataclass(frozen=True)
class Tau:
    """τ-b with its bootstrap interval over `n` trials; NaN where undefined."""

    tau: float
    lo: float
    hi: float
    n: int

    @property
    def defined(self) -> bool:
        return self.n >= MIN_TRIALS and not any(math.isnan(v) for v in (self.tau, self.lo, self.hi))

    @property
    def includes_zero(self) -> bool:
        return self.lo <= 0 <= self.hi


@dataclass(frozen=True)
class Pairs:
    """Of `n` trial pairs (ties in sharpness or accuracy left out, `ties` of them), `agree` have
    the flatter trial the more accurate one; `on_sharper_better`: pairs where the trial with the
    remedy (one-remedy pairs only) is both sharper and more accurate."""

    agree: int
    n: int
    ties: int
    on_sharper_better: int = 0

    @property
    def fraction(self) -> float:
        return self.agree / self.n if self.n else math.nan


@dataclass(frozen=True)
class TrialPoint:
    """One completed trial as the evidence sees it; confounders are None where not recorded."""

    number: int
    remedies: tuple[str, ...]
    sharpness: float
    test_accuracy: float
    gap: float | None  # train − test accuracy, points
    batch_size: float | None
    lr: float | None
    train_loss: float | None
    sharper_but_more_accurate: bool = False

    @property
    def lr_per_batch(self) -> float | None:
        if self.lr is None or not self.batch_size:
            return None
        return self.lr / self.batch_size

    @property
    def label(self) -> str:
        return "+".join(self.remedies) or "none"


@dataclass(frozen=True)
class Evidence:
    key: str  # the sharpness objective
    trials: tuple[TrialPoint, ...]
    tau_accuracy: Tau  # τ(sharpness, test accuracy): negative when flatter = more accurate
    tau_gap: Tau  # τ(sharpness, train − test): positive when sharper = larger gap
    pairs: Pairs
    one_remedy: dict[str, Pairs]  # per remedy: pairs differing in that remedy alone
    confounders: dict[str, float]  # τ(sharpness, confounder) point estimates
    verdict: Verdict

    @property
    def warns(self) -> bool:
        return self.verdict != "predicts"


ACCURACIES = ("val_accuracy", "train_accuracy", "test_accuracy")


def sharpness_objective(objectives: Iterable[str], rows: Sequence[dict[str, Any]]) -> str | None:
    """The search's sharpness objective: the first objective that its trials report as a
    sharpness measure (a key of their `sharpness` results), or None — then no evidence at all."""
    measured = {k for r in rows if r.get("state") == "COMPLETE" for k in r.get("sharpness") or {}}
    return next((m for m in objectives if m in measured and m not in ACCURACIES), None)


def remedy_set(row: dict[str, Any]) -> tuple[str, ...]:
    """The remedies a trial had on: its run config's `remedies` keys (always-on ones included),
    else its sampled `remedy.*` switches (and step owner)."""
    if isinstance(row.get("config"), dict):
        return tuple(sorted(row["config"].get("remedies") or {}))
    p = row.get("params") or {}
    on = {k.split(".", 1)[1] for k, v in p.items() if k.startswith("remedy.") and v is True}
    owner = p.get("remedy.step_owner")
    return tuple(sorted(on | ({owner} if owner and owner != "none" else set())))


def _first(*values: Any) -> float | None:
    """The first finite number among `values` (a config's "10%" batch is not one)."""
    return next((float(v) for v in values if finite(v)), None)


def trial_point(row: dict[str, Any], key: str) -> TrialPoint | None:
    """A COMPLETE row with a finite sharpness and test accuracy, else None. Batch and lr are the
    last step's (`end_*`, recorded since the evidence exists), else the run config's."""
    s, acc = (row.get("sharpness") or {}).get(key), row.get("test_accuracy")
    if row.get("state") != "COMPLETE" or not finite(s) or not finite(acc):
        return None
    m, train = row.get("metrics") or {}, ((row.get("config") or {}).get("train") or {})
    tr = row.get("train_accuracy")
    return TrialPoint(
        number=row["number"],
        remedies=remedy_set(row),
        sharpness=float(s),
        test_accuracy=float(acc),
        gap=float(tr) - float(acc) if finite(tr) else None,
        batch_size=_first(m.get("end_batch_size"), m.get("batch_size"), train.get("batch_size")),
        lr=_first(m.get("end_lr"), train.get("lr")),
        train_loss=_first(m.get("train_loss")),
    )


def tau_with_interval(x: Sequence[float], y: Sequence[float]) -> Tau:
    n = len(x)
    if n < MIN_TRIALS:
        return Tau(math.nan, math.nan, math.nan, n)
    lo, hi = kendall_tau_interval(x, y, CONFIDENCE)
    return Tau(kendall_tau(x, y), lo, hi, n)


def pair_agreement(sharpness: Sequence[float], accuracy: Sequence[float]) -> Pairs:
    """Over all pairs: the flatter trial (lower sharpness) is the more accurate one in `agree`
    of `n`; pairs tied in either value say nothing and are counted apart."""
    diffs = [
        (sharpness[i] - sharpness[j], accuracy[i] - accuracy[j])
        for i, j in combinations(range(len(sharpness)), 2)
    ]
    return replace(_count(diffs), on_sharper_better=0)  # no pair member is "the remedy's"


def one_remedy_pairs(points: Sequence[TrialPoint]) -> dict[str, Pairs]:
    """Pairs whose remedy sets differ in exactly one remedy, per that remedy.

    Why on/off only: the other remedies' knobs and the lr are continuous, so pairs equal in all
    of them would hardly exist; they differ, and are shown per trial beside the confounders."""
    found: dict[str, list[tuple[float, float]]] = {}
    for a, b in combinations(points, 2):
        diff = set(a.remedies) ^ set(b.remedies)
        if len(diff) == 1:
            name = diff.pop()
            on, off = (a, b) if name in a.remedies else (b, a)
            d = (on.sharpness - off.sharpness, on.test_accuracy - off.test_accuracy)
            found.setdefault(name, []).append(d)
    return {name: _count(diffs) for name, diffs in sorted(found.items())}


def _count(diffs: Iterable[tuple[float, float]]) -> Pairs:
    """Pairs from (Δ sharpness, Δ test accuracy), first member minus second."""
    agree = n = ties = both = 0
    for ds, da in diffs:
        if ds == 0 or da == 0:
            ties += 1
            continue
        n += 1
        agree += (ds < 0) == (da > 0)
        both += ds > 0 and da > 0
    return Pairs(agree, n, ties, both)


def sharper_but_more_accurate(sharpness: Sequence[float], accuracy: Sequence[float]) -> list[bool]:
    """Trials above the search's median in both sharpness and test accuracy.

    Why the medians: "sharper but more accurate" needs a reference, and against any single pair
    nearly every trial would qualify in some pair; the median trial is the search's own typical
    point, so a flag says this trial contradicts "flatter generalises better" against most of
    the search, not against one neighbour."""
    if len(sharpness) < 2:
        return [False] * len(sharpness)
    ms, ma = statistics.median(sharpness), statistics.median(accuracy)
    return [s > ms and a > ma for s, a in zip(sharpness, accuracy, strict=True)]


def verdict(tau: Tau) -> Verdict:
    """From τ(sharpness, test accuracy): sharpness predicted generalisation only where the whole
    interval is below 0 (flatter = more accurate); above 0 it predicted the opposite."""
    if not tau.defined:
        return "not enough trials"
    if tau.hi < 0:
        return "predicts"
    return "reversed" if tau.lo > 0 else "no evidence"


def _confounder_taus(points: Sequence[TrialPoint]) -> dict[str, float]:
    out = {}
    for name, get in (
        ("batch_size", lambda p: p.batch_size),
        ("lr", lambda p: p.lr),
        ("lr_per_batch", lambda p: p.lr_per_batch),
        ("train_loss", lambda p: p.train_loss),
    ):
        have = [(p.sharpness, v) for p in points if (v := get(p)) is not None]
        tau = kendall_tau(*zip(*have, strict=True)) if len(have) >= MIN_TRIALS else math.nan
        out[name] = float(tau)
    return out


def evidence(rows: Sequence[dict[str, Any]], objectives: Iterable[str]) -> Evidence | None:
    """The evidence of a search from its trial rows and objective names; None without a
    sharpness objective."""
    key = sharpness_objective(objectives, rows)
    if key is None:
        return None
    pts = [p for r in rows if (p := trial_point(r, key)) is not None]
    s, a = [p.sharpness for p in pts], [p.test_accuracy for p in pts]
    flags = sharper_but_more_accurate(s, a)
    pts = [_flagged(p, f) for p, f in zip(pts, flags, strict=True)]
    with_gap = [(p.sharpness, p.gap) for p in pts if p.gap is not None]
    tau_acc = tau_with_interval(s, a)
    return Evidence(
        key=key,
        trials=tuple(pts),
        tau_accuracy=tau_acc,
        tau_gap=tau_with_interval([x for x, _ in with_gap], [g for _, g in with_gap]),
        pairs=pair_agreement(s, a),
        one_remedy=one_remedy_pairs(pts),
        confounders=_confounder_taus(pts),
        verdict=verdict(tau_acc),
    )


def _flagged(p: TrialPoint, flag: bool) -> TrialPoint:
    return replace(p, sharper_but_more_accurate=flag)
