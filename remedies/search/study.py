"""The Optuna study of one search: created once, asked, told once per trial — the only writer.

Every trial is `ask`ed here before Tune starts it and `tell`s here exactly once, from the trial's
one `Decision`. A trial a dead driver left RUNNING is not failed: it is *the same trial* that
`--resume` continues (same number, parameters and MLflow run), so a search always ends with
exactly `num_samples` Optuna trials.

Only public Optuna APIs: the storage object is ours (`remedies.stores.optuna_storage`), so its
`get_study_id_*` / `set_trial_user_attr` methods are used directly, never the private attributes
of a study or trial.
"""

from __future__ import annotations

from typing import Any, Literal

import optuna

from remedies.search.optuna_space import DefineByRun, make_sampler, plain_params
from remedies.search.outcome import Decision, Outcome
from remedies.search.space import SearchSpace
from remedies.stores.optuna_storage import (
    _storage,
)


class Study:
    """One search's study. `create` or `load`, then `ask`/`tell` per trial."""

    def __init__(self, storage: str, name: str, space: SearchSpace) -> None:
        self.storage = _storage(storage, create=True)
        self.name, self.space = name, space
        self.study: optuna.Study | None = None

    # --------------------------------------------------------------------- lifecycle
    def create(
        self, directions: list[Literal["minimize", "maximize"]], attrs: dict[str, Any]
    ) -> None:
        self.study = optuna.create_study(
            study_name=self.name,
            storage=self.storage,
            directions=directions,
            sampler=make_sampler(self.space),
        )
        for k, v in attrs.items():
            self.study.set_user_attr(k, v)

    def enqueue_plain(self) -> None:
        """Plain LB (every optional remedy off, the other values sampled) as the first trial:
        a search must be able to say that no remedy at all is the fastest recipe."""

        assert self.study is not None
        if plain_params(self.space):
            self.study.enqueue_trial(plain_params(self.space), skip_if_exists=True)

    def load(self) -> None:
        n = self.storage.get_n_trials(self.storage.get_study_id_from_name(self.name))
        self.study = optuna.load_study(
            study_name=self.name, storage=self.storage, sampler=make_sampler(self.space, n)
        )

    def set_study_attr(self, key: str, value: Any) -> None:
        assert self.study is not None
        self.study.set_user_attr(key, value)

    @property
    def attrs(self) -> dict[str, Any]:
        assert self.study is not None
        return self.study.user_attrs

    def trial_id(self, number: int) -> int:
        sid = self.storage.get_study_id_from_name(self.name)
        return self.storage.get_trial_id_from_study_id_trial_number(sid, number)

    # ------------------------------------------------------------------------ trials
    def ask(self) -> tuple[int, dict[str, Any]]:
        """A new trial and its sampled values (the remedy space is conditional: define-by-run)."""
        assert self.study is not None
        trial = self.study.ask()
        return trial.number, DefineByRun(self.space)(trial)

    def trial_attrs(self, number: int) -> dict[str, Any]:
        return self.storage.get_trial(self.trial_id(number)).user_attrs

    def resample(self, number: int) -> dict[str, Any]:
        """The values of a RUNNING trial whose driver died before recording them: define-by-run
        again on the same trial (values already in storage are returned as they were)."""
        assert self.study is not None
        return DefineByRun(self.space)(optuna.trial.Trial(self.study, self.trial_id(number)))

    def set_attrs(self, number: int, attrs: dict[str, Any]) -> None:
        tid = self.trial_id(number)
        for k, v in attrs.items():
            self.storage.set_trial_user_attr(tid, k, v)

    def tell(self, number: int, decision: Decision, attrs: dict[str, Any]) -> None:
        """Record the one decision. INTERRUPTED leaves the trial RUNNING for `--resume`."""
        assert self.study is not None
        why = {"error": decision.reason} if decision.reason else {}
        self.set_attrs(
            number, {**attrs, "state": decision.outcome.value, "epochs_run": decision.epochs, **why}
        )
        if not decision.outcome.finished:
            return
        state = optuna.trial.TrialState[decision.outcome.optuna_state]
        if "constraints" in attrs and state != optuna.trial.TrialState.FAIL:
            # what Optuna's constrained samplers read (≤ 0 feasible); set before the tell
            tid = self.trial_id(number)
            trial, have = (
                optuna.trial.Trial(self.study, tid),
                self.storage.get_trial_system_attrs(tid),
            )
            for c, v in zip(self.space.constraints, attrs["constraints"], strict=True):
                if f"constraints:{c.label}" not in have:  # a re-told trial keeps its values
                    trial.set_constraint(c.label, v)
        self.study.tell(number, decision.values, state=state, skip_if_finished=True)

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        assert self.study is not None
        return self.study.get_trials(deepcopy=False)

    def unfinished(self) -> list[optuna.trial.FrozenTrial]:
        """Trials launched and never decided (driver killed or interrupted): to be continued."""
        return [t for t in self.trials() if t.state == optuna.trial.TrialState.RUNNING]

    def finished_count(self) -> int:
        return sum(t.state.is_finished() for t in self.trials())

    def counts(self) -> dict[str, int]:
        """Outcome counts as the decisions recorded them (a RUNNING trial: running/interrupted)."""
        out: dict[str, int] = {}
        for t in self.trials():
            o = t.user_attrs.get("state") or Outcome.RUNNING.value
            out[o] = out.get(o, 0) + 1
        return out
