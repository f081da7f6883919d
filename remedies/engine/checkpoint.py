"""Saved runs: model weights + the complete resolved config + final metrics, in one file.

The payload is tensors and plain data only (dict, list, str, int, float, bool, None), and it is
read back with `torch.load(weights_only=True)`. Why: a checkpoint is a file users pass around and
`remedies measure` / `interpolate` open; a full unpickle of a crafted file runs arbitrary code, the
weights-only unpickler refuses any class or function it meets — so a foreign object is a one-line
error naming it, never executed.
"""

from __future__ import annotations

import enum
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from remedies.config import RunConfig, config_to_dict, parse_config
from remedies.errors import ConfigError
from remedies.io import atomic_target

if TYPE_CHECKING:
    from remedies.data import Splits, StreamSplits  # typing only
    from remedies.engine.trainer import TrainResult  # typing only


FORMAT = "remedies-checkpoint-v1"  # unchanged: older checkpoints hold the same plain data
_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_REASON = re.compile(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", re.DOTALL)


def plain(obj: Any) -> Any:
    """`obj` as data the weights-only unpickler accepts: dicts, lists, str, int, float, bool,
    None. Numbers of numpy/torch types become Python numbers, arrays and tensors lists,
    paths and anything else their text — so a remedy or measure that reports a numpy float or a
    Path still saves a checkpoint that loads, instead of one that is refused later."""
    if obj is None or type(obj) in (bool, int, float, str):  # exact: np.float64 is a float too
        return obj
    if isinstance(obj, (np.generic, np.ndarray, torch.Tensor)):
        return plain(obj.tolist())  # a 0-d array or tensor gives a plain number
    if isinstance(obj, enum.Enum):
        return plain(obj.value)
    for base in (bool, int, float, str):  # any other subclass of a plain type
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, dict):
        return {_key(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v) for v in obj]
    return str(obj)  # a Path, or any other object: its text, never the object


def _key(k: Any) -> Any:
    k = plain(k)
    return k if k is None or type(k) in (bool, int, float, str) else str(k)


def save_checkpoint(path: Path, result: TrainResult) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a half-written checkpoint.

    Weights are tensors; config, metrics and history pass through `plain`, so the file loads with
    `torch.load(weights_only=True)`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    summary.pop("history", None)
    payload = {
        "format": FORMAT,
        "config": plain(config_to_dict(result.config)),
        "model_state": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "metrics": plain(summary),
        "history": plain(result.history),
    }
    with atomic_target(path) as tmp:
        torch.save(payload, tmp)
    return path


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200] or "unreadable"


def _read(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The payload, unpickled weights-only: tensors and plain data. A pickled class or function
    anywhere in the file is refused (and named) before anything of it runs."""
    try:
        payload = torch.load(Path(path), map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if found := _GLOBAL.search(msg):
            raise ConfigError(
                "checkpoint",
                f"{path} contains a pickled object ({found.group(1)}), "
                "not only weights and plain data; refused without running it "
                "(load only checkpoints that remedies wrote)",
            ) from None
        # torch's message is several lines of advice (incl. "load with weights_only=False");
        # keep only the reason
        found = _REASON.search(msg)
        why = found.group(1) if found else "not a file torch.load(weights_only=True) accepts"
        raise ConfigError("checkpoint", f"cannot read {path}: {_one_line(why)}") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise ConfigError("checkpoint", f"cannot read {path}: {_one_line(str(e))}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError("checkpoint", f"{path} is not a remedies checkpoint")
    return payload


def load_checkpoint_config(path: Path) -> RunConfig:
    """The run config stored in a checkpoint (no model is built)."""
    return parse_config(_read(path)["config"])


def load_checkpoint(
    path: Path,
    device: str | torch.device = "cpu",
    splits: Splits | StreamSplits | None = None,
) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """Rebuild the model exactly as trained (remedies' model changes included) and load weights.

    Returns (model in eval mode, config, metrics). The data set is needed only for the input
    shape and class count; pass `splits` when they are already loaded.
    """
    from remedies.data import load_data  # (as above)
    from remedies.engine.api import Recipe  # here: the trainer imports this module
    from remedies.engine.trainer import build_model  # (as above)

    payload = _read(path, device)
    cfg = parse_config(payload["config"])
    splits = splits if splits is not None else load_data(cfg.data, device)
    model = build_model(cfg, splits, torch.device(device))
    # the remedies' setup, as in training (ghost BN swaps its layers before the weights load)
    # (precision fp32: only the weights are wanted, and an fp16 run's checkpoint loads on a CPU)
    model = (
        Recipe(cfg)
        .apply(
            model,
            n_train=splits.n_train,
            input_shape=splits.input_shape,
            device=device,
            precision="fp32",
        )
        .model
    )
    model.load_state_dict(payload["model_state"])
    model.eval()
    return model, cfg, payload["metrics"]
