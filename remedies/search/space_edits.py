"""Edits of a space file: `remedies search --set KEY=VALUE`, and what differs between the space
a search started with and the one a `--resume` brings (refused: a study must not mix spaces)."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from remedies.errors import ConfigError


def set_keys(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` overrides of a space file, as `train --set` overrides a run config. Space keys
    may hold dots themselves (`params.train.lr.high=0.1`: the param is `train.lr`), so each step
    takes the longest run of the remaining parts that names an existing key."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", f"expected KEY=VALUE, got {item!r}")
        node, parts = out, key.strip().split(".")
        while len(parts) > 1:
            n = next((n for n in range(len(parts) - 1, 0, -1) if ".".join(parts[:n]) in node), 1)
            head, parts = ".".join(parts[:n]), parts[n:]
            nxt = node.setdefault(head, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}", f"{head!r} is not a section")
            node = nxt
        node[parts[0]] = yaml.safe_load(value) if value.strip() else None
    return out


# what may change between a search's drivers: how many trials, how many at once
RESUMABLE_CHANGES = ("num_samples", "max_concurrent")


def space_changes(before: dict[str, Any], after: dict[str, Any], at: str = "") -> list[str]:
    """What differs between two spaces (as `model_dump(mode="json")`), one entry per leaf:
    `params.train.lr.high: 0.01 → 0.1`, `remedies.sam: removed`. A resumed search must keep the
    space it started with: Optuna's sampler would otherwise model trials of two spaces as one."""
    out: list[str] = []
    for k in sorted(set(before) | set(after), key=str):
        where = f"{at}.{k}" if at else str(k)
        if not at and k in RESUMABLE_CHANGES:
            continue
        a, b = before.get(k, _ABSENT), after.get(k, _ABSENT)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += space_changes(a, b, where)
        elif a is _ABSENT:
            out.append(f"{where}: added")
        elif b is _ABSENT:
            out.append(f"{where}: removed")
        else:
            out.append(f"{where}: {_short(a)} → {_short(b)}")
    return out


_ABSENT = object()


def _short(v: Any) -> str:
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."
