"""Export chosen trials as complete run configs that `remedies train` accepts unchanged.

Why complete configs (every resolved value, not just the searched keys): a default that changes
in a later release must not silently change what an exported recipe means.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from remedies.config import parse_config
from remedies.errors import ConfigError
from remedies.io import atomic_write_text
from remedies.results import confirm
from remedies.results.answer import Rule, metric
from remedies.results.export_python import render_python
from remedies.results.report import front_rows, load_study, objectives_of, pick, value_of
from remedies.results.rows import trial_rows

FORMATS = {"yaml": ".yaml", "python": ".py"}  # --format → file suffix


def render(
    study_name: str, row: dict[str, Any], objs: list[tuple[str, str]], how: str, note: str = ""
) -> str:

    cfg = row["config"]
    if not cfg:
        raise ConfigError("NAME", f"trial {row['number']} has no stored config")
    parse_config(cfg)  # what we write must be accepted by `remedies train` as is
    measured = ", ".join(f"{m} = {value_of(row, m):.6g}" for m, _ in objs)
    extra = (
        f"train_accuracy = {row['train_accuracy']:.6g}, test_accuracy = {row['test_accuracy']:.6g}"
    )
    more = {k: v for k, v in (row.get("metrics") or {}).items() if v is not None}
    if more:  # speed and reference-relative standing, with the threads the times were taken on
        extra += ", " + ", ".join(f"{k} = {v:.4g}" for k, v in more.items())
    head = (
        f"# exported from search {study_name!r}, trial {row['number']} "
        f"(Tune {row['tune_trial']}, MLflow run {row['mlflow_run']}), pick: {how}\n"
        f"# measured: {measured}\n# also: {extra}\n{note}"
        f"# re-run: remedies train THIS_FILE\n"
    )
    return head + yaml.safe_dump(cfg, sort_keys=False)


PICKS = ("pareto", "best-accuracy", "knee")


def pick_by_rule(study, rule: str) -> list[dict[str, Any]]:
    """`--pick "max val_accuracy where speedup_vs_sb >= 2"`: the completed trial the rule
    chooses (any metric a trial reports, references-relative ones included). Reference runs are
    not Optuna trials, so no rule can pick one."""

    return [Rule.parse(rule).choose(trial_rows(study), study.study_name)]


def _check_pick(how: str) -> None:
    """A malformed rule is refused before the study is opened."""

    if how not in PICKS:
        Rule.parse(how)


def _confirmed(study, how: str, seeds: int, train: confirm.Train) -> tuple[dict[str, Any], str]:
    """--confirm-seeds: the top candidates of the pick re-trained over `seeds` extra seeds; the
    one with the best mean validation accuracy, and the header line saying so."""

    key: Callable[[dict[str, Any]], float]
    if how in PICKS:
        pool, key = front_rows(study)[1], (lambda r: r["val_accuracy"])
    else:
        rule = Rule.parse(how)
        rule.choose(trial_rows(study), study.study_name)  # refuses as a plain pick would
        pool = [
            r
            for r in trial_rows(study)
            if r["state"] == "COMPLETE" and rule.holds(r) and metric(r, rule.metric) is not None
        ]
        sign = 1 if rule.mode == "max" else -1

        def by_rule(r: dict[str, Any]) -> float:
            v = metric(r, rule.metric)
            assert v is not None  # the pool holds only rows where it is known
            return sign * v

        key = by_rule
    cands = confirm.confirm(confirm.candidates(pool, key), seeds, train)
    best = max(cands, key=confirm.mean_val)
    return best, confirm.header(best, cands, study.user_attrs.get("references"))


def render_as(
    fmt: str,
    study_name: str,
    row: dict[str, Any],
    objs: list[tuple[str, str]],
    how: str,
    note: str = "",
    workers: int = 1,
) -> str:
    """`render` in the chosen format: yaml (a run config) or python (a script with its own loop
    on the library API, see `remedies.results.export_python`)."""
    text = render(study_name, row, objs, how, note)
    if fmt == "yaml":
        return text

    header = "".join(
        ln + "\n"
        for ln in text.splitlines()
        if ln.startswith("# ") and not ln.startswith("# re-run")
    )
    run = "python THIS_FILE" if workers == 1 else f"torchrun --nproc-per-node {workers} THIS_FILE"
    return render_python(header + f"# run: {run}\n", row["config"], workers)


def export(
    name: str,
    storage: str,
    how: str = "knee",
    out: Path | None = Path("best.yaml"),
    all_pareto: Path | None = None,
    confirm_seeds: int = 0,
    fmt: str = "yaml",
    workers: int = 1,
    train: confirm.Train | None = None,
) -> list[Path]:
    """Write the picked trials as run configs (`fmt` yaml) or runnable scripts (python; with
    `workers` K, for `torchrun --nproc-per-node K` — it runs alone as well). `train` trains
    the runs `confirm_seeds` asks for (the CLI passes `remedies.launch.fit`)."""
    _check_pick(how)
    if workers < 1 or (workers > 1 and fmt != "python"):
        raise ConfigError(
            "--workers",
            f"got {workers}; allowed: 1, or K ≥ 2 with --format python (a torchrun script)",
        )
    if confirm_seeds < 0:
        raise ConfigError("--confirm-seeds", f"must be ≥ 0, got {confirm_seeds}")
    if confirm_seeds and train is None:
        raise ValueError("confirm_seeds needs `train`, the function that trains one run config")
    if confirm_seeds and how == "pareto":
        raise ConfigError(
            "--confirm-seeds",
            "picks one trial; allowed with --pick knee, best-accuracy or a rule, not pareto",
        )
    if fmt not in FORMATS:
        raise ConfigError("--format", f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    suffix = FORMATS[fmt]
    if out is not None and out.suffix != suffix and out == Path("best.yaml"):
        out = out.with_suffix(suffix)  # the default name follows the format
    study = load_study(name, storage)
    objs = objectives_of(study)
    note = ""
    if confirm_seeds:
        assert train is not None  # checked above
        best, note = _confirmed(study, how, confirm_seeds, train)
        chosen = [best]
    else:
        chosen = pick(study, how) if how in PICKS else pick_by_rule(study, how)
    texts: list[tuple[Path, str]] = []  # render everything first: nothing written on error
    if all_pareto is not None:
        for r in pick(study, "pareto"):
            path = all_pareto / f"trial_{r['number']:04d}{suffix}"
            texts.append((path, render_as(fmt, name, r, objs, "pareto", workers=workers)))
    if out is not None:
        if how == "pareto" and len(chosen) > 1:
            stem, suf = out.stem, out.suffix or suffix
            for r in chosen:
                texts.append(
                    (
                        out.with_name(f"{stem}_trial{r['number']:04d}{suf}"),
                        render_as(fmt, name, r, objs, how, workers=workers),
                    )
                )
        else:
            texts.append((out, render_as(fmt, name, chosen[0], objs, how, note, workers)))
    for path, text in texts:
        atomic_write_text(path, text)
    return [p for p, _ in texts]
