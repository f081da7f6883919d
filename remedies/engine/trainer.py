"""The training loop: one run config in, one `TrainResult` out, for this process's share.

Imports neither Ray nor MLflow: a caller passes a `report` callable that receives each epoch's
metrics. Remedies change training only through the hooks of `remedies.hooks.Remedy`, and the
trainer reaches them only through the library API (`remedies.engine.api`) that a user's own
loop uses: its step loop is such a loop. Data parallel: inside a worker group (Ray Train's or
torchrun's), `train` trains this rank's share of every global batch; starting the group is the
caller's (`remedies.launch.fit`), and so is writing a checkpoint from the returned result.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from remedies.config import RunConfig
from remedies.data import Splits, StreamSplits, load_data
from remedies.engine.api import Recipe
from remedies.engine.applied import Applied
from remedies.engine.batches import evaluate_split, measure_data, training_batches
from remedies.engine.distributed import sum_over_workers, world
from remedies.engine.precision import fp32_region, resolve_precision
from remedies.engine.result import TrainResult as TrainResult
from remedies.models import create_model

Report = Callable[[dict[str, Any]], None]


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


@dataclass
class _Run:
    """Everything one process's training of one config holds while it runs."""

    cfg: RunConfig
    splits: Splits | StreamSplits  # on the device
    device: torch.device
    model: nn.Module
    run: Applied  # the remedies, applied through the library API
    opt: torch.optim.Optimizer
    fwd: Callable[..., torch.Tensor] | None  # the compiled training forward, if any
    gen: torch.Generator  # batch order, independent of the initialisation RNG
    channels_last: bool
    world_size: int


def train(
    cfg: RunConfig,
    *,
    splits: Splits | StreamSplits | None = None,
    report: Report | None = None,
    measure: bool = True,
    progress: bool = True,
    resume: dict[str, Any] | None = None,
    expose_state: Callable[[Callable[[], dict[str, Any]]], None] | None = None,
) -> TrainResult:
    """Train one config (this process's share of it); per-epoch metrics go to `report`; the
    model is returned trained and, with `measure`, measured.

    `expose_state` receives, once, a function that snapshots the complete training state at the
    last finished epoch (weights, optimiser, every RNG, step, history); `resume` takes such a
    snapshot and continues from the epoch after it, so an interrupted run ends where an
    uninterrupted one would (bit for bit on CPU with the same thread count).
    """
    t0 = time.perf_counter()
    rank, world_size = world()  # a worker of a group (train.workers > 1), or the only process
    if cfg.train.workers > 1 and world_size == 1:  # one process would train K workers' run
        raise RuntimeError(
            f"train.workers={cfg.train.workers}: the engine trains one worker's share; start "
            "the workers with remedies.launch.fit"
        )
    r = _setup(cfg, splits, world_size)
    history: list[dict[str, Any]] = []
    diverged_epoch: int | None = None
    start = 0
    if resume is not None:
        r.model.load_state_dict(resume["model"])
        r.opt.load_state_dict(resume["optimizer"])
        r.gen.set_state(resume["batch_rng"])
        set_rngs(resume["rngs"])
        history, r.run.ctx.step, start = list(resume["history"]), resume["step"], resume["epoch"]
        t0 -= sum(row["epoch_time_s"] for row in history)  # the epochs already run

    def capture() -> dict[str, Any]:
        return {
            "epoch": len(history),
            "model": r.model.state_dict(),
            "optimizer": r.opt.state_dict(),
            "batch_rng": r.gen.get_state(),
            "rngs": get_rngs(),
            "step": r.run.ctx.step,
            "history": list(history),
        }

    if expose_state is not None:
        expose_state(capture)
    for epoch in range(start, r.run.epochs):
        te = time.perf_counter()
        row = _train_epoch(r, epoch)
        if not _evaluate_epoch(r, epoch, row):
            diverged_epoch = epoch + 1
        row["epoch_time_s"] = time.perf_counter() - te
        history.append(row)
        if progress and rank == 0:
            _print_progress(row, r.run.epochs, time.perf_counter() - t0)
        if report is not None:
            report(row)
        if diverged_epoch is not None or row.get("converged"):
            break
    return finish(_result(r, history, diverged_epoch), r.splits, measure=measure, t0=t0)


def _setup(cfg: RunConfig, splits: Splits | StreamSplits | None, world_size: int) -> _Run:
    """Seed, data on the device, the model and the remedies applied to it, the optimiser."""
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    device = pick_device(cfg.train.device)
    resolve_precision(cfg.train, device)  # fp16 without CUDA: refused before any data is read
    splits = (splits or load_data(cfg.data)).to(device)
    n = splits.n_train
    model = build_model(cfg, splits, device)
    # the remedies, applied through the library API a hand-written loop uses (remedies.engine.api):
    # one implementation of what a remedy does to training, not two. Data parallel: every
    # worker holds the same model and takes its share of each global batch (remedies.engine.api)
    run = Recipe(cfg).apply(model, n_train=n, input_shape=splits.input_shape, device=device)
    model = run.model  # setup may have swapped modules (ghost BN, SyncBatchNorm)
    # a conv net on CUDA: channels-last weights and batches (tensor cores' native layout)
    channels_last = device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        _memory_format(model, torch.channels_last)
    opt = run.make_optimizer()
    fwd = torch.compile(model) if cfg.train.compile else None  # the training forward only
    gen = torch.Generator().manual_seed(cfg.train.seed)
    return _Run(cfg, splits, device, model, run, opt, fwd, gen, channels_last, world_size)


def _train_epoch(r: _Run, epoch: int) -> dict[str, Any]:
    """One epoch's steps; its row: the running loss and accuracy, batch, lr, steps and times."""
    te, tc = time.perf_counter(), time.process_time()
    run, n, device = r.run, r.splits.n_train, r.device
    # batch size for this epoch (warm start, ramps); the incomplete last batch is dropped so
    # every step sees exactly b samples and BN never sees a tiny batch
    b = run.batch_size(epoch)
    steps = n // b
    perm = torch.randperm(n, generator=r.gen)
    r.model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seed = r.cfg.train.seed * 100_003 + epoch
    for i, (xb, yb) in enumerate(training_batches(r.splits, perm, b, steps, device, seed=seed)):
        run.set_lr(epoch + i / steps)  # a pure function of the fractional epoch
        # batch: the permutation's next b samples, augmented a whole batch at a time; data
        # parallel: every worker draws the same global batch and augmentation (same seed)
        # and keeps its own share
        x, y = run.shard(*run.transform(xb, yb))
        if r.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        # forward/backward/step with the remedies' loss terms — or the step-owning remedy's
        # (under train.precision's autocast)
        loss = run.step(x, y, forward=r.fwd)
        # accumulate on the device: no host sync inside the step loop
        loss_sum += loss.detach()
        correct += (run.last_logits.argmax(1) == y).sum()  # type: ignore[union-attr]
    # data parallel: the epoch's sums over all workers, and the BN running statistics
    # averaged over them
    if r.world_size > 1:
        loss_sum, correct = sum_over_workers(loss_sum / r.world_size, correct)
    run.sync_buffers()
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum.item() / max(steps, 1),  # the epoch's one host-device sync
        "train_accuracy": 100.0 * correct.item() / max(steps * b, 1),
        "batch_size": b,
        "lr": r.opt.param_groups[0]["lr"],
        "steps": run.ctx.step,
        "train_time_s": time.perf_counter() - te,  # the step loop alone, evaluation excluded
        "train_cpu_s": time.process_time() - tc,  # its CPU time: what other load cannot inflate
    }


def _evaluate_epoch(r: _Run, epoch: int, row: dict[str, Any]) -> bool:
    """Into `row`: the validation reading, the remedies' per-epoch numbers and, with
    `train.stop`, whether the whole training set reads converged (eval mode). False: the
    training loss is not finite (diverged), and nothing was evaluated."""
    if not math.isfinite(row["train_loss"]):
        row["val_accuracy"] = float("nan")
        return False
    chunk, stop = r.cfg.train.eval_batch_size, r.cfg.train.stop
    with r.run.autocast():  # evaluation runs in the training precision too
        row["val_loss"], row["val_accuracy"] = evaluate_split(
            r.model, r.splits, "val", chunk, r.device
        )
    row.update(r.run.end_epoch(epoch))
    if stop is not None:
        with r.run.autocast():
            row["train_eval_loss"], row["train_eval_accuracy"] = evaluate_split(
                r.model, r.splits, "train", chunk, r.device
            )
        row["converged"] = stop.met(row["train_eval_loss"], row["train_eval_accuracy"])
    return True


def _result(r: _Run, history: list[dict[str, Any]], diverged_epoch: int | None) -> TrainResult:
    """Final metrics on all three splits, in eval mode, and what the run was."""
    chunk, splits, device, model = r.cfg.train.eval_batch_size, r.splits, r.device, r.model
    with r.run.autocast():
        tr_loss, tr_acc = evaluate_split(model, splits, "train", chunk, device)
        va_loss, va_acc = evaluate_split(model, splits, "val", chunk, device)
        te_loss, te_acc = evaluate_split(model, splits, "test", chunk, device)
    if r.channels_last:  # measures flatten parameters, checkpoints are read anywhere: plain
        _memory_format(model, torch.contiguous_format)
    return TrainResult(
        config=r.cfg,
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
        batch_size=r.cfg.train.resolve_batch_size(splits.n_train),
        n_train=splits.n_train,
        device=str(device),
        train_time_s=sum(row["train_time_s"] for row in history),
        steps=r.run.ctx.step,
        train_cpu_s=sum(row.get("train_cpu_s", 0.0) for row in history),
        threads=torch.get_num_threads(),
        precision=r.run.precision,
        accumulate=r.run.accumulate,
        compiled=r.fwd is not None,
        channels_last=r.channels_last,
        converged=None
        if r.cfg.train.stop is None
        else bool(history and history[-1].get("converged")),
    )


def finish(
    result: TrainResult, splits: Splits | StreamSplits, *, measure: bool, t0: float
) -> TrainResult:
    """The trained model's measures (data parallel: rank 0 measures before the workers end)
    and the run's wall time; a checkpoint is the caller's to write (`remedies.launch.fit`)."""
    if measure:
        measure_result(result, splits)
    result.wall_time_s = time.perf_counter() - t0
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


def get_rngs() -> dict[str, Any]:
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


def set_rngs(rngs: dict[str, Any]) -> None:
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
