"""The remedy catalogue: one module per remedy, found by name through `REMEDIES`.

`remedies: {sam: {}}` in a run config turns SAM on with its defaults; `{sam: {rho: 0.1}}` sets a
parameter. Configs are validated here, once, when the run config is parsed.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any, TypeVar

from remedies.config import validate_remedies as validate_remedies
from remedies.hooks import Remedy
from remedies.registry import REMEDIES as REMEDIES

R = TypeVar("R", bound=type[Remedy[Any]])


def register(cls: R) -> R:
    """Class decorator: register a remedy under its `name`."""
    REMEDIES.register(cls.name)(cls)
    return cls


def _load_all() -> None:
    # explicit import of every module in this package, so registration never depends on which
    # modules a caller happened to import first
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


_load_all()


def build_remedies(cfg: Mapping[str, dict[str, Any] | None]) -> list[Remedy[Any]]:
    """One remedy per entry of a validated `RunConfig.remedies` (whose declared type still admits
    the None a raw config may hold; validation has replaced it with the defaults)."""
    return [REMEDIES.get(n)(REMEDIES.get(n).Config.model_validate(p)) for n, p in cfg.items()]
