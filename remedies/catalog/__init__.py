"""The remedy catalogue: one module per remedy, found by name through `REMEDIES`.

`remedies: {sam: {}}` in a run config turns SAM on with its defaults; `{sam: {rho: 0.1}}` sets a
parameter. Configs are validated here, once, when the run config is parsed.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from remedies.errors import ConfigError, describe
from remedies.hooks import Remedy
from remedies.registry import Registry

REMEDIES: Registry[type[Remedy[Any]]] = Registry("remedy")

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


def validate_remedies(raw: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Check names and parameters; return each remedy's complete parameters (defaults filled)."""
    out: dict[str, dict[str, Any]] = {}
    owners = []
    for name, params in raw.items():
        cls = REMEDIES.get(name, f"remedies.{name}")
        try:
            cfg = cls.Config.model_validate(params or {})
        except ValidationError as err:
            e = err.errors()[0]
            loc = ".".join(str(p) for p in e["loc"])
            msg = describe(e, f"allowed: {', '.join(cls.Config.model_fields)}")
            field = f"remedies.{name}.{loc}" if loc else f"remedies.{name}"
            raise ConfigError(field, msg) from None
        if cls.replaces_step:
            owners.append(name)
        out[name] = cfg.model_dump(mode="json")
    if len(owners) > 1:
        raise ConfigError(
            "remedies", f"{' and '.join(owners)} each replace the optimiser step; enable only one"
        )
    return out


def build_remedies(cfg: Mapping[str, dict[str, Any] | None]) -> list[Remedy[Any]]:
    """One remedy per entry of a validated `RunConfig.remedies` (whose declared type still admits
    the None a raw config may hold; validation has replaced it with the defaults)."""
    return [REMEDIES.get(n)(REMEDIES.get(n).Config.model_validate(p)) for n, p in cfg.items()]
