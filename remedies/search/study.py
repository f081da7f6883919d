"""The Optuna study of one search: created once, asked, told once per trial — the only writer.

Every trial is `ask`ed here before Tune starts it and `tell`s here exactly once, from the trial's
one `Decision`. A trial a dead driver left RUNNING is not failed: it is *the same trial* that
`--resume` continues (same number, parameters and MLflow run), so a search always ends with
exactly `num_samples` Optuna trials.

Only public Optuna APIs: the storage object is ours (`open_storage`), so its `get_study_id_*` /
`set_trial_user_attr` methods are used directly, never the private attributes of a study or trial.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from remedies.errors import ConfigError
from remedies.io import folder_lock
from remedies.search.optuna_space import DefineByRun, make_sampler, plain_params
from remedies.search.outcome import Decision, Outcome
from remedies.search.space import SearchSpace


def storage_url(path: str) -> str:
    """`--storage` accepts a database URL or a plain file path (→ SQLite)."""
    return path if "://" in path else f"sqlite:///{path}"


def storage_exists(path: str) -> bool:
    """False when `--storage` names a SQLite database that is not there, or that holds no Optuna
    studies: checked read-only, because opening it with Optuna would create the file (and its
    tables), and `remedies report`/`export` of a mistyped path must leave nothing behind. Other
    URLs (and an in-memory SQLite) count as present; connecting reports what is wrong with them.
    """

    try:
        url = make_url(storage_url(path))
    except ArgumentError:
        return True  # malformed: let the real open say so
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return True
    db = Path(url.database)
    if not db.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"file:{quote(str(db.resolve()))}?mode=ro", uri=True)) as c:
            row = c.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'"
            ).fetchone()
            # a truncated file can still show its first page: read every page once
            if row is not None and (ok := c.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
                raise sqlite3.DatabaseError(ok)
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            return True  # present but busy: let Optuna try
        raise _unreadable(db, e) from None
    except sqlite3.DatabaseError as e:  # truncated, or not an SQLite file at all
        raise _unreadable(db, e) from None
    return row is not None


def _unreadable(db: Path, e: Exception) -> ConfigError:
    return ConfigError(
        "--storage",
        f"{db} is not a readable SQLite database ({e}); restore it "
        "from a backup (`remedies restore`) or name another file",
    )


def open_storage(path: str) -> optuna.storages.RDBStorage:
    """RDB storage (SQLite by default): the study, and so the Pareto front, outlives the driver.

    No Optuna heartbeats: trials are asked/told by the search's searcher, not `study.optimize`;
    a trial a dead driver left RUNNING is continued by `--resume` (see `study.py`).
    """
    return _storage(path, create=False)


def sqlite_file(storage: str) -> Path | None:
    url = storage_url(storage)
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///")).resolve()


def _storage(storage: str, create: bool) -> optuna.storages.RDBStorage:
    """RDB storage; creating a SQLite file happens under a lock on its folder (parallel drivers)."""
    url = storage_url(storage)
    f = sqlite_file(storage)
    if f is not None:
        url = f"sqlite:///{f}"
        if not f.parent.is_dir():
            raise ConfigError("--storage", f"folder {f.parent} does not exist")
        if not create and not f.exists():
            raise ConfigError("--storage", f"no study database at {f}")
    kw = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    if f is not None:  # readers too: Optuna migrates tables on open, racing a creating driver
        with folder_lock(f.parent):
            return optuna.storages.RDBStorage(url, engine_kwargs=kw)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kw)
    except Exception as e:  # a URL whose server is down or that names no database
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("--storage", f"cannot open {storage!r}: {first[:200]}") from None


def study_exists(storage: str, name: str) -> bool:
    """Whether `name` is in `storage`, creating nothing when the SQLite file is absent."""
    f = sqlite_file(storage)
    if f is not None and not f.parent.is_dir():
        raise ConfigError("--storage", f"folder {f.parent} does not exist")
    if not storage_exists(storage):
        return False
    st = _storage(storage, create=False)
    return name in {s.study_name for s in optuna.get_all_study_summaries(st)}


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
