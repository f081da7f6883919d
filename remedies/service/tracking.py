"""MLflow bookkeeping — the only module that imports mlflow.

Why `MlflowClient` with explicit run ids and not the fluent `mlflow.start_run`: trials run in
threads inside Ray actors, retries and restores must continue the *same* run (its id travels in
the trial's Tune checkpoint), and the driver must be able to close a trial's run that Tune stopped
from outside (ASHA). Explicit ids make all three straightforward and touch no process-wide state
(`mlflow.set_experiment` would set MLFLOW_EXPERIMENT_ID for every later caller).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from remedies.errors import ConfigError

PARENT_TAG = "mlflow.parentRunId"
DEFAULT_URI = "sqlite:///mlflow.db"


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri if uri.startswith("sqlite") else None)


def resolve_uri(uri: str | None) -> str:
    """Default: `sqlite:///mlflow.db` in the working directory, made absolute for Ray workers."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    if uri.startswith("file:") or "://" not in uri:
        raise ConfigError("--tracking-uri", f"{uri!r}: the file store is refused by MLflow ≥ 3.13; "
                          "allowed: sqlite:///PATH.db or http(s)://HOST:PORT")  # fmt: skip
    return uri


def check_reachable(uri: str) -> None:
    """Fail fast (one line) when a tracking server is down, before any trial starts."""
    if not uri.startswith("http"):
        return
    import urllib.request

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10).read()
    except OSError as e:
        raise ConfigError("--tracking-uri", f"no MLflow server answers at {uri} ({e})") from None


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


def start_run(uri: str, exp_id: str, name: str, tags: dict[str, str],
              parent: str | None = None) -> str:  # fmt: skip
    tags = dict(tags)
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
    from mlflow.entities import Param

    c = client(uri)
    have = c.get_run(run_id).data.params
    todo = [Param(k[:250], _param_str(v)) for k, v in params.items() if k[:250] not in have]
    for i in range(0, len(todo), 100):
        c.log_batch(run_id, params=todo[i : i + 100])


def log_metrics(uri: str, run_id: str, metrics: dict[str, Any], step: int = 0) -> None:
    log_metric_rows(uri, run_id, [metrics], [step])


def log_metric_rows(uri: str, run_id: str, rows: list[dict[str, Any]], steps: list[int]) -> None:
    """Several steps' metrics in as few HTTP/SQL calls as possible (≤ 1000 values a call)."""
    from mlflow.entities import Metric

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
    from mlflow.entities import RunTag

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


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    """FINISHED / FAILED / KILLED. Idempotent: a run already terminated keeps its status."""
    c = client(uri)
    if c.get_run(run_id).info.status == "RUNNING":
        c.set_terminated(run_id, status=status)


def delete_run(uri: str, run_id: str) -> None:
    client(uri).delete_run(run_id)


def run_status(uri: str, run_id: str) -> str:
    return client(uri).get_run(run_id).info.status


def child_runs(uri: str, exp_name: str, parent: str) -> list[Any]:
    """Trial runs of one search (used by tests and the report)."""
    c = client(uri)
    exp = c.get_experiment_by_name(exp_name)
    if exp is None:
        return []
    return c.search_runs([exp.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'",
                         max_results=10000)  # fmt: skip


def close_children(uri: str, exp_id: str, parent: str, status: str) -> int:
    """End trial runs a stopped driver left RUNNING (KILLED, tag status); a resume reopens them."""
    c = client(uri)
    runs = c.search_runs([exp_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}' and "
                         "attributes.status = 'RUNNING'", max_results=10000)  # fmt: skip
    for r in runs:
        set_tags(uri, r.info.run_id, {"status": status})
        c.set_terminated(r.info.run_id, status="KILLED")
    return len(runs)


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client(uri).get_metric_history(run_id, key)]
