"""The training engine: one run config in, one `TrainResult` out.

Imports neither Ray nor MLflow: the search service passes a `report` callable that receives each
epoch's metrics. Remedies change training only through the hooks of `remedies.hooks.Remedy`, and
the trainer reaches them only through the library API (`remedies.api`) that a user's own loop
uses: its step loop is such a loop.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from remedies.api import Recipe
from remedies.batches import evaluate_split, measure_data, training_batches
from remedies.config import RunConfig, config_to_dict
from remedies.data import Splits, StreamSplits, load_data
from remedies.distributed import sum_over_workers, world
from remedies.models import create_model
from remedies.precision import fp32_region, resolve_precision
from remedies.schedule import check_batch_schedule

Report = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    config: RunConfig
    model: nn.Module
    history: list[dict[str, Any]]  # one row per epoch
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    train_loss: float
    val_loss: float
    test_loss: float
    epochs_run: int
    diverged: bool
    diverged_epoch: int | None
    wall_time_s: float
    batch_size: int
    n_train: int
    device: str
    sharpness: dict[str, float] = field(default_factory=dict)
    sharpness_details: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: str | None = None
    # training alone (the epochs' step loops; data loading, evaluation and measures excluded),
    # so a speed comparison is not swamped by the sharpness measure; `threads`: torch's CPU
    # threads while it was timed (a time means nothing without them)
    train_time_s: float = 0.0
    train_cpu_s: float = 0.0  # the process's CPU time over the same loops
    measure_time_s: float = 0.0
    steps: int = 0
    threads: int = 0
    precision: str = "fp32"  # what train.precision resolved to on this device (fp32/bf16/fp16)
    compiled: bool = False  # the training forward ran through torch.compile
    channels_last: bool = False  # a conv net on CUDA trains in channels-last memory format
    accumulate: int = 1  # the micro-batches per worker step (train.accumulate; `auto` picked)
    # train.stop's rule met before the budget ran out (None: no rule, all epochs were trained)
    converged: bool | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary (what `remedies train --json` writes)."""
        keys = (
            "train_accuracy",
            "val_accuracy",
            "test_accuracy",
            "train_loss",
            "val_loss",
            "test_loss",
            "epochs_run",
            "diverged",
            "diverged_epoch",
            "wall_time_s",
            "batch_size",
            "n_train",
            "device",
            "sharpness",
            "sharpness_details",
            "checkpoint",
            "train_time_s",
            "train_cpu_s",
            "measure_time_s",
            "steps",
            "threads",
            "precision",
            "compiled",
            "channels_last",
            "accumulate",
            "converged",
            "history",
        )
        out = {k: getattr(self, k) for k in keys}
        out["config"] = config_to_dict(self.config)
        return _json_safe(out)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN; a diverged loss is reported as null
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: RunConfig, splits: Splits | StreamSplits, device: torch.device) -> nn.Module:
    """The configured network: a built-in one by name, or the user's `model.factory` (checked:
    an nn.Module that maps this data's samples to one logit per class)."""
    m = cfg.model
    shape, classes = splits.input_shape, splits.num_classes
    if m.factory is not None:
        from remedies.factories import call, check_model

        built = call(m.factory, "model.factory", m.kwargs, input_shape=shape, num_classes=classes)
        return check_model(built, m.factory, shape, classes).to(device)
    model = create_model(m.name, shape, classes, bn=m.bn, width=m.width)  # type: ignore[arg-type]
    return model.to(device)


def train(
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
    """Train one config; per-epoch metrics go to `report`; the model is returned trained.

    `expose_state` receives, once, a function that snapshots the complete training state at the
    last finished epoch (weights, optimiser, every RNG, step, history); `resume` takes such a
    snapshot and continues from the epoch after it, so an interrupted run ends where an
    uninterrupted one would (bit for bit on CPU with the same thread count).
    `per_worker`: with train.workers > 1, each worker's Ray resources (a search's trial; the
    caller has checked they can be placed); default one CPU (or GPU) each, checked here.
    """
    t0 = time.perf_counter()
    rank, world_size = world()  # a Ray Train worker (train.workers > 1) or a torchrun job
    if cfg.train.workers > 1 and world_size == 1:  # the driver: start the workers
        from remedies.workers import train_on_workers  # imports ray

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
        return finish(result, splits, measure=False, out_dir=out_dir, t0=t0)
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    device = pick_device(cfg.train.device)
    resolve_precision(cfg.train, device)  # fp16 without CUDA: refused before any data is read
    splits = (splits or load_data(cfg.data)).to(device)
    n = splits.n_train
    B = cfg.train.resolve_batch_size(n)
    model = build_model(cfg, splits, device)
    # the remedies, applied through the library API a hand-written loop uses (remedies.api):
    # one implementation of what a remedy does to training, not two. Data parallel: every
    # worker holds the same model and takes its share of each global batch (remedies.api)
    run = Recipe(cfg).apply(model, n_train=n, input_shape=splits.input_shape, device=device)
    model = run.model  # setup may have swapped modules (ghost BN, SyncBatchNorm)
    # a conv net on CUDA: channels-last weights and batches (tensor cores' native layout)
    channels_last = device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        _memory_format(model, torch.channels_last)
    opt = run.make_optimizer()
    ctx = run.ctx
    fwd = torch.compile(model) if cfg.train.compile else None  # the training forward only
    autocast = run.autocast  # evaluation runs in the training precision too
    gen = torch.Generator().manual_seed(cfg.train.seed)  # batch order, independent of init RNG

    history: list[dict[str, Any]] = []
    diverged_epoch: int | None = None
    start = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        gen.set_state(resume["batch_rng"])
        _set_rngs(resume["rngs"])
        history, ctx.step, start = list(resume["history"]), resume["step"], resume["epoch"]
        t0 -= sum(r["epoch_time_s"] for r in history)  # the wall time of the epochs already run

    def capture() -> dict[str, Any]:
        return {
            "epoch": len(history),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "batch_rng": gen.get_state(),
            "rngs": _get_rngs(),
            "step": ctx.step,
            "history": list(history),
        }

    if expose_state is not None:
        expose_state(capture)
    for epoch in range(start, run.epochs):
        te, tc = time.perf_counter(), time.process_time()
        # batch size for this epoch (warm start, ramps); the incomplete last batch is dropped so
        # every step sees exactly b samples and BN never sees a tiny batch
        b = run.batch_size(epoch)
        steps = n // b
        perm = torch.randperm(n, generator=gen)
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for i, (xb, yb) in enumerate(
            training_batches(splits, perm, b, steps, device, seed=cfg.train.seed * 100_003 + epoch)
        ):
            run.set_lr(epoch + i / steps)  # a pure function of the fractional epoch
            # batch: the permutation's next b samples, augmented a whole batch at a time; data
            # parallel: every worker draws the same global batch and augmentation (same seed)
            # and keeps its own share
            x, y = run.shard(*run.transform(xb, yb))
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            # forward/backward/step with the remedies' loss terms — or the step-owning remedy's
            # (under train.precision's autocast)
            loss = run.step(x, y, forward=fwd)
            # accumulate on the device: no host sync inside the step loop
            loss_sum += loss.detach()
            correct += (run.last_logits.argmax(1) == y).sum()  # type: ignore[union-attr]

        # evaluation, divergence check and logging, once per epoch; data parallel: the epoch's
        # sums over all workers, and the BN running statistics averaged over them
        if world_size > 1:
            loss_sum, correct = sum_over_workers(loss_sum / world_size, correct)
        run.sync_buffers()
        train_loss = loss_sum.item() / max(steps, 1)  # note: the epoch's one host-device sync
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_accuracy": 100.0 * correct.item() / max(steps * b, 1),
            "batch_size": b,
            "lr": opt.param_groups[0]["lr"],
            "steps": ctx.step,
            "train_time_s": time.perf_counter() - te,  # the step loop alone, evaluation excluded
            "train_cpu_s": time.process_time() - tc,  # its CPU time: what other load cannot inflate
        }
        if not math.isfinite(train_loss):
            diverged_epoch = epoch + 1
            row["val_accuracy"] = float("nan")
        else:
            with autocast():
                row["val_loss"], row["val_accuracy"] = evaluate_split(
                    model, splits, "val", cfg.train.eval_batch_size, device
                )
            row.update(run.end_epoch(epoch))
            if cfg.train.stop is not None:  # converged yet? (the whole training set, eval mode)
                with autocast():
                    row["train_eval_loss"], row["train_eval_accuracy"] = evaluate_split(
                        model, splits, "train", cfg.train.eval_batch_size, device
                    )
                row["converged"] = cfg.train.stop.met(
                    row["train_eval_loss"], row["train_eval_accuracy"]
                )
        row["epoch_time_s"] = time.perf_counter() - te
        history.append(row)
        if progress and rank == 0:
            _print_progress(row, run.epochs, time.perf_counter() - t0)
        if report is not None:
            report(row)
        if diverged_epoch is not None or row.get("converged"):
            break

    # final metrics on all three splits, in eval mode
    chunk = cfg.train.eval_batch_size
    with autocast():
        tr_loss, tr_acc = evaluate_split(model, splits, "train", chunk, device)
        va_loss, va_acc = evaluate_split(model, splits, "val", chunk, device)
        te_loss, te_acc = evaluate_split(model, splits, "test", chunk, device)
    if channels_last:  # measures flatten parameters, checkpoints are read anywhere: plain layout
        _memory_format(model, torch.contiguous_format)
    result = TrainResult(
        config=cfg,
        model=model,
        history=history,
        train_accuracy=tr_acc,
        val_accuracy=va_acc,
        test_accuracy=te_acc,
        train_loss=tr_loss,
        val_loss=va_loss,
        test_loss=te_loss,
        epochs_run=len(history),
        diverged=diverged_epoch is not None,
        diverged_epoch=diverged_epoch,
        wall_time_s=0.0,
        batch_size=B,
        n_train=n,
        device=str(device),
        train_time_s=sum(r["train_time_s"] for r in history),
        steps=ctx.step,
        train_cpu_s=sum(r.get("train_cpu_s", 0.0) for r in history),
        threads=torch.get_num_threads(),
        precision=run.precision,
        accumulate=run.accumulate,
        compiled=fwd is not None,
        channels_last=channels_last,
        converged=None
        if cfg.train.stop is None
        else bool(history and history[-1].get("converged")),
    )
    return finish(result, splits, measure=measure, out_dir=out_dir, t0=t0)


def finish(
    result: TrainResult,
    splits: Splits | StreamSplits,
    *,
    measure: bool,
    out_dir: Path | None,
    t0: float,
) -> TrainResult:
    """The trained model's measures and checkpoint (data parallel: measured on rank 0 before
    the workers end, `measure_result`; checkpointed here, on the caller, once)."""
    cfg = result.config
    if measure:
        measure_result(result, splits)
    result.wall_time_s = time.perf_counter() - t0
    if out_dir is not None and cfg.train.checkpoint:
        from remedies.checkpoint import save_checkpoint

        result.checkpoint = str(save_checkpoint(Path(out_dir) / "checkpoint.pt", result))
    return result


def measure_result(result: TrainResult, splits: Splits | StreamSplits) -> None:
    """The measures of a trained (not diverged) model, on the device its weights are on: fp32
    from the fp32 weights, whatever the training precision; their time kept apart."""
    if result.diverged:
        return
    from remedies.measures import run_measures

    model, cfg = result.model, result.config
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    tm = time.perf_counter()
    X, Y = measure_data(splits.to(device), cfg, device)
    with fp32_region(device):
        result.sharpness, result.sharpness_details = run_measures(model, X, Y, cfg.measure)
    result.measure_time_s = time.perf_counter() - tm


def _memory_format(model: nn.Module, fmt: torch.memory_format) -> None:
    """Every 4-D weight and buffer of `model` in memory format `fmt`, in place (the Parameter
    objects stay, so an optimiser built over them still holds them)."""
    model.to(memory_format=fmt)  # type: ignore[call-overload]  # torch's stub lacks the keyword


def _get_rngs() -> dict[str, Any]:
    """Every RNG a remedy or the loop may draw from, as tensors and plain numbers only, so a
    snapshot loads with `torch.load(weights_only=True)`."""
    state = np.random.get_state(legacy=True)
    assert isinstance(state, tuple)  # legacy=True: the (name, keys, pos, has_gauss, cached) form
    _, keys, pos, has_gauss, cached = state
    rngs = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available():
        rngs["cuda"] = torch.cuda.get_rng_state_all()
    return rngs


def _set_rngs(rngs: dict[str, Any]) -> None:
    torch.set_rng_state(rngs["torch"])
    keys, pos, has_gauss, cached = rngs["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(rngs["python"])
    if "cuda" in rngs and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rngs["cuda"])


def _print_progress(row: dict[str, Any], epochs: int, elapsed: float) -> None:
    e = row["epoch"]
    eta = elapsed / e * (epochs - e)  # with train.stop, the budget's: an upper bound
    whole = f" (whole {row['train_eval_accuracy']:6.2f}%)" if "train_eval_accuracy" in row else ""
    print(
        f"epoch {e:>3}/{epochs}  loss {row['train_loss']:.4f}  train {row['train_accuracy']:6.2f}%"
        f"{whole}  val {row['val_accuracy']:6.2f}%  batch {row['batch_size']}  lr {row['lr']:.2e}"
        f"  {row['epoch_time_s']:.1f}s  ETA {eta:.0f}s",
        file=sys.stderr,
        flush=True,
    )
