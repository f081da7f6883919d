"""The data set registry: a built-in set is a reader `DataConfig -> Arrays` plus what is fixed
about it, registered by name with one `register_dataset` call in its own file under
`remedies/data/sets/` (every module there is imported when `remedies.data` is).

Why a registry: configs name data sets by string; `DATASETS.get` turns a typo into one line listing
the known names, and a duplicate name is refused instead of silently shadowing a built-in.
Also here: what every reader shares (the `Arrays` it returns, the cache folder, how a corrupt
file's exception becomes one short line).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from remedies.config import DataConfig
from remedies.registry import DATASETS as _DATASETS
from remedies.registry import Registry

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test
# what a truncated or corrupt file raises from numpy, zipfile, gzip, zlib or pickle
_CORRUPT = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError)


@dataclass(frozen=True)
class DataSet:
    """A built-in data set: its reader and what is fixed about it. A new set is one entry."""

    read: Callable[[DataConfig], Arrays]
    num_classes: int | None = None  # fixed by the set; None: inferred from the labels
    needs_path: bool = False  # data.path is required (user-supplied data)


DATASETS: Registry[DataSet] = _DATASETS  # the one config.py validates names against


def register_dataset(
    name: str,
    read: Callable[[DataConfig], Arrays],
    *,
    num_classes: int | None = None,
    needs_path: bool = False,
) -> DataSet:
    """Register `read` as data set `name` (config `data.name`); a taken name raises ValueError."""
    return DATASETS.register(name)(DataSet(read, num_classes, needs_path))


def cache_dir(cfg: DataConfig) -> Path:
    d = cfg.cache_dir or Path(os.environ.get("REMEDIES_CACHE", Path.home() / ".cache" / "remedies"))
    return Path(d).expanduser()


def _why(e: BaseException) -> str:
    """An exception as one short line (library messages may span lines or be empty)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__
