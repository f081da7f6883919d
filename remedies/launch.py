"""Who trains a run: this process alone (the engine), or `train.workers` data-parallel workers
started through Ray Train (`remedies.workers`); and the checkpoint written from the result.

Why here and not in the engine: the engine trains one process's share and imports no Ray, so a
user's job and every test of the loop run without a cluster; the one place that decides to
start a worker group is this function, which every caller (the CLI, a search's trial, a
reproduction run, `export --confirm-seeds`) goes through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from remedies.config import RunConfig
from remedies.data import Splits, StreamSplits, load_data
from remedies.engine.distributed import world
from remedies.engine.schedule import check_batch_schedule
from remedies.engine.trainer import Report, TrainResult, train


def fit(
    cfg: RunConfig,
    *,
    splits: Splits | StreamSplits | None = None,
    report: Report | None = None,
    out_dir: Path | None = None,
    measure: bool = True,
    progress: bool = True,
    resume: dict[str, Any] | None = None,
    expose_state: Callable[[Callable[[], dict[str, Any]]], None] | None = None,
    per_worker: dict[str, float] | None = None,
) -> TrainResult:
    """Train `cfg` as the engine's `train` does (the same `report`, `resume` and `expose_state`
    contract), on `cfg.train.workers` workers when there are several; then, with `out_dir` and
    `train.checkpoint`, write OUT/checkpoint.pt.

    `per_worker`: with several workers, each one's Ray resources (a search's trial; the caller
    has checked they can be placed); default one CPU (or GPU) each, checked by the workers."""
    if cfg.train.workers > 1 and world()[1] == 1:  # this process starts the group
        from remedies.workers import train_on_workers  # imports Ray

        t0 = time.perf_counter()
        splits = splits or load_data(cfg.data)
        check_batch_schedule(cfg, splits.n_train)  # one line before any worker starts
        # every epoch's row reaches `report` while the workers train; a snapshot (rank 0's
        # state, every rank's RNGs) is taken when the caller asks; `resume` continues one
        result = train_on_workers(
            cfg,
            splits=splits,
            progress=progress,
            report=report,
            resume=resume,
            expose_state=expose_state,
            per_worker=per_worker,
            measure=measure,  # on rank 0, on its device, before the workers give it back
        )
        result.wall_time_s = time.perf_counter() - t0
    else:
        result = train(
            cfg,
            splits=splits,
            report=report,
            measure=measure,
            progress=progress,
            resume=resume,
            expose_state=expose_state,
        )
    if out_dir is not None and cfg.train.checkpoint:
        from remedies.engine.checkpoint import save_checkpoint

        result.checkpoint = str(save_checkpoint(Path(out_dir) / "checkpoint.pt", result))
    return result
