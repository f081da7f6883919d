"""A data set's arrays → (train, validation, test) tensors, checked once.

Why tensors and not DataLoaders: every supported set fits in memory, and slicing a permutation of
an on-device tensor is far cheaper per step than a Python loader (airbench's lesson). The
validation split is carved from the training data with a fixed seed, so every run of a search sees
the same one; the test split is never used for selection. Data too large for that is a factory's
`StreamSplits` (remedies.data.factory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from remedies.config import DataConfig
from remedies.data.registry import DATASETS, Arrays
from remedies.errors import ConfigError


@dataclass
class Splits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def nbytes(self) -> int:
        return sum(
            t.element_size() * t.nelement()
            for t in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test)
        )

    def to(self, device: torch.device | str) -> Splits:
        moved = {
            k: getattr(self, k).to(device)
            for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        }
        return Splits(**moved, num_classes=self.num_classes)


@dataclass
class StreamSplits:
    """Three torch Datasets of (x, y) samples, too large (or too lazy) to hold as tensors: the
    trainer batches them through a DataLoader in the order its seeded permutation gives."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    workers: int = 0  # DataLoader worker processes

    @property
    def n_train(self) -> int:
        return len(self.train)  # type: ignore[arg-type]

    @property
    def nbytes(self) -> float:
        return math.inf  # never shipped through Ray's object store: each trial calls the factory

    def to(self, device: torch.device | str) -> StreamSplits:
        return self  # batches move to the device as they are drawn


def _check(arrays: Arrays) -> None:
    x_tr, y_tr, x_te, y_te = arrays
    for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if len(x) != len(y):
            raise ConfigError("data", f"x_{name} has {len(x)} samples but y_{name} has {len(y)}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ConfigError(
                "data",
                f"y_{name} must be a 1-D array of integer class labels, "
                f"got dtype {y.dtype} shape {y.shape}",
            )
        if len(y) and y.min() < 0:
            raise ConfigError("data", f"y_{name} has negative labels; labels must be 0..C-1")
        if not np.issubdtype(x.dtype, np.number):
            raise ConfigError("data", f"x_{name} must be numeric, got dtype {x.dtype}")
        if x.ndim < 2:
            raise ConfigError(
                "data", f"x_{name} must hold one row per sample (≥ 2-D), got shape {x.shape}"
            )
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise ConfigError("data", f"x_{name} contains NaN or infinite values")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ConfigError(
            "data",
            f"x_train samples have shape {x_tr.shape[1:]} but x_test samples have {x_te.shape[1:]}",
        )
    if len(y_tr) < 2:
        raise ConfigError("data", "the training set needs at least 2 samples")


def _num_classes(y_tr: np.ndarray, y_te: np.ndarray, cfg: DataConfig) -> int:
    """The model's output count. Inferred as max label + 1 only when every class below it occurs
    in the training labels: a stray label (99 in 10-class data) would otherwise silently make a
    100-way classifier whose extra outputs no sample ever trains."""
    top_tr = int(y_tr.max())
    top = max(top_tr, int(y_te.max()) if len(y_te) else 0)
    where = "y_train" if top_tr == top else "y_test"
    if cfg.num_classes is not None:
        n = cfg.num_classes
        if top >= n:
            raise ConfigError(
                "data.num_classes",
                f"is {n} but {where} holds label {top}; "
                f"allowed: labels 0..{n - 1} or num_classes ≥ {top + 1}",
            )
        return n
    known = DATASETS.get(cfg.name).num_classes if cfg.name else None
    if known is not None:
        if top >= known:
            raise ConfigError(
                "data.path",
                f"{cfg.name} has {known} classes but {where} holds "
                f"label {top}; the copy is corrupt",
            )
        return known
    present = np.unique(y_tr)  # sorted; no bincount: a stray huge label must not allocate
    if len(present) < top + 1:
        missing = _gaps(present.tolist(), top)
        noun = "class" if missing[1] == 1 else "classes"
        verb = "occurs" if missing[1] == 1 else "occur"
        raise ConfigError(
            "data",
            f"{noun} {missing[0]} never {verb} in the training labels (max label {top}"
            f"{'' if where == 'y_train' else ', in y_test'}); "
            "set data.num_classes if that is intended",
        )
    return top + 1


def _gaps(present: list[int], top: int, shown: int = 4) -> tuple[str, int]:
    """The labels in 0..top absent from sorted `present`, as ('3, 10..98', count)."""
    runs, count, nxt = [], 0, 0
    for v in [*present, top + 1]:
        if v > nxt:
            runs.append(str(nxt) if v - 1 == nxt else f"{nxt}..{v - 1}")
            count += v - nxt
        nxt = max(nxt, v + 1)
    text = ", ".join(runs[:shown]) + (f", … ({count} in all)" if len(runs) > shown else "")
    return text, count


def _to_float(x: np.ndarray) -> torch.Tensor:
    # pixels as uint8 are scaled to [0, 1] (the paper's only preprocessing); floats are kept
    t = torch.from_numpy(np.require(x, requirements=["C", "W"]))  # copies read-only buffers
    return t.float().div_(255.0) if x.dtype == np.uint8 else t.float()


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(y.astype(np.int64))


def _subset(arrays: Arrays, n: int | None) -> Arrays:
    """The first `n` training samples and the same share of the test split (data.subset)."""
    x_tr, y_tr, x_te, y_te = arrays
    if n is None or n >= len(y_tr):
        return arrays
    k = max(1, round(n * len(y_te) / max(len(y_tr), 1)))
    return x_tr[:n], y_tr[:n], x_te[:k], y_te[:k]


def make_splits(arrays: Arrays, cfg: DataConfig) -> Splits:
    _check(arrays)
    x_tr, y_tr, x_te, y_te = arrays
    perm = np.random.default_rng(cfg.split_seed).permutation(len(y_tr))
    n_val = round(cfg.val_fraction * len(y_tr))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if cfg.max_train is not None:
        train_idx = train_idx[: cfg.max_train]
    if len(train_idx) < 2:
        raise ConfigError(
            "data.val_fraction", f"leaves {len(train_idx)} training samples; lower it"
        )
    num_classes = _num_classes(y_tr, y_te, cfg)
    return Splits(
        x_train=_to_float(x_tr[train_idx]),
        y_train=_labels(y_tr[train_idx]),
        x_val=_to_float(x_tr[val_idx]),
        y_val=_labels(y_tr[val_idx]),
        x_test=_to_float(x_te),
        y_test=_labels(y_te),
        num_classes=num_classes,
    )
