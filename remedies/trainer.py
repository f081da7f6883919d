"""The training engine: one run config in, one `TrainResult` out.

Imports neither Ray nor MLflow: the search service passes a `report` callable that receives each
epoch's metrics. Remedies change training only through the hooks of `remedies.hooks.Remedy`.
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
import torch.nn.functional as F
from torch import nn

from remedies.catalog import build_remedies
from remedies.config import RunConfig, config_to_dict
from remedies.data import Splits, load_data
from remedies.hooks import Remedy, TrainContext
from remedies.models import create_model

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

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary (what `remedies train --json` writes)."""
        keys = ("train_accuracy", "val_accuracy", "test_accuracy", "train_loss", "val_loss",
                "test_loss", "epochs_run", "diverged", "diverged_epoch", "wall_time_s",
                "batch_size", "n_train", "device", "sharpness", "sharpness_details", "checkpoint",
                "train_time_s", "train_cpu_s", "measure_time_s", "steps", "threads",
                "history")  # fmt: skip
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


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov and
                           t.momentum > 0, weight_decay=t.weight_decay)  # fmt: skip


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) in eval mode, in chunks weighted by their size."""
    if len(y) == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    loss, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device)
    for i in range(0, len(y), chunk):
        logits = model(x[i : i + chunk])
        loss += F.cross_entropy(logits, y[i : i + chunk], reduction="sum")
        correct += (logits.argmax(1) == y[i : i + chunk]).sum()
    model.train(was_training)
    return loss.item() / len(y), 100.0 * correct.item() / len(y)


def build_model(cfg: RunConfig, splits: Splits, device: torch.device) -> nn.Module:
    m = cfg.model
    model = create_model(m.name, splits.input_shape, splits.num_classes, bn=m.bn, width=m.width)
    return model.to(device)


def train(
    cfg: RunConfig,
    *,
    splits: Splits | None = None,
    report: Report | None = None,
    out_dir: Path | None = None,
    measure: bool = True,
    progress: bool = True,
    resume: dict[str, Any] | None = None,
    expose_state: Callable[[Callable[[], dict[str, Any]]], None] | None = None,
) -> TrainResult:
    """Train one config; per-epoch metrics go to `report`; the model is returned trained.

    `expose_state` receives, once, a function that snapshots the complete training state at the
    last finished epoch (weights, optimiser, every RNG, step, history); `resume` takes such a
    snapshot and continues from the epoch after it, so an interrupted run ends where an
    uninterrupted one would (bit for bit on CPU with the same thread count).
    """
    t0 = time.perf_counter()
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    device = pick_device(cfg.train.device)
    splits = (splits or load_data(cfg.data)).to(device)
    X, Y, n = splits.x_train, splits.y_train, splits.n_train
    B = cfg.train.resolve_batch_size(n)
    model = build_model(cfg, splits, device)
    remedies = build_remedies(cfg.remedies)
    ctx = TrainContext(model=model, optimizer=None, loss_fn=F.cross_entropy, device=device,  # type: ignore[arg-type]
                       n_train=n, batch_size=B, base_lr=cfg.train.lr, epochs=cfg.train.epochs,
                       input_shape=splits.input_shape)  # fmt: skip
    for r in remedies:
        r.setup(ctx)  # runs before the optimiser exists, so it may swap modules
    model = ctx.model
    opt = ctx.optimizer = make_optimizer(cfg, model.parameters())
    stepper: Remedy | None = next((r for r in remedies if r.replaces_step), None)

    def before_step() -> None:
        for r in remedies:
            r.after_backward(ctx)
        if cfg.train.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)

    def after_step() -> None:
        for r in remedies:
            r.after_step(ctx)

    ctx.before_step, ctx.after_step = before_step, after_step
    for r in remedies:
        ctx.epochs = r.epochs(ctx.epochs, ctx)
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
        return {"epoch": len(history), "model": model.state_dict(), "optimizer": opt.state_dict(),
                "batch_rng": gen.get_state(), "rngs": _get_rngs(), "step": ctx.step,
                "history": list(history)}  # fmt: skip

    if expose_state is not None:
        expose_state(capture)
    for epoch in range(start, ctx.epochs):
        te, tc = time.perf_counter(), time.process_time()
        ctx.epoch = epoch
        # batch size for this epoch (warm start, ramps); the incomplete last batch is dropped so
        # every step sees exactly b samples and BN never sees a tiny batch
        b = B
        for r in remedies:
            b = r.batch_size(epoch, b, ctx)
        b = ctx.current_batch_size = max(1, min(int(b), n))
        steps = n // b
        perm = torch.randperm(n, generator=gen).to(device)
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for i in range(steps):
            # learning rate: a pure function of fractional epoch, folded through the remedies
            lr = cfg.train.lr
            for r in remedies:
                lr = r.lr(lr, epoch + i / steps, ctx)
            for g in opt.param_groups:
                g["lr"] = lr

            # batch: an index slice of the permutation, augmented a whole batch at a time
            idx = perm[i * b : (i + 1) * b]
            x, y = X[idx], Y[idx]
            for r in remedies:
                x, y = r.augment(x, y, ctx)

            weights = None  # per-sample loss weights (gradient-noise remedies), drawn per batch
            for r in remedies:
                if (w := r.sample_weights(y, ctx)) is not None:
                    weights = w if weights is None else weights * w
            seen: dict[str, torch.Tensor] = {}

            def closure(x=x, y=y, seen=seen, weights=weights) -> torch.Tensor:
                logits = model(x)
                seen.setdefault("logits", logits.detach())
                if weights is None:
                    loss = F.cross_entropy(logits, y)
                else:
                    loss = (F.cross_entropy(logits, y, reduction="none") * weights).mean()
                for r in remedies:
                    loss = r.loss(model, x, y, loss, ctx)
                return loss

            # forward/backward/step: the default, or the one remedy that owns the step
            loss = stepper.step(closure, ctx) if stepper else None
            if loss is None:
                opt.zero_grad(set_to_none=True)
                loss = closure()
                loss.backward()
                ctx.optimizer_step()
            ctx.step += 1
            # accumulate on the device: no host sync inside the step loop
            loss_sum += loss.detach()
            correct += (seen["logits"].argmax(1) == y).sum()

        # evaluation, divergence check and logging, once per epoch
        train_loss = loss_sum.item() / max(steps, 1)  # note: the epoch's one host-device sync
        row: dict[str, Any] = {
            "epoch": epoch + 1, "train_loss": train_loss,
            "train_accuracy": 100.0 * correct.item() / max(steps * b, 1),
            "batch_size": b, "lr": opt.param_groups[0]["lr"], "steps": ctx.step,
            "train_time_s": time.perf_counter() - te,  # the step loop alone, evaluation excluded
            "train_cpu_s": time.process_time() - tc,  # its CPU time: what other load cannot inflate
        }  # fmt: skip
        if not math.isfinite(train_loss):
            diverged_epoch = epoch + 1
            row["val_accuracy"] = float("nan")
        else:
            row["val_loss"], row["val_accuracy"] = evaluate(model, splits.x_val, splits.y_val,
                                                            cfg.train.eval_batch_size)  # fmt: skip
            for r in remedies:
                row.update(r.on_epoch_end(epoch, ctx))
        row["epoch_time_s"] = time.perf_counter() - te
        history.append(row)
        if progress:
            _print_progress(row, ctx.epochs, time.perf_counter() - t0)
        if report is not None:
            report(row)
        if diverged_epoch is not None:
            break

    # final metrics on all three splits, in eval mode
    chunk = cfg.train.eval_batch_size
    tr_loss, tr_acc = evaluate(model, X, Y, chunk)
    va_loss, va_acc = evaluate(model, splits.x_val, splits.y_val, chunk)
    te_loss, te_acc = evaluate(model, splits.x_test, splits.y_test, chunk)
    result = TrainResult(
        config=cfg, model=model, history=history, train_accuracy=tr_acc, val_accuracy=va_acc,
        test_accuracy=te_acc, train_loss=tr_loss, val_loss=va_loss, test_loss=te_loss,
        epochs_run=len(history), diverged=diverged_epoch is not None,
        diverged_epoch=diverged_epoch, wall_time_s=0.0, batch_size=B, n_train=n, device=str(device),
        train_time_s=sum(r["train_time_s"] for r in history), steps=ctx.step,
        train_cpu_s=sum(r.get("train_cpu_s", 0.0) for r in history),
        threads=torch.get_num_threads(),
    )  # fmt: skip
    if measure and not result.diverged:
        from remedies.measures import run_measures

        tm = time.perf_counter()
        result.sharpness, result.sharpness_details = run_measures(model, X, Y, cfg.measure)
        result.measure_time_s = time.perf_counter() - tm
    result.wall_time_s = time.perf_counter() - t0
    if out_dir is not None and cfg.train.checkpoint:
        from remedies.checkpoint import save_checkpoint

        result.checkpoint = str(save_checkpoint(Path(out_dir) / "checkpoint.pt", result))
    return result


def _get_rngs() -> dict[str, Any]:
    """Every RNG a remedy or the loop may draw from, as tensors and plain numbers only, so a
    snapshot loads with `torch.load(weights_only=True)`."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    rngs = {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                      float(cached)]}  # fmt: skip
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
    eta = elapsed / e * (epochs - e)
    print(
        f"epoch {e:>3}/{epochs}  loss {row['train_loss']:.4f}  train {row['train_accuracy']:6.2f}%"
        f"  val {row['val_accuracy']:6.2f}%  batch {row['batch_size']}  lr {row['lr']:.2e}"
        f"  {row['epoch_time_s']:.1f}s  ETA {eta:.0f}s",
        file=sys.stderr,
        flush=True,
    )
