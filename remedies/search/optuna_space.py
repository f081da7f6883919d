"""The search space as an Optuna define-by-run function, samplers, and the study's bookkeeping.

Why define-by-run: a remedy's own knobs exist only when the remedy is on, so the space is
conditional; Optuna records exactly the parameters a trial used, and TPE with `group=True` models
each sub-space separately instead of imputing values for knobs a trial never had.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from remedies.catalog import REMEDIES
from remedies.search.space import Dist, SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def suggest(trial: optuna.Trial, name: str, d: Dist) -> Any:
    if d.type == "categorical":
        # Optuna stores only None/bool/int/float/str choices; others go through their index
        choices = d.choices or []
        if all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            return trial.suggest_categorical(name, choices)
        return choices[trial.suggest_categorical(name, list(range(len(choices))))]
    if d.type == "int":
        return trial.suggest_int(name, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)  # type: ignore[arg-type]
    return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)  # type: ignore[arg-type]


class DefineByRun:
    """`space(trial) -> dict of constants` as OptunaSearch wants it (the Tune trial config).

    A class, not a closure: Tune pickles the searcher (and this function) in its experiment state.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        space = self.space
        out: dict[str, Any] = {}
        for path, d in space.params.items():
            out[path] = suggest(trial, path, d)
        choices = space.remedy_choices()
        # remedies that each replace the optimiser step (conservative, sam) exclude one another:
        # one categorical picks at most one of them, so no trial is a config error
        owners = [n for n, c in choices.items() if REMEDIES.get(n).replaces_step and not c.always]
        owner = (
            trial.suggest_categorical("remedy.step_owner", ["none", *owners])
            if len(owners) > 1
            else None
        )
        for name, choice in choices.items():
            if owner is not None and name in owners:
                on = owner == name
            else:
                on = choice.always or trial.suggest_categorical(f"remedy.{name}", [False, True])
            out[f"remedy.{name}"] = on
            if not on:
                continue
            for key in choice.params:
                v = space.remedy_param(name, key)
                key_ = f"{name}.{key}"
                out[key_] = suggest(trial, key_, v) if isinstance(v, Dist) else v
        return out


define_by_run = DefineByRun


def make_sampler(space: SearchSpace, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The space's sampler. A resumed search passes how many trials the study already holds: the
    seed is moved on by that much, or a seeded sampler would replay the values it proposed
    before the interruption (still deterministic for a given history)."""
    s = space.sampler
    seed = s.seed + trials_so_far
    # constraints (e.g. speedup_vs_sb >= 2) reach the samplers through each trial's
    # `set_constraint` values (Study.tell): TPE, NSGA-II and GP model feasibility apart from
    # the objectives — no penalty folded into an objective
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if s.name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=s.n_startup_trials
        )
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=s.population_size)
    if s.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=s.n_startup_trials)
    return optuna.samplers.RandomSampler(seed=seed)


def plain_params(space: SearchSpace) -> dict[str, Any]:
    """The fixed values of a trial with every optional remedy off: plain large batch."""
    choices = space.remedy_choices()
    owners = [n for n, c in choices.items() if REMEDIES.get(n).replaces_step and not c.always]
    out: dict[str, Any] = {}
    if len(owners) > 1:
        out["remedy.step_owner"] = "none"
    for name, c in choices.items():
        if not c.always and not (len(owners) > 1 and name in owners):
            out[f"remedy.{name}"] = False
    return out
