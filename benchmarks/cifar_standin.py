"""Write a CIFAR-10-sized stand-in in CIFAR-10's on-disk format (`cifar-10-batches-py/`).

Why: where CIFAR-10 cannot be downloaded (no network, as on the lent GPU machines), this lets
`remedies reproduce --nets C1 --data cifar10` run the paper's C1 protocol at full size — 50 000
training and 10 000 test images of 32×32×3 — to check that every run trains on the GPU and to
time the protocol. The images are synthetic (one smooth random template per class, a random
brightness and per-pixel noise), learnable but not CIFAR-10: accuracies and sharpness measured
on them say nothing about the paper's Table 2 and 3. The real data set is read from the same
folder layout (`--set data.path=ROOT`, or `data.download: true` where the network allows).

    python benchmarks/cifar_standin.py --root /tmp/cifar
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np


def templates(rng: np.random.Generator, classes: int = 10) -> np.ndarray:
    """One smooth 32×32×3 image per class: a random 4×4 grid upsampled, values in [0, 255]."""
    coarse = rng.uniform(0, 255, (classes, 3, 4, 4))
    return coarse.repeat(8, axis=2).repeat(8, axis=3)


def images(rng: np.random.Generator, tmpl: np.ndarray, n: int) -> tuple[np.ndarray, list[int]]:
    y = rng.integers(0, len(tmpl), n)
    gain = rng.uniform(0.6, 1.4, (n, 1, 1, 1))
    x = tmpl[y] * gain + rng.normal(0, 60, (n, 3, 32, 32))
    return np.clip(x, 0, 255).astype(np.uint8).reshape(n, 3072), [int(v) for v in y]


def write(root: Path, per_batch: int = 10_000, n_test: int = 10_000, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    tmpl = templates(rng)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        x, y = images(rng, tmpl, n)
        with open(base / name, "wb") as f:
            pickle.dump({b"data": x, b"labels": y, b"batch_label": name.encode()}, f)
    return base


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--per-batch", type=int, default=10_000, help="images per training batch file")
    ap.add_argument("--test", type=int, default=10_000)
    a = ap.parse_args()
    print(f"wrote {write(a.root, a.per_batch, a.test)} (synthetic stand-in, not CIFAR-10)")
