"""One driver per search: the lock row in the study's database, on SQLite and on a real
PostgreSQL server (what a cluster's drivers on different machines share)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from remedies.errors import ConfigError
from remedies.search.lock import LOCKS, STALE_S, DriverLock


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return request.getfixturevalue("postgres")


def put_row(url: str, search: str, **row) -> None:
    eng = sa.create_engine(url)
    LOCKS.metadata.create_all(eng, tables=[LOCKS])
    with eng.begin() as c:
        c.execute(LOCKS.delete().where(LOCKS.c.search == search))
        c.execute(LOCKS.insert().values(search=search, token="t-" + search, **row))
    eng.dispose()


def test_a_second_driver_is_refused_until_the_first_releases(url):
    a, b = DriverLock(url, "s1"), DriverLock(url, "s1")
    a.acquire()
    try:
        with pytest.raises(ConfigError) as e:
            b.acquire()
        msg = str(e.value)
        assert msg.startswith("--name: search 's1' is being run by another driver")
        assert f"pid {__import__('os').getpid()} on {socket.gethostname()}" in msg
        DriverLock(url, "s2").acquire()  # another search is another lock
    finally:
        a.release()
    b.acquire()
    b.release()


def test_a_dead_drivers_lock_is_taken_over(url):
    """Same host, process gone: at once. Another host: once its heartbeat is STALE_S old."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    put_row(
        url, "s3", host=socket.gethostname(), pid=dead.pid, proc_start=now - 5, since=now, beat=now
    )
    lk = DriverLock(url, "s3")
    lk.acquire()
    lk.release()
    put_row(url, "s4", host="elsewhere", pid=1, proc_start=0.0, since=now, beat=now - 10)
    with pytest.raises(ConfigError, match=r"pid 1 on elsewhere"):
        DriverLock(url, "s4").acquire()
    put_row(url, "s4", host="elsewhere", pid=1, proc_start=0.0, since=now, beat=now - STALE_S - 1)
    lk = DriverLock(url, "s4")
    lk.acquire()
    lk.release()


def test_a_reused_pid_does_not_keep_a_dead_drivers_lock(url):
    """The row's pid now belongs to another process (this one, started later): stale."""
    import os

    now = time.time()
    put_row(
        url,
        "s5",
        host=socket.gethostname(),
        pid=os.getpid(),
        proc_start=now - 10**6,
        since=now,
        beat=now,
    )
    lk = DriverLock(url, "s5")
    lk.acquire()
    lk.release()
