"""Writers for tiny data files in the real on-disk formats (no network in tests)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def _dump(obj: dict, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    """IDX format: magic (0, 0, 0x08 = ubyte, ndim), big-endian int32 dims, raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(
        struct.pack(">I", d) for d in arr.shape
    )
    data = header + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


def write_mnist(root: Path, n_train: int = 50, n_test: int = 20, gz: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    xs = {
        "train": rng.integers(0, 256, (n_train, 28, 28)),
        "t10k": rng.integers(0, 256, (n_test, 28, 28)),
    }
    ys = {"train": rng.integers(0, 10, n_train), "t10k": rng.integers(0, 10, n_test)}
    for split in ("train", "t10k"):
        sfx = ".gz" if gz else ""
        write_idx(raw / f"{split}-images-idx3-ubyte{sfx}", xs[split], gz)
        write_idx(raw / f"{split}-labels-idx1-ubyte{sfx}", ys[split], gz)
    return xs, ys


def write_cifar10(root: Path, per_batch: int = 8, n_test: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    batches = []
    for i in range(1, 6):
        d = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"batch_label": f"training batch {i} of 5".encode(),
        }
        _dump(d, base / f"data_batch_{i}")
        batches.append(d)
    t = {
        b"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
        b"labels": [int(v) for v in rng.integers(0, 10, n_test)],
    }
    _dump(t, base / "test_batch")
    return batches, t


def write_cifar100(root: Path, n_train: int = 30, n_test: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = root / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        d = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
        }
        _dump(d, base / name)
        out[name] = d
    return out


def write_npz(
    path: Path,
    n_train: int = 200,
    n_test: int = 50,
    shape=(40,),
    classes: int = 10,
    seed: int = 0,
    **override,
) -> Path:
    """A learnable toy set: the class decides the mean of each sample."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1, (classes, *shape)).astype(np.float32)

    def make(n):
        y = rng.integers(0, classes, n)
        return (means[y] + 0.5 * rng.normal(0, 1, (n, *shape))).astype(np.float32), y

    x_tr, y_tr = make(n_train)
    x_te, y_te = make(n_test)
    arrays = {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, **override}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path
