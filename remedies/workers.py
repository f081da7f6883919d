"""`train.workers: K > 1`: one run as K data-parallel workers on Ray Train's `TorchTrainer`.

Ray Train starts the K worker processes and their torch.distributed group (gloo on CPU, NCCL on
GPU); each worker runs the ordinary trainer (`remedies.engine.trainer.train`), which finds the group
and trains its share of every global batch (`remedies.engine.distributed`). After training, rank 0
runs the measures on its own device (the one Ray gave it: a search's trial driver holds no GPU
and only a sliver of CPU, so measuring there would use what Ray did not give it) while the
other ranks wait at the report; rank 0 then hands the measured result back through a Ray
Train checkpoint, and the caller writes the run's checkpoint once. Besides the search service,
the only module that imports Ray.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from remedies.config import RunConfig, config_to_dict
from remedies.errors import ConfigError

if TYPE_CHECKING:
    from remedies.data import Splits, StreamSplits
    from remedies.engine.trainer import TrainResult

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
    fn: Callable[[Any], Any],
    payload: Any,
    workers: int,
    *,
    use_gpu: bool = False,
    per_worker: dict[str, float] | None = None,
) -> Any:
    """`fn(payload)` on each of `workers` Ray Train workers (process group initialised); returns
    rank 0's return value. `per_worker`: each worker's Ray resources (default 1 CPU, or 1 GPU).
    Ray is the caller's to start (`remedies.search.runtime.ray_session`: the one `ray.init`)."""
    import ray
    from ray.train import Checkpoint, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        raise RuntimeError("Ray is not running: start it with remedies.search.runtime.ray_session")
    ref = ray.put(payload)  # the object store, not the trainer's pickled config

    def on_worker(config: dict[str, Any]) -> None:
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
            on_worker,
            train_loop_config={"payload": ref},
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=use_gpu, resources_per_worker=per_worker
            ),
            run_config=RunConfig(name="remedies-train", storage_path=storage),
        ).fit()
        assert result.checkpoint is not None
        with result.checkpoint.as_directory() as d:
            return torch.load(Path(d) / RESULT_FILE, weights_only=False)


def train_on_workers(
    cfg: RunConfig,
    *,
    splits: Splits | StreamSplits,
    progress: bool = True,
    report: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
    expose_state: Callable[[Callable[[], dict[str, Any]]], None] | None = None,
    per_worker: dict[str, float] | None = None,
    measure: bool = False,
) -> TrainResult:
    """Train `cfg` on `cfg.train.workers` data-parallel workers; the result has the trained
    model (on the CPU), every epoch's metrics and, with `measure`, the measures rank 0 took
    after training; never a checkpoint.

    With `report` / `expose_state` / `resume` (a search's trial): each epoch's row comes back from
    rank 0 while the workers train, and `report` runs here, in the caller's thread, before any
    worker starts the next epoch. The state function given to `expose_state`, when `report`
    calls it, asks the workers for a snapshot: rank 0's training state plus every rank's RNGs
    (`rank_rngs`), saved once by the caller; `resume` takes such a snapshot back, each rank
    its own RNGs. If `report` raises (the trial is stopped), the workers stop at once, so their
    resources are given back."""
    if per_worker is None:
        check_placeable(cfg)
    payload = {
        "config": config_to_dict(cfg),
        "splits": splits,
        "progress": progress,
        "resume": resume,
        "stream": None,
        "measure": measure,
    }
    go = partial(
        run_on_workers,
        _train_worker,
        workers=cfg.train.workers,
        use_gpu=uses_gpu(cfg) if per_worker is None else per_worker.get("GPU", 0) > 0,
        per_worker=per_worker,
    )
    if report is None and expose_state is None:
        return go(payload)
    return _streamed(go, payload, report, expose_state)


def _streamed(
    go: Callable[[Any], Any],
    payload: dict[str, Any],
    report: Callable[[dict[str, Any]], None] | None,
    expose_state: Callable[[Callable[[], dict[str, Any]]], None] | None,
) -> TrainResult:
    from ray.util.queue import Empty, Queue

    rows, replies = Queue(actor_options={"num_cpus": 0}), Queue(actor_options={"num_cpus": 0})
    payload["stream"] = (rows, replies)
    box: dict[str, Any] = {}

    def fit() -> None:
        try:
            box["result"] = go(payload)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    def snapshot() -> dict[str, Any]:
        """The workers' state, waited for only while they run: a worker killed while the
        ranks gather their RNGs ends the group without an answer, and a bare `rows.get()`
        waited for it forever — the trial hung instead of failing and being retried."""
        replies.put("save")
        while True:
            try:
                kind, state = rows.get(timeout=0.5)
            except Empty:
                if thread.is_alive() or not rows.empty():
                    continue
                if "error" in box:
                    raise box["error"] from None
                raise RuntimeError("the workers ended without sending their state") from None
            assert kind == "state", kind
            return state

    if expose_state is not None:
        expose_state(snapshot)
    thread = threading.Thread(target=fit, name="remedies-workers", daemon=True)
    thread.start()
    try:
        while thread.is_alive() or not rows.empty():
            try:
                kind, row = rows.get(timeout=0.5)
            except Empty:
                continue
            if report is not None:
                report(row)
            replies.put("go")
    except BaseException:
        replies.put("abort")  # every rank raises at its next epoch: Ray Train ends the run
        thread.join(timeout=120)
        raise
    finally:
        if not thread.is_alive():
            for q in (rows, replies):
                q.shutdown(force=True)
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


class StopWorkers(RuntimeError):
    """The trial driving the workers stopped (ASHA, an interrupt, a lost tracking server)."""


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _worker_report(
    stream: tuple[Any, Any], capture: list[Callable[[], dict[str, Any]]]
) -> Callable[[dict[str, Any]], None]:
    """Every rank's per-epoch hook: rank 0 sends the row and waits for the caller's answer,
    which every rank then follows (a snapshot: all ranks' RNGs gathered on rank 0)."""
    import torch.distributed as dist

    from remedies.engine.distributed import world
    from remedies.engine.trainer import get_rngs

    rows, replies = stream
    rank, size = world()

    def report(row: dict[str, Any]) -> None:
        if rank == 0:
            rows.put(("row", row))
        while True:
            msg = [replies.get() if rank == 0 else None]
            dist.broadcast_object_list(msg, src=0)
            if msg[0] == "abort":
                raise StopWorkers("the trial stopped its workers")
            if msg[0] != "save":
                return
            rngs: list[Any] | None = [None] * size if rank == 0 else None
            dist.gather_object(_to_cpu(get_rngs()), rngs, dst=0)
            if rank == 0:
                rows.put(("state", {**_to_cpu(capture[0]()), "rank_rngs": rngs}))

    return report


def _train_worker(payload: dict[str, Any]) -> TrainResult:
    from remedies.config import parse_config
    from remedies.engine.distributed import world
    from remedies.engine.trainer import measure_result, train

    cfg = parse_config(payload["config"])
    rank, size = world()
    resume = payload["resume"]
    if resume is not None and len(resume.get("rank_rngs") or []) == size:
        resume = {**resume, "rngs": resume["rank_rngs"][rank]}  # each rank its own RNGs
    capture: list[Callable[[], dict[str, Any]]] = []
    stream = payload["stream"]
    result = train(
        cfg,
        splits=payload["splits"],
        measure=False,
        progress=payload["progress"],
        resume=resume,
        report=_worker_report(stream, capture) if stream is not None else None,
        expose_state=capture.append if stream is not None else None,
    )
    if rank == 0 and payload.get("measure"):
        measure_result(result, payload["splits"])
    result.model = result.model.cpu()
    return result
