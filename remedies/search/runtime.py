"""Ray, started and stopped one way for every run the service starts: search trials (through
Tune), the search's references and `remedies reproduce`'s runs (through `TaskPool`).

Also the driver's signals: Ctrl-C and SIGTERM (what `kill`, systemd, Kubernetes and Slurm send)
both stop the work the same way, and are installed *after* Ray starts, because `ray.init`
installs its own SIGTERM handler in the driver, which aborted with a C++ stack trace (exit 134).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from remedies.errors import ConfigError

log = logging.getLogger(__name__)

os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Ctrl-C raises KeyboardInterrupt here (Tune's own handler would end fit() as if finished)
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
# trials are the work: Ray would start them at niceness 15, behind any other process
os.environ.setdefault("RAY_worker_niceness", "0")


class Interrupt:
    """Ctrl-C or SIGTERM, remembered as well as raised. A KeyboardInterrupt lands in whatever
    Python code runs at that instant, and library code that catches BaseException can swallow
    it (seen once in CI: a search sent SIGINT mid-training ran all its trials and exited 0). The
    flag survives that: Tune's stopper ends fit(), no run is decided from the partial result it
    was stopped at, and the search exits 130 with its running runs `interrupted`."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        raise KeyboardInterrupt


INTERRUPT = Interrupt()


@contextmanager
def interruptible() -> Iterator[Interrupt]:
    """SIGINT and SIGTERM → `INTERRUPT` while the block runs; the previous handlers after."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    INTERRUPT.requested = False
    for s in old:
        signal.signal(s, INTERRUPT.handler)
    try:
        yield INTERRUPT
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def start_ray(address: str | None) -> subprocess.Popen | None:
    """Join `address`, or start a local instance bound to 127.0.0.1 with no dashboard, watched
    by a reaper process that ends Ray's processes if this driver dies without cleaning up.
    Returns the reaper (None when Ray was already running in this process or is remote)."""
    if ray.is_initialized():
        return None
    try:
        # "local": always a new instance — with None, Ray joins whatever cluster another
        # process on this machine started (its /tmp/ray/ray_current_cluster)
        from remedies.search.placement import SLOT, SLOTS

        ray.init(
            address=address or "local",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            # data-parallel trials' drivers take one of these, not a CPU (placement.py)
            resources=None if address else {SLOT: float(SLOTS)},
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local instance"
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("--address", f"cannot start or reach Ray at {where}: {msg}") from None
    if address is None and (ip := ray.util.get_node_ip_address()) != "127.0.0.1":
        # the loopback switch (remedies.cli.main.LOCAL_RAY_ENV) was set after Ray's import:
        # this instance listens on every interface — refuse rather than expose it
        ray.shutdown()
        raise ConfigError(
            "--address",
            f"a local Ray instance would listen on {ip}, not 127.0.0.1: set "
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is imported, or pass --address",
        )
    if address is not None:
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "remedies.search.reaper", str(os.getpid())],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_ray(reaper: subprocess.Popen | None) -> None:

    if reaper is None:
        return
    ray.shutdown()
    reaper.terminate()  # it would also end by itself once this process is gone


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray up (or joined) for the block, then down; signals handled by `interruptible` inside."""
    reaper = start_ray(address)
    try:
        with interruptible():
            yield
    finally:
        stop_ray(reaper)


def missing_on_nodes(paths: list[str]) -> tuple[str, str] | None:
    """(node, path) of the first file a node that can run trials does not have, else None."""

    @ray.remote(num_cpus=0)
    def missing(ps: list[str]) -> list[str]:
        return [p for p in ps if not os.path.exists(p)]

    runners = [n for n in alive_nodes() if n["Resources"].get("CPU", 0) > 0]
    refs = [
        missing.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(paths)
        for n in runners
    ]
    for n, gone in zip(runners, ray.get(refs, timeout=120), strict=True):
        if gone:
            return f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})", gone[0]
    return None


def alive_nodes() -> list[dict[str, Any]]:

    return [n for n in ray.nodes() if n.get("Alive")]


def cluster_resources() -> dict[str, float]:

    return dict(ray.cluster_resources())


class TaskPool:
    """At most `width` calls of `fn` as Ray tasks at once, results as each ends: how the
    references and `reproduce`'s runs use Ray (trials use Tune). `submit` queues; `next_done`
    blocks for the next finished task and returns (key, result, error) — never raises for a
    task's own failure, so the caller decides what became of each run exactly once."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        width: int,
        num_cpus: float,
        num_gpus: float = 0.0,
        max_retries: int = 0,
        on_start: Callable[[Any], None] | None = None,
    ) -> None:
        """`on_start(key)` runs just before a queued task starts (after it leaves the queue,
        before its arguments are shipped): what must exist only once a task really runs."""
        self.ray = ray
        self.on_start = on_start
        self.width = width
        self.task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)(fn)
        self.todo: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
        self.live: dict[Any, Any] = {}  # object ref → key

    def put(self, obj: Any) -> Any:
        """`obj` in the object store once, for every task that takes it."""
        return self.ray.put(obj)

    def submit(
        self, key: Any, *args: Any, options: dict[str, Any] | None = None, first: bool = False
    ) -> None:
        item = (key, args, options or {})
        if first:
            self.todo.insert(0, item)
        else:
            self.todo.append(item)

    def __len__(self) -> int:
        return len(self.todo) + len(self.live)

    @property
    def running(self) -> list[Any]:
        return list(self.live.values())

    def fill(self, hold: Callable[[Any], bool] = lambda key: False) -> None:
        """Start queued tasks up to `width`; `hold(key)` keeps the queue's head waiting."""
        while self.todo and len(self.live) < self.width and not hold(self.todo[0][0]):
            key, args, opts = self.todo.pop(0)
            if self.on_start is not None:
                self.on_start(key)
            task = self.task.options(**opts) if opts else self.task
            self.live[task.remote(*args)] = key

    def next_done(
        self, timeout: float | None = None, hold: Callable[[Any], bool] = lambda key: False
    ) -> tuple[Any, Any, BaseException | None] | None:
        """The next finished task as (key, result, error); None if none ended in `timeout`."""
        self.fill(hold)
        if not self.live:
            return None
        ready, _ = self.ray.wait(list(self.live), num_returns=1, timeout=timeout)
        if not ready:
            return None
        key = self.live.pop(ready[0])
        try:
            return key, self.ray.get(ready[0]), None
        except Exception as e:
            return key, None, e

    def cancel(self) -> list[Any]:
        """Stop every running task (an interrupt): their keys, for the caller to mark."""
        keys = list(self.live.values())
        for ref in self.live:
            self.ray.cancel(ref, force=True)
        self.live.clear()
        self.todo.clear()
        return keys


def first_line(e: BaseException) -> str:
    """A task's error as one line: Ray wraps it in a traceback; keep the cause's own words."""
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"[:300]


def ray_log_to_file(name: str) -> Path:
    """Ray's and Tune's own log records (a failed trial's traceback, repeated per retry) go to a
    file, not the terminal: a search on a full disk printed 327 lines of them. Each failed trial
    still gets one line with its error's last line, and the summary names this file."""
    folder = Path(tempfile.gettempdir()) / "remedies-logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    handler = logging.FileHandler(path, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    for n in ("ray", "ray.tune", "ray.train", "ray.air"):
        lg = logging.getLogger(n)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.addHandler(handler)
        lg.propagate = False
    return path
