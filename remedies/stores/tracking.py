"""MLflow bookkeeping — the only module that imports mlflow.

Why `MlflowClient` with explicit run ids and not the fluent `mlflow.start_run`: trials run in
threads inside Ray actors, retries and restores must continue the *same* run (its id travels in
the trial's Tune checkpoint), and the driver must be able to close a trial's run that Tune stopped
from outside (ASHA). Explicit ids make all three straightforward and touch no process-wide state
(`mlflow.set_experiment` would set MLFLOW_EXPERIMENT_ID for every later caller).
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from remedies.errors import ConfigError
from remedies.io import folder_lock

PARENT_TAG = "mlflow.parentRunId"
DEFAULT_URI = "sqlite:///mlflow.db"
# MLflow's HTTP client retries a dead server for minutes without a word; fail fast instead and
# retry visibly here (Outbox), where the progress line can say so
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
OUTAGE_LIMIT_S = float(os.environ.get("REMEDIES_TRACKING_OUTAGE_LIMIT_S", "900"))
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """Where runs go. Credentials are kept apart from the URI, so the URI can be printed,
    stored in the study and passed around, and the password is only ever an environment
    variable of the processes that talk to the server (MLflow reads MLFLOW_TRACKING_*)."""

    uri: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def public(self) -> Target:
        """Without the password: what may be pickled into Tune's state (tuner.pkl) or shipped
        to trials, which get the password from the environment they inherit from the driver
        (local Ray; on a cluster the nodes' environment must hold it)."""
        return Target(self.uri, self.username, None)

    def apply(self) -> None:
        """Make this process's MLflow client send the credentials (driver and trial workers)."""
        if self.username is not None:
            os.environ["MLFLOW_TRACKING_USERNAME"] = self.username
        if self.password is not None:
            os.environ["MLFLOW_TRACKING_PASSWORD"] = self.password


def mask(uri: str) -> str:
    """The URI with any password replaced by *** (for messages)."""
    p = urlsplit(uri)
    if p.password is None:
        return uri
    host = p.hostname or ""
    port = f":{p.port}" if p.port else ""
    return urlunsplit((p.scheme, f"{p.username}:***@{host}{port}", p.path, p.query, p.fragment))


def client(uri: str):

    return MlflowClient(tracking_uri=uri, registry_uri=uri if uri.startswith("sqlite") else None)


def resolve(uri: str | None) -> Target:
    """`--tracking-uri` (or MLFLOW_TRACKING_URI, or `sqlite:///mlflow.db` here) made usable by
    every worker: a SQLite path made absolute, `user:pass@` moved out of the URI."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    allowed = "allowed: sqlite:///PATH.db or http(s)://[USER:PASSWORD@]HOST:PORT"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise ConfigError("--tracking-uri", f"folder {folder} does not exist")
        return Target(uri)
    p = urlsplit(uri)
    if p.scheme not in ("http", "https") or not p.hostname:
        if uri.startswith("file:") or "://" not in uri:
            raise ConfigError(
                "--tracking-uri",
                f"{mask(uri)!r}: the file store is refused by MLflow ≥ 3.13; {allowed}",
            )
        raise ConfigError("--tracking-uri", f"{mask(uri)!r}: unsupported; {allowed}")
    try:
        port = f":{p.port}" if p.port else ""
    except ValueError:
        raise ConfigError("--tracking-uri", f"{mask(uri)!r}: bad port; {allowed}") from None
    bare = urlunsplit((p.scheme, f"{p.hostname}{port}", p.path, p.query, p.fragment)).rstrip("/")
    if p.username is not None:
        return Target(bare, unquote(p.username), unquote(p.password or ""))
    return Target(
        bare, os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    )


def resolve_uri(uri: str | None) -> str:
    return resolve(uri).uri


def preflight(target: Target) -> None:
    """Fail fast (one line, before Ray starts) when the server is down or refuses us."""
    if not target.uri.startswith("http"):
        return

    try:
        urllib.request.urlopen(f"{target.uri}/health", timeout=10).read()
    except (OSError, ValueError) as e:
        why = getattr(e, "reason", None) or e
        raise ConfigError(
            "--tracking-uri", f"no MLflow server answers at {target.uri} ({why})"
        ) from None
    req = urllib.request.Request(f"{target.uri}/api/2.0/mlflow/experiments/search?max_results=1")
    if target.username is not None:
        token = base64.b64encode(f"{target.username}:{target.password or ''}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            who = "no credentials" if target.username is None else f"user {target.username!r}"
            raise ConfigError(
                "--tracking-uri",
                f"the MLflow server at {target.uri} refused "
                f"{who} (HTTP {e.code}); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD or pass http://USER:PASSWORD@HOST:PORT",
            ) from None
        raise ConfigError(
            "--tracking-uri",
            f"the MLflow server at {target.uri} answered HTTP {e.code} to a search request",
        ) from None
    except OSError as e:
        raise ConfigError(
            "--tracking-uri", f"no MLflow server answers at {target.uri} ({e})"
        ) from None


def prepare_store(uri: str) -> None:
    """Create (or migrate) a SQLite tracking database once, under a lock on its folder: two
    drivers creating `mlflow.db` together would both run MLflow's migrations and one dies."""
    if not uri.startswith("sqlite:///"):
        return
    folder = Path(uri.removeprefix("sqlite:///")).parent
    with folder_lock(folder):
        client(uri).search_experiments(max_results=1)


def experiment_id(uri: str, name: str) -> str:
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return c.create_experiment(name)
    except Exception:  # created concurrently by another driver
        return c.get_experiment_by_name(name).experiment_id


def start_run(
    uri: str, exp_id: str, name: str, tags: dict[str, Any], parent: str | None = None
) -> str:
    tags = {k: str(v) for k, v in tags.items()}  # the REST API takes strings only
    if parent:
        tags[PARENT_TAG] = parent
    return client(uri).create_run(exp_id, run_name=name, tags=tags).info.run_id


def resume_run(uri: str, run_id: str) -> None:
    """A retried/restored trial continues its run: mark it RUNNING again."""
    client(uri).update_run(run_id, status="RUNNING")


def _param_str(v: Any) -> str:
    s = "null" if v is None else str(v)
    return s if len(s) <= 6000 else s[:5997] + "..."


def log_params(uri: str, run_id: str, params: dict[str, Any]) -> None:
    """Params are immutable in MLflow: a retried trial logs the same values, so skip existing."""

    c = client(uri)
    have = c.get_run(run_id).data.params
    todo = [Param(k[:250], _param_str(v)) for k, v in params.items() if k[:250] not in have]
    for i in range(0, len(todo), 100):
        c.log_batch(run_id, params=todo[i : i + 100])


def log_metrics(uri: str, run_id: str, metrics: dict[str, Any], step: int = 0) -> None:
    log_metric_rows(uri, run_id, [metrics], [step])


def log_metric_rows(uri: str, run_id: str, rows: list[dict[str, Any]], steps: list[int]) -> None:
    """Several steps' metrics in as few HTTP/SQL calls as possible (≤ 1000 values a call)."""

    now = int(time.time() * 1000)
    ms = [
        Metric(k, float(v), now, step)
        for row, step in zip(rows, steps, strict=True)
        for k, v in row.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    c = client(uri)
    for i in range(0, len(ms), 1000):
        c.log_batch(run_id, metrics=ms[i : i + 1000])


def set_tags(uri: str, run_id: str, tags: dict[str, Any]) -> None:

    client(uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_yaml(uri: str, run_id: str, data: dict[str, Any], name: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_text(yaml.safe_dump(data, sort_keys=False))
        client(uri).log_artifact(run_id, str(p))


def log_files(uri: str, run_id: str, paths: Iterable[Path]) -> None:
    c = client(uri)
    for p in paths:
        c.log_artifact(run_id, str(p))


class TrackingLost(RuntimeError):
    """The tracking server stayed away longer than OUTAGE_LIMIT_S: the trial fails, saying so."""


class Outbox:
    """Tracking writes that survive an outage: queued in order, retried until the server is
    back, never dropped. `flush` never raises for a connection error before the outage limit;
    past it, `TrackingLost`. Both the trial (metrics) and the driver (run lifecycle) use one."""

    def __init__(self, limit_s: float | None = None) -> None:
        self.ops: list[tuple[str, Callable[[], Any]]] = []
        self.retries = 0
        self.down_since: float | None = None
        self.last_error = ""
        self.limit_s = OUTAGE_LIMIT_S if limit_s is None else limit_s

    def put(self, what: str, op: Callable[[], Any]) -> None:
        self.ops.append((what, op))

    @property
    def pending(self) -> int:
        return len(self.ops)

    def flush(self) -> bool:
        """Send what is queued; True when nothing is left."""
        while self.ops:
            what, op = self.ops[0]
            try:
                op()
            except Exception as e:  # MLflow raises its own types for HTTP and SQL errors
                self.retries += 1
                self.last_error = f"{what}: {str(e).splitlines()[0][:200] if str(e) else e!r}"
                now = time.monotonic()
                if self.down_since is None:
                    self.down_since = now
                    log.warning("tracking server unavailable (%s); will retry", self.last_error)
                if now - self.down_since > self.limit_s:
                    raise TrackingLost(
                        f"tracking server away for {now - self.down_since:.0f}s ({self.last_error})"
                    ) from None
                return False
            self.ops.pop(0)
            if self.down_since is not None:
                log.warning("tracking server back after %.0fs", time.monotonic() - self.down_since)
            self.down_since = None
        return True

    def drain(self, timeout_s: float, every_s: float = 2.0) -> bool:
        """Flush until empty or `timeout_s` passed (the end of a trial or of a search)."""
        deadline = time.monotonic() + timeout_s
        while not self.flush():
            if time.monotonic() > deadline:
                return False
            time.sleep(every_s)
        return True


def find_child_run(
    uri: str, exp_id: str, parent: str, value: int | str, tag: str = "trial_number"
) -> str | None:
    """The run of trial `value` (or reference, `tag="reference_key"`) of this search, if one was
    created (a driver killed between creating a run and recording its id must not leave a
    second one)."""
    where = f"tags.`{PARENT_TAG}` = '{parent}' and tags.{tag} = '{value}'"
    runs = client(uri).search_runs([exp_id], filter_string=where, max_results=2)
    return runs[0].info.run_id if runs else None


def close_run(uri: str, run_id: str, status: str, tags: dict[str, Any]) -> None:
    """Tag a run with its decided outcome and end it — unless it already ended: a finished
    trial's run is never rewritten (resume, retried closes after an outage)."""
    c = client(uri)
    if c.get_run(run_id).info.status != "RUNNING":
        return
    set_tags(uri, run_id, tags)
    c.set_terminated(run_id, status=status)


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    """FINISHED / FAILED / KILLED. Idempotent: a run already terminated keeps its status."""
    c = client(uri)
    if c.get_run(run_id).info.status == "RUNNING":
        c.set_terminated(run_id, status=status)


def delete_run(uri: str, run_id: str) -> None:
    client(uri).delete_run(run_id)


def run_status(uri: str, run_id: str) -> str:
    return client(uri).get_run(run_id).info.status


def child_runs(uri: str, exp_name: str, parent: str, role: str = "trial") -> list[Any]:
    """Trial runs of one search (used by tests and the report); `role="reference"`: its
    baseline runs (SB, plain LB), which sit under the same parent but are never trials."""
    c = client(uri)
    exp = c.get_experiment_by_name(exp_name)
    if exp is None:
        return []
    runs = c.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'", max_results=10000
    )
    return [r for r in runs if r.data.tags.get("role", "trial") == role]


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client(uri).get_metric_history(run_id, key)]
