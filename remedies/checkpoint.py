"""Saved runs: model weights + the complete resolved config + final metrics, in one file."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from remedies.catalog import build_remedies
from remedies.config import RunConfig, config_to_dict, parse_config
from remedies.errors import ConfigError
from remedies.io import atomic_target

if TYPE_CHECKING:
    from remedies.data import Splits
    from remedies.trainer import TrainResult


def save_checkpoint(path: Path, result: TrainResult) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    summary.pop("history", None)
    payload = {
        "format": "remedies-checkpoint-v1",
        "config": config_to_dict(result.config),
        "model_state": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "metrics": summary,
        "history": result.history,
    }
    with atomic_target(path) as tmp:
        torch.save(payload, tmp)
    return path


def _read(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        payload = torch.load(Path(path), map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise ConfigError("checkpoint", f"cannot read {path}: {e}") from None
    if not isinstance(payload, dict) or payload.get("format") != "remedies-checkpoint-v1":
        raise ConfigError("checkpoint", f"{path} is not a remedies checkpoint")
    return payload


def load_checkpoint_config(path: Path) -> RunConfig:
    """The run config stored in a checkpoint (no model is built)."""
    return parse_config(_read(path)["config"])


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu", splits: Splits | None = None
) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """Rebuild the model exactly as trained (remedies' model changes included) and load weights.

    Returns (model in eval mode, config, metrics). The data set is needed only for the input
    shape and class count; pass `splits` when they are already loaded.
    """
    from remedies.data import load_data
    from remedies.hooks import TrainContext
    from remedies.trainer import build_model

    payload = _read(path, device)
    cfg = parse_config(payload["config"])
    splits = splits if splits is not None else load_data(cfg.data, device)
    model = build_model(cfg, splits, torch.device(device))
    ctx = TrainContext(model=model, optimizer=None, loss_fn=torch.nn.functional.cross_entropy,  # type: ignore[arg-type]
                       device=torch.device(device), n_train=splits.n_train,
                       batch_size=cfg.train.resolve_batch_size(splits.n_train),
                       base_lr=cfg.train.lr, epochs=cfg.train.epochs,
                       input_shape=splits.input_shape)  # fmt: skip
    for r in build_remedies(cfg.remedies):
        r.setup(ctx)
    model = ctx.model
    model.load_state_dict(payload["model_state"])
    model.eval()
    return model, cfg, payload["metrics"]
