"""`train.workers: K > 1`: one run as K data-parallel workers on Ray Train's `TorchTrainer`.

Ray Train starts the K worker processes and their torch.distributed group (gloo on CPU, NCCL on
GPU); each worker runs the ordinary trainer (`remedies.trainer.train`), which finds the group
and trains its share of every global batch (`remedies.distributed`). Rank 0 hands the trained
result back through a Ray Train checkpoint; the caller (the driver) runs the measures and writes
the run's checkpoint once. Besides the search service, the only module that imports Ray.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from remedies.config import RunConfig, config_to_dict
from remedies.errors import ConfigError

if TYPE_CHECKING:
    from remedies.data import Splits, StreamSplits
    from remedies.trainer import TrainResult

RESULT_FILE = "result.pt"


def uses_gpu(cfg: RunConfig) -> bool:
    d = cfg.train.device
    return d == "cuda" or (d == "auto" and torch.cuda.is_available())


def placeable(use_gpu: bool) -> int:
    """How many workers Ray can place: the running Ray's CPUs (GPUs), else this machine's."""
    import ray

    kind = "GPU" if use_gpu else "CPU"
    if ray.is_initialized():
        return int(ray.cluster_resources().get(kind, 0))
    if use_gpu:
        return torch.cuda.device_count()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_placeable(cfg: RunConfig) -> None:
    """One line, before Ray starts anything, when K workers (1 CPU or 1 GPU each) cannot be
    placed: Ray Train would otherwise wait for them forever."""
    k, gpu = cfg.train.workers, uses_gpu(cfg)
    have = placeable(gpu)
    if k > have:
        kind = "GPU" if gpu else "CPU"
        raise ConfigError(
            "train.workers",
            f"{k} workers need {k} {kind}s (one each), but Ray can "
            f"place {have} here; allowed: 1..{max(have, 1)}",
        )


def run_on_workers(
    fn: Callable[[Any], Any], payload: Any, workers: int, *, use_gpu: bool = False, log: bool = True
) -> Any:
    """`fn(payload)` on each of `workers` Ray Train workers (process group initialised); returns
    rank 0's return value. Starts a local Ray when none is running (and stops it after)."""
    import ray
    from ray.train import Checkpoint, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=log, configure_logging=False)
    try:
        ref = ray.put(payload)  # the object store, not the trainer's pickled config

        def per_worker(config: dict[str, Any]) -> None:
            import ray.train
            import ray.train.torch

            if use_gpu:
                torch.cuda.set_device(ray.train.torch.get_device())
            out = fn(ray.get(config["payload"]))
            rank = ray.train.get_context().get_world_rank()
            with tempfile.TemporaryDirectory() as d:
                checkpoint = None
                if rank == 0:
                    torch.save(out, Path(d) / RESULT_FILE)
                    checkpoint = Checkpoint.from_directory(d)
                # every rank reports (or rank 0 waits forever); rank 0's carries the result
                ray.train.report({"done": 1}, checkpoint=checkpoint)

        with tempfile.TemporaryDirectory(prefix="remedies-workers-") as storage:
            result = TorchTrainer(
                per_worker,
                train_loop_config={"payload": ref},
                scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
                run_config=RunConfig(name="remedies-train", storage_path=storage),
            ).fit()
            assert result.checkpoint is not None
            with result.checkpoint.as_directory() as d:
                return torch.load(Path(d) / RESULT_FILE, weights_only=False)
    finally:
        if started:
            ray.shutdown()


def train_on_workers(
    cfg: RunConfig, *, splits: Splits | StreamSplits, progress: bool = True
) -> TrainResult:
    """Train `cfg` on `cfg.train.workers` data-parallel workers; the result has the trained
    model (on the CPU) and every epoch's metrics, without measures or checkpoint."""
    check_placeable(cfg)
    payload = {"config": config_to_dict(cfg), "splits": splits, "progress": progress}
    return run_on_workers(
        _train_worker, payload, cfg.train.workers, use_gpu=uses_gpu(cfg), log=progress
    )


def _train_worker(payload: dict[str, Any]) -> TrainResult:
    from remedies.config import parse_config
    from remedies.trainer import train

    cfg = parse_config(payload["config"])
    result = train(cfg, splits=payload["splits"], measure=False, progress=payload["progress"])
    result.model = result.model.cpu()
    return result
