"""One run of the protocol: train, measure, and keep what the report needs. No Ray, no MLflow:
the driver runs this as a Ray task, the tests call it directly."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from remedies.config import parse_config
from remedies.data import Splits, StreamSplits, load_data
from remedies.engine.trainer import build_model, pick_device, seed_everything
from remedies.launch import fit
from remedies.models import count_parameters


def initial_weights(raw: dict[str, Any], splits: Splits | StreamSplits) -> torch.Tensor:
    """x₀ of a run, flat: train() seeds everything with train.seed and then builds the model, so
    the same two calls give the very same initial weights (and SB and LB of a seed share them)."""
    cfg = parse_config(raw)
    seed_everything(cfg.train.seed)
    model = build_model(cfg, splits, pick_device(cfg.train.device))
    return flat(model)


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters() if p.requires_grad])


SAVE_EVERY_S = 5.0  # a run cut off loses at most this much training (plus its last epoch)


def run_one(
    raw: dict[str, Any],
    keep_weights: bool = False,
    splits: Splits | StreamSplits | None = None,
    state: Path | None = None,
) -> dict[str, Any]:
    """Train `raw` (a complete run config), measure it, and return a JSON-safe record (plus the
    trained weights when asked, for the interpolation of Fig. 3). With `state`, the training
    state (weights, optimiser, every RNG, epoch) is saved there as it trains, and a run cut off
    continues from it — bit for bit on CPU — instead of starting again."""
    t0 = time.perf_counter()
    cfg = parse_config(raw)
    splits = splits if splits is not None else load_data(cfg.data)
    resume = (
        torch.load(state, weights_only=False) if state is not None and state.is_file() else None
    )
    capture: list[Callable[[], dict[str, Any]]] = []
    last = [-math.inf]  # the first epoch always saves

    def save(row: dict[str, Any]) -> None:
        if state is None or time.monotonic() - last[0] < SAVE_EVERY_S:
            return
        tmp = state.with_name(state.name + ".tmp")
        torch.save(capture[0](), tmp)
        os.replace(tmp, state)  # whole or not at all
        last[0] = time.monotonic()

    res = fit(cfg, splits=splits, progress=False, resume=resume, report=save,
                expose_state=capture.append)  # fmt: skip
    x0 = initial_weights(raw, splits)
    out: dict[str, Any] = {
        "config": raw,
        "resumed_at_epoch": int(resume["epoch"]) if resume else 0,
        "batch_size": res.batch_size,
        "n_train": res.n_train,
        "input_shape": list(splits.input_shape),  # per sample, as the net was built for it
        "num_classes": splits.num_classes,
        "n_parameters": count_parameters(res.model),
        "epochs_run": res.epochs_run,
        "converged": res.converged,  # None: no stop rule, all epochs trained
        "diverged": res.diverged,
        "train_accuracy": res.train_accuracy,
        "test_accuracy": res.test_accuracy,
        "val_accuracy": res.val_accuracy,
        "train_loss": res.train_loss,
        "test_loss": res.test_loss,
        "sharpness": dict(res.sharpness),
        "details": list(res.sharpness_details),
        "distance_from_init": float((flat(res.model) - x0).norm()),
        "history": [
            {
                k: row.get(k)
                for k in (
                    "epoch",
                    "train_loss",
                    "train_accuracy",
                    "val_accuracy",
                    "batch_size",
                    "train_eval_accuracy",
                )
            }
            for row in res.history
        ],
        "device": res.device,
        "train_time_s": res.train_time_s,  # the step loops alone
        "measure_time_s": res.measure_time_s,  # every configured measure
        "wall_time_s": time.perf_counter() - t0,
    }
    if keep_weights:
        out["weights"] = {k: v.detach().cpu() for k, v in res.model.state_dict().items()}
    return out
