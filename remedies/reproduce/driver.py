"""Run a reproduction: the planned runs as Ray tasks (one task per run, so a cluster or a GPU box
runs them side by side), a progress bar with an ETA, then the report, logged to MLflow."""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from remedies.config import parse_config
from remedies.data import load_data
from remedies.reproduce.protocol import ReproduceOptions, RunSpec, plan
from remedies.reproduce.report import write_report
from remedies.reproduce.task import run_one
from remedies.search.node_types import gpus_per_trial
from remedies.search.runtime import (
    TaskPool,
    cluster_resources,
    interruptible,
    start_ray,
    stop_ray,
)
from remedies.stores import tracking


@dataclass
class Outcome:
    spec: RunSpec
    result: dict[str, Any]


class Bar:
    """`[#####-----] 5/14 runs  2 running  312s  ETA 560s  last: F1-s0-b256 test 71.2%`."""

    def __init__(self, total: int, quiet: bool = False, width: int = 24) -> None:
        self.total, self.quiet, self.width = total, quiet, width
        self.t0 = time.time()

    def line(self, done: int, running: int, last: str = "") -> str:
        elapsed = time.time() - self.t0
        fill = round(self.width * done / self.total) if self.total else self.width
        eta = f"  ETA {elapsed / done * (self.total - done):.0f}s" if 0 < done < self.total else ""
        return (
            f"[{'#' * fill}{'-' * (self.width - fill)}] {done}/{self.total} runs  "
            f"{running} running  {elapsed:.0f}s{eta}" + (f"  last: {last}" if last else "")
        )

    def show(self, done: int, running: int, last: str = "") -> None:
        if not self.quiet:
            print(self.line(done, running, last), file=sys.stderr, flush=True)


def run_task(raw: dict[str, Any], keep: bool, splits, state: Path | None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One run, in a Ray task (`TaskPool`); `state`: where it keeps its training state."""
    try:
        return run_one(raw, keep, splits, state)
    finally:  # a worker process is reused: hand what PyTorch cached back to the other runs
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def out_of_gpu_memory(err: BaseException) -> bool:
    """A run that failed for want of GPU memory (Ray wraps the task's exception)."""
    cause = getattr(err, "cause", None)
    return isinstance(cause, torch.OutOfMemoryError) or "CUDA out of memory" in str(err)


RUNS = "runs"  # OUT/runs/NAME.pt: each finished run's record, written the moment it ends


def saved_run(out: Path, spec: RunSpec) -> dict[str, Any] | None:
    """The record an earlier invocation kept of this very run (same complete config), if any."""
    p = out / RUNS / f"{spec.name}.pt"
    if not p.is_file():
        return None
    rec = torch.load(p, weights_only=False)
    return rec if rec.get("config") == spec.config else None


def state_of(out: Path | None, spec: RunSpec) -> Path | None:
    """Where a run keeps its training state while it trains (OUT/runs/.NAME.state.pt)."""
    if out is None:
        return None
    (out / RUNS).mkdir(parents=True, exist_ok=True)
    return out / RUNS / f".{spec.name}.state.pt"


def save_run(out: Path, spec: RunSpec, rec: dict[str, Any]) -> None:
    """Whole or not at all: a kill mid-write leaves no half record to be reused."""
    folder = out / RUNS
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{spec.name}.pt.tmp"
    torch.save(rec, tmp)
    os.replace(tmp, folder / f"{spec.name}.pt")
    (folder / f".{spec.name}.state.pt").unlink(missing_ok=True)  # decided: no resume aid left


def run_specs(
    specs: list[RunSpec],
    *,
    jobs: int,
    quiet: bool = False,
    gpu: float = 0.0,
    out: Path | None = None,
) -> list[Outcome]:
    """Every spec as one Ray task, at most `jobs` at a time; results in the specs' order. With
    `out`, each finished run is recorded there as it ends, and a run recorded by an earlier,
    interrupted invocation is not run again (`remedies reproduce --resume`)."""
    # more runs at once than CPUs (a busy or small machine): each run asks for a share of one
    cpus = float(cluster_resources().get("CPU", 1.0))
    pool = TaskPool(
        run_task, width=jobs, num_cpus=min(1.0, cpus / jobs), num_gpus=gpu, max_retries=1
    )
    data: dict[str, Any] = {}  # one copy of each data set in the object store
    shipped: dict[int, Any] = {}  # each run's data set in the object store
    results: dict[int, dict[str, Any]] = {}
    for i, spec in enumerate(specs):
        if out is not None and (rec := saved_run(out, spec)) is not None:
            results[i] = rec
            continue
        dcfg = parse_config(spec.config).data
        key = json.dumps(dcfg.model_dump(mode="json"), sort_keys=True)
        if key not in data:
            data[key] = pool.put(load_data(dcfg))
        shipped[i] = data[key]
        pool.submit(i, spec.config, spec.keep_weights, shipped[i], state_of(out, spec))
    reused = len(results)
    # a run that runs out of GPU memory beside others (the largest batches of Fig. 4) is run
    # again alone on a whole GPU, which Ray grants only once no other run holds a share of it;
    # it holds the queue until then, and nothing starts beside it
    alone: set[int] = set()

    def hold(i: int) -> bool:
        return bool(alone & set(pool.running)) or (i in alone and bool(pool.running))

    bar = Bar(len(specs), quiet)
    last = f"{reused} runs kept from an earlier invocation (--resume)" if reused else ""
    bar.show(len(results), 0, last)
    while len(pool):
        got = pool.next_done(timeout=30.0, hold=hold)
        if got is not None:
            i, r, err = got
            if err is not None:
                if not (0 < gpu < 1 and i not in alone and out_of_gpu_memory(err)):
                    raise err
                alone.add(i)
                spec = specs[i]
                pool.submit(
                    i,
                    spec.config,
                    spec.keep_weights,
                    shipped[i],
                    state_of(out, spec),
                    options={"num_gpus": 1.0},
                    first=True,
                )
                last = f"{spec.name} ran out of GPU memory beside other runs: again, alone"
            else:
                results[i] = r
                if out is not None:
                    save_run(out, specs[i], r)
                last = (
                    f"{specs[i].name} train {r['train_accuracy']:.1f}% test "
                    f"{r['test_accuracy']:.1f}% ({r['wall_time_s']:.0f}s)"
                )
        bar.show(len(results), len(pool.running), last)
    return [Outcome(s, results[i]) for i, s in enumerate(specs)]


def gpu_share(setting: float | str, jobs: int, up: float, auto_per_run: float) -> float:
    """GPUs each run asks Ray for. `auto`: none on a CPU cluster (`auto_per_run` is what
    `gpus_per_trial("auto")` decided: 0 or 1); else the `up` GPUs shared by the `jobs` runs at
    once (1 GPU and 2 jobs → 0.5 each, both training on it side by side), at most one each; 1
    each when the only GPUs are node types the autoscaler has yet to launch. A run with no GPU
    share sees no GPU (Ray hides them), so without this a GPU box trains on its CPUs."""
    if setting != "auto":
        return float(setting)
    if auto_per_run == 0:
        return 0.0
    return min(1.0, up / jobs) if up > 0 else 1.0


def reproduce(
    opts: ReproduceOptions,
    out: Path,
    *,
    jobs: int = 2,
    address: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = "reproduce",
    quiet: bool = False,
    command: str = "",
    markdown: Path | None = None,
    gpu: float | str = "auto",
    resume: bool = False,
) -> dict[str, Any]:
    """Plan, run, report. Returns {report, pngs, checks}. Bad options fail before any run.
    Each run's record is kept in OUT/runs/ as it ends; `resume` reuses those an interrupted
    invocation of the same command left (the same complete config), else they are cleared."""

    specs = plan(opts)  # validates every run's config first
    target = tracking.resolve(tracking_uri)
    tracking.preflight(target)
    target.apply()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        shutil.rmtree(out / RUNS, ignore_errors=True)
    reaper = start_ray(address)
    t0 = time.time()
    try:
        share = gpu_share(
            gpu,
            jobs,
            float(cluster_resources().get("GPU", 0.0)),
            gpus_per_trial("auto") if gpu == "auto" else 0.0,
        )
        with interruptible():  # SIGTERM as Ctrl-C: exit 130, finished runs kept for --resume
            outcomes = run_specs(specs, jobs=jobs, quiet=quiet, gpu=share, out=out)
    finally:
        stop_ray(reaper)
    summary = write_report(
        opts, outcomes, out, command=command, wall_s=time.time() - t0, markdown=markdown
    )
    try:
        log_to_mlflow(target.uri, experiment, opts, outcomes, summary, out)
    except Exception as e:  # the report on disk is the result; MLflow is a copy of it
        print(f"remedies: warning: could not log the reproduction to MLflow: {e}", file=sys.stderr)
    return summary


def log_to_mlflow(
    uri: str,
    experiment: str,
    opts: ReproduceOptions,
    outcomes: list[Outcome],
    summary: dict[str, Any],
    out: Path,
) -> None:
    """One parent run (options, checks, report.md, PNGs, results.json) and one child run per
    training run (its config, accuracies, every measure, and each measure's suspect flag)."""
    tracking.prepare_store(uri)
    exp = tracking.experiment_id(uri, experiment)
    parent = tracking.start_run(
        uri, exp, f"reproduce-{time.strftime('%Y%m%d-%H%M%S')}", {"kind": "reproduce"}
    )
    tracking.log_params(uri, parent, opts.model_dump(mode="json"))
    tracking.log_metrics(uri, parent, {k: float(v) for k, v in summary["metrics"].items()})
    tracking.log_files(
        uri, parent, [summary["report"], out / "results.json", *sorted(out.glob("*.png"))]
    )
    for o in outcomes:
        r = o.result
        run_id = tracking.start_run(
            uri, exp, o.spec.name, {"parts": ",".join(o.spec.parts)}, parent=parent
        )
        tracking.log_params(
            uri,
            run_id,
            {
                "batch": o.spec.batch,
                "seed": o.spec.seed,
                "warm_k": o.spec.warm_k,
                "net": o.spec.net,
            },
        )
        metrics = {
            k: r[k]
            for k in (
                "train_accuracy",
                "test_accuracy",
                "train_loss",
                "test_loss",
                "distance_from_init",
                "wall_time_s",
            )
        }
        metrics.update(r["sharpness"])
        metrics.update({f"suspect_{d['key']}": float(d["suspect"]) for d in r["details"]})
        tracking.log_metrics(uri, run_id, metrics)
        why = {
            f"suspect_{d['key']}": "; ".join(d["suspect_why"])[:4000]
            for d in r["details"]
            if d["suspect"]
        }
        if why:
            tracking.set_tags(uri, run_id, why)
        tracking.end_run(uri, run_id)
    tracking.end_run(uri, parent)
