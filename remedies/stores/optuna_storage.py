"""Where a search's Optuna study lives: a database URL or a SQLite file, opened for the search
that writes it and for the reports that read it, and checked without creating anything.

Only public Optuna APIs: the storage object is ours (`open_storage`), so its `get_study_id_*` /
`set_trial_user_attr` methods are used directly, never the private attributes of a study or trial.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from remedies.errors import ConfigError
from remedies.io import folder_lock


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
