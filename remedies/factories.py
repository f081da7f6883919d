"""Your own model and data: `"pkg.module:function"` import paths in run configs and space files.

    model: {factory: "mypkg.models:resnet18", kwargs: {depth: 18}}
    data:  {factory: "mypkg.data:load", kwargs: {root: /data}, num_classes: 10}

Why import paths and not registration: the function lives in the user's package, which the
search's Ray workers import by the same path (installed there, or on their `PYTHONPATH`); a
string travels in a config, an export and an MLflow param where a function object cannot.

The path is resolved when the config is validated (a missing module or attribute is one line);
what the function returns is checked when it is first called — the data by `remedies.data`, the
model by `check_model` — both before any training starts.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from remedies.errors import ConfigError

_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def resolve(path: str, field: str) -> Callable[..., Any]:
    """The callable at `"pkg.module:attr"`; any failure is a ConfigError naming `field`."""
    if not _PATH.match(path):
        raise ConfigError(field, f"must be an import path like 'mypkg.models:build', got {path!r}")
    mod_name, attr = path.split(":")
    try:
        obj: Any = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - a user's module may raise anything on import
        why = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ConfigError(
            field,
            f"cannot import {mod_name!r} ({type(e).__name__}: {why}); it must "
            "be importable here and on every worker (installed, or on "
            "PYTHONPATH)",
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(field, f"module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(field, f"{path!r} is a {type(obj).__name__}, not a function or class")
    return obj


def call(path: str, field: str, kwargs: dict[str, Any], **offered: Any) -> Any:
    """Call the factory with `kwargs`, plus each `offered` argument its signature names (a model
    factory may take `input_shape` and `num_classes`; one that does not is called without)."""
    fn = resolve(path, field)
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature: kwargs only
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in offered.items() if (takes_all or k in params) and k not in kwargs}
    try:
        return fn(**kwargs, **extra)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code: one line, not a traceback
        why = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ConfigError(field, f"{path}(**{kwargs}) raised {type(e).__name__}: {why}") from None


@torch.no_grad()
def check_model(model: Any, path: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A factory's model must be an nn.Module mapping (2, *input_shape) to (2, num_classes)."""
    field = "model.factory"
    if not isinstance(model, nn.Module):
        raise ConfigError(
            field, f"{path} returned a {type(model).__name__}; expected a torch.nn.Module"
        )
    was = model.training
    model.eval()  # no BN running-statistics update from the probe
    try:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        out = model(torch.zeros(2, *input_shape, device=device))
    except Exception as e:  # noqa: BLE001
        why = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ConfigError(
            field,
            f"{path}'s model fails on a batch of samples of shape "
            f"{tuple(input_shape)} ({type(e).__name__}: {why})",
        ) from None
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            field,
            f"{path}'s model maps a batch of 2 samples to {got}; expected "
            f"logits of shape (2, {num_classes}) for {num_classes} classes",
        )
    return model
