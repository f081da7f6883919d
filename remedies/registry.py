"""A tiny name → factory registry (one per kind: models, remedies, measures), in the style of timm.

Why: configs name components by string; a registry turns a typo into an error that lists what
exists and the closest matches, and refuses a duplicate name instead of silently shadowing it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from remedies.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

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
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                field or self.kind,
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}{hint}",
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
