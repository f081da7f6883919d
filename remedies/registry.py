"""A tiny name → factory registry (one per kind: models, remedies, measures), in the style of timm.

Why: configs name components by string; a registry turns a typo into an error that lists what
exists and the closest matches, and refuses a duplicate name instead of silently shadowing it.

The registries a run config names its parts from (data sets, models, remedies) live here, at the
bottom, so `config.py`'s validators reach them without importing the packages that fill them
(those import `config.py` for its types): each registry loads its built-ins by module name on
first use, the way an entry point is loaded, and a user's plug-in registers into the same one.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from remedies.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, builtins: str | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._builtins = builtins  # the module whose import registers the built-in entries

    def _load(self) -> None:
        if self._builtins is not None:
            module, self._builtins = self._builtins, None  # once; its import may look names up
            importlib.import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"duplicate {self.kind} name {name!r}")
            self._items[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> T:
        """Remove and return an entry (a test's own, or a plug-in being reloaded)."""
        return self._items.pop(name)

    def get(self, name: str, field: str | None = None) -> T:
        self._load()
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                field or self.kind,
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}{hint}",
            )
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._items))


# entries typed where they are defined (remedies.data.registry.DataSet, remedies.models'
# factories, remedies.hooks.Remedy): naming those types here would import upwards
DATASETS: Registry[Any] = Registry("data set", builtins="remedies.data")
MODELS: Registry[Any] = Registry("model", builtins="remedies.models")
REMEDIES: Registry[Any] = Registry("remedy", builtins="remedies.catalog")
