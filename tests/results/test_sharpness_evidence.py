"""The sharpness evidence on synthetic trial rows whose relation to test accuracy is known by
construction — flatter = more accurate, sharper = more accurate, no relation — checked against
SciPy and brute-force counts; then the report, artifacts and answer line of a real (in-memory)
Optuna study."""

from __future__ import annotations

import json
import math
from itertools import combinations, permutations
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from scipy.stats import bootstrap, kendalltau

from remedies.results import evidence_report
from remedies.results.answer import answer_line
from remedies.results.report import text_report, write_artifacts
from remedies.results.sharpness_evidence import (
    evidence,
    pair_agreement,
    remedy_set,
    sharper_but_more_accurate,
    sharpness_objective,
)
from remedies.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, _tau_interval

KEY = "keskar_full_eps1e-03"
OBJECTIVES = ["val_accuracy", KEY]
N = 12
SHARP = [0.5 * 1.6**i for i in range(N)]  # spans decades: the plot's x axis goes log
# a fixed jitter, large enough to swap some neighbours (no ties): deterministic sets, τ ≈ ±0.85
JITTER = [1.5 * j for j in (0.3, -0.8, 0.5, -0.2, 0.9, -0.6, 0.1, -0.4, 0.7, -0.9, 0.2, -0.1)]
FLAT_WINS = [90.0 - i + j for i, j in enumerate(JITTER)]  # flatter = more accurate
SHARP_WINS = [70.0 + i + j for i, j in enumerate(JITTER)]  # sharper = more accurate
NO_RELATION = [80.0 + 1.5 * abs(i - 5.5) + j / 1.5 for i, j in enumerate(JITTER)]  # a V: τ ≈ 0


def row(
    number: int,
    sharp: float,
    test: float,
    remedies: tuple[str, ...] = (),
    *,
    lr: float = 1e-3,
    batch: int = 512,
    loss: float = 0.2,
    state: str = "COMPLETE",
) -> dict[str, Any]:
    """A trial row as `optuna_space.trial_rows` returns it."""
    return {
        "number": number,
        "state": state,
        "val_accuracy": test + 0.5,
        "train_accuracy": 97.0 + 0.4 * ((number * 7) % 5),  # the gap: train − test, not monotone
        "test_accuracy": test,
        "sharpness": {KEY: sharp},
        "objectives": {"val_accuracy": test + 0.5, KEY: sharp},
        "params": {"train.lr": lr, **{f"remedy.{r}": True for r in remedies}},
        "config": {"train": {"lr": lr, "batch_size": batch}, "remedies": {r: {} for r in remedies}},
        "metrics": {"train_loss": loss, "batch_size": batch, "end_lr": lr, "end_batch_size": batch},
        "constraints": None,
    }


def rows_of(acc: list[float]) -> list[dict[str, Any]]:
    remedies = [(), ("augment",), ("sam",), ("augment", "sam")]
    return [
        row(i, s, a, remedies[i % 4], lr=1e-3 * (1 + i), loss=0.5 / (1 + i))
        for i, (s, a) in enumerate(zip(SHARP, acc, strict=True))
    ]


REFS = {"sb": {"test_accuracy": 85.0, "val_accuracy": 85.0, "train_time_s": 10.0}}


def with_speed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "metrics": {**r["metrics"], "speedup_vs_sb": 2.0}} for r in rows]


# --- τ, its interval, the verdict ----------------------------------------------------------


def test_flatter_more_accurate_predicts_and_no_warning() -> None:
    ev = evidence(rows_of(FLAT_WINS), OBJECTIVES)
    assert ev is not None and ev.key == KEY
    t = ev.tau_accuracy
    assert t.tau == pytest.approx(kendalltau(SHARP, FLAT_WINS).statistic, abs=1e-12)
    assert -0.9 < t.tau < -0.8 and t.lo < t.hi < 0  # not a perfect ranking, still excludes 0
    assert ev.verdict == "predicts" and not ev.warns
    flagged = {p.number for p in ev.trials if p.sharper_but_more_accurate}
    above = {i for i, a in enumerate(FLAT_WINS) if a > np.median(FLAT_WINS)}
    assert flagged == above & set(range(N // 2, N)) and len(flagged) <= 1  # the noise's one
    assert evidence_report.answer_warning(rows_of(FLAT_WINS)) == ""
    assert "WARNING" not in answer_line(with_speed(rows_of(FLAT_WINS)), REFS)
    text = "\n".join(evidence_report.section(rows_of(FLAT_WINS), OBJECTIVES))
    assert "sharpness predicted generalisation in this search" in text and "WARNING" not in text


def test_sharper_more_accurate_warns_and_flags_the_sharp_accurate_half() -> None:
    rows = rows_of(SHARP_WINS)
    ev = evidence(rows, OBJECTIVES)
    assert ev is not None and ev.verdict == "reversed" and ev.warns
    assert ev.tau_accuracy.lo > 0
    # above both medians (sharpness rises with the number: the upper half, 6..11)
    flagged = {p.number for p in ev.trials if p.sharper_but_more_accurate}
    above = {i for i, a in enumerate(SHARP_WINS) if a > np.median(SHARP_WINS)}
    assert flagged == above & set(range(N // 2, N)) and len(flagged) >= N // 2 - 1
    line = answer_line(with_speed(rows), REFS)
    assert (
        line.startswith("best recipe: trial")
        and "WARNING" in line
        and "sharper trials were more" in line
    )
    text = "\n".join(evidence_report.section(rows, OBJECTIVES))
    assert "WARNING: sharpness did NOT predict generalisation" in text
    assert text.count("* sharper but more accurate") == len(flagged)


def test_no_relation_interval_includes_zero_and_warns() -> None:
    rows = rows_of(NO_RELATION)
    ev = evidence(rows, OBJECTIVES)
    assert ev is not None
    assert abs(kendalltau(SHARP, NO_RELATION).statistic) < 0.2  # the construction holds
    assert ev.tau_accuracy.lo < 0 < ev.tau_accuracy.hi
    assert ev.verdict == "no evidence"
    w = evidence_report.answer_warning(rows)
    assert "includes 0" in w and w.startswith(" — WARNING")
    assert "WARNING" in answer_line(rows, None)  # the no-baselines line carries it too


def test_gap_tau_against_scipy() -> None:
    rows = rows_of(FLAT_WINS)
    ev = evidence(rows, OBJECTIVES)
    assert ev is not None
    gap = [r["train_accuracy"] - r["test_accuracy"] for r in rows]
    assert ev.tau_gap.tau == pytest.approx(kendalltau(SHARP, gap).statistic, abs=1e-12)
    # flatter trials were more accurate at about the same training accuracy: sharper = larger gap
    assert ev.tau_gap.n == N and 0 < ev.tau_gap.lo < ev.tau_gap.hi


def test_interval_is_scipys_paired_percentile_bootstrap_and_reproducible() -> None:
    ev = evidence(rows_of(NO_RELATION), OBJECTIVES)
    assert ev is not None
    ref = bootstrap(
        (np.asarray(SHARP), np.asarray(NO_RELATION)),
        lambda x, y: kendalltau(x, y).statistic,
        paired=True,
        vectorized=False,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    ).confidence_interval
    assert (ev.tau_accuracy.lo, ev.tau_accuracy.hi) == pytest.approx((ref.low, ref.high))
    _tau_interval.cache_clear()  # computed again, not remembered: the same interval
    again = evidence(rows_of(NO_RELATION), OBJECTIVES)
    assert again is not None and again.tau_accuracy == ev.tau_accuracy


@pytest.mark.parametrize(
    "rows",
    [
        [row(0, 1.0, 80.0), row(1, 2.0, 81.0)],  # two trials
        [row(i, 3.0, 80.0 + i) for i in range(5)],  # constant sharpness
        [row(i, 1.0 + i, 80.0) for i in range(5)],  # constant accuracy
        [row(0, 1.0, 80.0), row(1, 2.0, 81.0), row(2, 3.0, 82.0, state="PRUNED")],
    ],
    ids=["two", "constant-sharpness", "constant-accuracy", "pruned-left-out"],
)
def test_not_enough_trials_is_said(rows: list[dict[str, Any]]) -> None:
    ev = evidence(rows, OBJECTIVES)
    assert ev is not None and ev.verdict == "not enough trials" and ev.warns
    text = "\n".join(evidence_report.section(rows, OBJECTIVES))
    assert "not enough trials" in text
    assert "not enough trials" in evidence_report.answer_warning(rows)
    assert not any(math.isnan(v) for v in evidence_report.parent_metrics(rows, OBJECTIVES).values())


def test_a_search_without_a_sharpness_objective_gets_nothing(tmp_path: Path) -> None:
    rows = rows_of(SHARP_WINS)  # sharpness measured, but not an objective
    objs = ["val_accuracy", "speedup_vs_sb"]
    for r in rows:
        r["objectives"] = {"val_accuracy": r["val_accuracy"], "speedup_vs_sb": 2.0}
    assert sharpness_objective(objs, rows) is None and evidence(rows, objs) is None
    assert evidence_report.section(rows, objs) == []
    assert evidence_report.answer_warning(rows) == ""
    assert evidence_report.parent_metrics(rows, objs) == {}
    assert evidence_report.write_files(rows, objs, tmp_path) == [] and not list(tmp_path.iterdir())


# --- pairs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("acc", [FLAT_WINS, SHARP_WINS, NO_RELATION], ids=["flat", "sharp", "none"])
def test_sign_agreement_against_brute_force_and_tau(acc: list[float]) -> None:
    p = pair_agreement(SHARP, acc)
    # every ordered pair (i, j) with i flatter than j: does i also have the higher accuracy?
    agree = sum(SHARP[i] < SHARP[j] and acc[i] > acc[j] for i, j in permutations(range(N), 2))
    assert (p.agree, p.n, p.ties) == (agree, N * (N - 1) // 2, 0)
    # without ties, τ = (concordant − discordant) / pairs and the flatter-wins pairs are discordant
    assert kendalltau(SHARP, acc).statistic == pytest.approx(1 - 2 * p.fraction, abs=1e-12)


def test_tied_pairs_are_counted_apart() -> None:
    p = pair_agreement([1.0, 1.0, 2.0, 3.0], [80.0, 81.0, 81.0, 79.0])
    # (0,1) sharpness tie, (1,2) accuracy tie; agree: (0,3) (1,3) (2,3); disagree: (0,2)
    assert (p.agree, p.n, p.ties) == (3, 4, 2)


def test_one_remedy_pairs_per_remedy() -> None:
    spec = [  # (remedies, sharpness, test accuracy)
        ((), 1.0, 80.0),
        (("augment",), 3.0, 84.0),  # vs (): sharper and more accurate
        (("sam",), 0.5, 83.0),  # vs (): flatter and more accurate
        (("augment", "sam"), 2.0, 85.0),  # vs augment: flatter, better; vs sam: sharper, better
        (("augment", "ghost_bn"), 4.0, 82.0),  # vs augment: sharper and worse
    ]
    rows = [row(i, s, a, rem) for i, (rem, s, a) in enumerate(spec)]
    ev = evidence(rows, OBJECTIVES)
    assert ev is not None
    # brute force: every pair whose remedy sets differ in exactly one remedy
    expect: dict[str, list[int]] = {}
    for (ra, sa, aa), (rb, sb, ab) in combinations(spec, 2):
        diff = set(ra) ^ set(rb)
        if len(diff) == 1:
            expect.setdefault(diff.pop(), []).append(int((sa < sb) == (aa > ab)))
    got = {k: (p.agree, p.n) for k, p in ev.one_remedy.items()}
    assert got == {k: (sum(v), len(v)) for k, v in expect.items()}
    assert got == {"augment": (0, 2), "ghost_bn": (1, 1), "sam": (2, 2)}
    # with the remedy sharper and more accurate: augment, against () and against sam alone
    assert {k: p.on_sharper_better for k, p in ev.one_remedy.items()} == {
        "augment": 2,
        "ghost_bn": 0,
        "sam": 0,
    }
    assert "augment" in "\n".join(evidence_report.section(rows, OBJECTIVES))


def test_remedy_set_from_config_else_from_params() -> None:
    r = row(0, 1.0, 80.0, ("sam", "augment"))
    assert remedy_set(r) == ("augment", "sam")
    r["config"] = None
    r["params"] |= {"remedy.ghost_bn": False, "remedy.step_owner": "conservative"}
    assert remedy_set(r) == ("augment", "conservative", "sam")


def test_flags_use_the_medians() -> None:
    assert sharper_but_more_accurate([1, 2, 3, 4], [1, 4, 3, 2]) == [False, False, True, False]
    assert sharper_but_more_accurate([1.0], [1.0]) == [False]


def test_confounders_at_the_point_of_measurement() -> None:
    rows = rows_of(FLAT_WINS)
    rows[0]["metrics"] = {}  # a study from before end_* were recorded: the config's lr and batch
    rows[1]["config"]["train"]["batch_size"] = "10%"
    rows[1]["metrics"] = {"train_loss": 0.1}
    ev = evidence(rows, OBJECTIVES)
    assert ev is not None
    by = {p.number: p for p in ev.trials}
    assert (by[0].batch_size, by[0].lr, by[0].train_loss) == (512.0, 1e-3, None)
    assert by[1].batch_size is None and by[1].lr_per_batch is None
    assert by[3].lr_per_batch == pytest.approx(4e-3 / 512)
    lrb = [(p.sharpness, p.lr_per_batch) for p in ev.trials if p.lr_per_batch is not None]
    tau = kendalltau(*zip(*lrb, strict=True)).statistic
    assert ev.confounders["lr_per_batch"] == pytest.approx(tau)
    assert ev.confounders["lr_per_batch"] == pytest.approx(1.0)  # lr rises with sharpness here


# --- files and metrics ----------------------------------------------------------------------


def test_json_png_and_parent_metrics(tmp_path: Path) -> None:
    rows = rows_of(SHARP_WINS)
    paths = evidence_report.write_files(rows, OBJECTIVES, tmp_path, "synthetic")
    assert [p.name for p in paths] == [evidence_report.JSON_FILE, evidence_report.PLOT_FILE]
    data = json.loads(paths[0].read_text())
    assert data["verdict"] == "reversed" and data["warning"]
    assert data["pairs"]["n"] == N * (N - 1) // 2 and len(data["trials"]) == N
    assert sum(t["sharper_but_more_accurate"] for t in data["trials"]) >= N // 2 - 1
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = evidence_report.parent_metrics(rows, OBJECTIVES)
    assert m["sharpness_predicts"] == 0.0 and m["sharpness_evidence_trials"] == N
    assert m["sharpness_tau_test_accuracy_lo"] > 0
    assert m["sharpness_tau_test_accuracy"] == pytest.approx(data["tau_test_accuracy"]["tau"])


# --- a real Optuna study through the report ----------------------------------------------


def study_of(rows: list[dict[str, Any]]) -> optuna.Study:
    """An in-memory study whose trials carry the user attributes the searcher writes."""
    study = optuna.create_study(study_name="evidence", directions=["maximize", "minimize"])
    study.set_user_attr("metrics", OBJECTIVES)
    study.set_user_attr("modes", ["max", "min"])
    dist = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    for r in rows:
        attrs = {
            k: r[k]
            for k in ("val_accuracy", "train_accuracy", "test_accuracy", "sharpness", "objectives")
        }
        attrs |= {"config": r["config"], "metrics": r["metrics"], "sharpness_suspect": {}}
        study.add_trial(
            optuna.trial.create_trial(
                values=[r["val_accuracy"], r["sharpness"][KEY]],
                params={"train.lr": r["params"]["train.lr"]},
                distributions={"train.lr": dist},
                user_attrs=attrs,
            )
        )
    return study


def test_report_and_artifacts_of_a_real_study(tmp_path: Path) -> None:
    study = study_of(rows_of(NO_RELATION))
    text = text_report(study)
    assert f"Sharpness evidence: did {KEY} predict generalisation" in text
    assert "τ(sharpness, test accuracy)" in text and f"of {N * (N - 1) // 2} pairs" in text
    answer = next(ln for ln in text.splitlines() if ln.startswith("no answer"))
    assert "WARNING" in answer  # the answer line, as `remedies report` prints it
    names = {p.name for p in write_artifacts(study, tmp_path)}
    assert {evidence_report.JSON_FILE, evidence_report.PLOT_FILE} <= names
