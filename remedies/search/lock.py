"""One driver per search at a time: a lock row in the study's own database.

Why in the study's storage and not a file: two drivers of the same search on different machines
share the study through its database server (PostgreSQL on a cluster), not through a folder, so
only a row there is seen by both. Two drivers on one search interleave their asks and tells:
measured before this lock, two `--resume` of one search both continued the interrupted trials,
logged metric steps twice and ended with 8 Optuna trials for `--num-samples 6`.

The row holds who runs the search (host, pid, the process's start time) and a heartbeat the
holder refreshes every `BEAT_S`. A second driver is refused in one line naming the holder, unless
the holder is dead: on the same host its process is gone (or the pid now belongs to another
process), on another host its heartbeat is older than `STALE_S`. A stale row is taken over with a
compare-and-swap on its token, so two drivers racing for a dead holder's lock cannot both win.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import psutil
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from remedies.errors import ConfigError

log = logging.getLogger(__name__)

BEAT_S = 10.0  # how often the holder refreshes its heartbeat
STALE_S = 60.0  # a holder on another host silent this long is taken to be dead
_META = sa.MetaData()
LOCKS = sa.Table(
    "remedies_driver_locks",
    _META,
    sa.Column("search", sa.String(512), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("proc_start", sa.Float, nullable=False),  # the pid's start time: pids are reused
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("beat", sa.Float, nullable=False),
)


def _me() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "proc_start": psutil.Process().create_time(),
    }


def holder_alive(row: Any, now: float) -> bool:
    """Whether the driver named by a lock row still runs (see the module's docstring)."""
    if row.host == socket.gethostname():
        try:
            p = psutil.Process(row.pid)
            return abs(p.create_time() - row.proc_start) < 1.0 and p.status() != "zombie"
        except psutil.Error:
            return False
    return now - row.beat < STALE_S


def being_run(search: str, held: Any) -> ConfigError:
    """The one line a second driver of a running search gets (exit 2)."""
    since = time.strftime("%H:%M:%S", time.localtime(held.since))
    return ConfigError(
        "--name",
        f"search {search!r} is being run by another driver (pid {held.pid} on {held.host}, "
        f"since {since}); wait for it to end or stop it first",
    )


def live_holder(url: str, search: str) -> Any | None:
    """The lock row of a driver that runs `search` now, else None. Reads only: nothing is
    created (a search refused before it starts leaves no table behind)."""
    kw: dict[str, Any] = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    engine = sa.create_engine(url, **kw)
    try:
        if not sa.inspect(engine).has_table(LOCKS.name):
            return None
        with engine.connect() as c:
            row = c.execute(LOCKS.select().where(LOCKS.c.search == search)).first()
        return row if row is not None and holder_alive(row, time.time()) else None
    finally:
        engine.dispose()


class DriverLock:
    """`acquire()` or ConfigError (exit 2); `release()` when the driver ends (also on errors)."""

    def __init__(self, url: str, search: str) -> None:
        kw: dict[str, Any] = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
        self.engine = sa.create_engine(url, **kw)
        self.search = search
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lost = False  # set when another driver took the lock over (this one was stale)

    def _create_table(self) -> None:
        try:
            _META.create_all(self.engine, tables=[LOCKS], checkfirst=True)
        except (OperationalError, ProgrammingError, IntegrityError):
            # another driver created it between the check and the create (PostgreSQL)
            _META.create_all(self.engine, tables=[LOCKS], checkfirst=True)

    def acquire(self) -> None:
        self._create_table()
        for _ in range(3):
            now = time.time()
            row = {"search": self.search, "token": self.token, "since": now, "beat": now, **_me()}
            try:
                with self.engine.begin() as c:
                    c.execute(LOCKS.insert().values(**row))
                break
            except IntegrityError:
                pass
            with self.engine.begin() as c:
                held = c.execute(LOCKS.select().where(LOCKS.c.search == self.search)).first()
            if held is None:
                continue  # released in between: insert again
            if holder_alive(held, now):
                raise being_run(self.search, held)
            with self.engine.begin() as c:  # compare-and-swap: only one taker wins
                n = c.execute(
                    LOCKS.update()
                    .where(LOCKS.c.search == self.search, LOCKS.c.token == held.token)
                    .values(**{k: v for k, v in row.items() if k != "search"})
                ).rowcount
            if n == 1:
                log.warning(
                    "took over the lock of search %r from a dead driver (pid %d on %s)",
                    self.search,
                    held.pid,
                    held.host,
                )
                break
        else:  # pragma: no cover - three lost races in a row
            raise ConfigError("--name", f"could not lock search {self.search!r}; try again")
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="driver-lock")
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                with self.engine.begin() as c:
                    n = c.execute(
                        LOCKS.update()
                        .where(LOCKS.c.search == self.search, LOCKS.c.token == self.token)
                        .values(beat=time.time())
                    ).rowcount
            except Exception as e:  # the database is away for a moment: try at the next beat
                log.debug("lock heartbeat failed: %s", e)
                continue
            if n == 0:
                self.lost = True
                log.error("another driver took over search %r's lock", self.search)
                return

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        try:
            with self.engine.begin() as c:
                c.execute(
                    LOCKS.delete().where(LOCKS.c.search == self.search, LOCKS.c.token == self.token)
                )
        except Exception as e:  # a dead holder's row is taken over by the next driver anyway
            log.warning("could not release the lock of search %r: %s", self.search, e)
        self.engine.dispose()

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
