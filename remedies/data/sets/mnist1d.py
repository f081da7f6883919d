"""mnist1d: MNIST-1D, generated locally by the `mnist1d` package (no download), cached as .npz.

The offline default: small (40-sample 1-D signals, 10 classes), quick to generate and needs no
network, so every test and example can train on real data.
"""

from __future__ import annotations

from remedies.config import DataConfig
from remedies.data.download import _atomic_savez
from remedies.data.registry import Arrays, cache_dir, register_dataset
from remedies.data.sets.npz import read_npz


def read_mnist1d(cfg: DataConfig) -> Arrays:
    """MNIST-1D from the package's procedural generator (never its download path), cached."""
    path = cache_dir(cfg) / f"mnist1d_n{cfg.num_samples}_seed42.npz"
    if not path.exists():
        # imported only on a cache miss: the package pulls in requests, scipy and matplotlib
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = cfg.num_samples
        d = make_dataset(args)
        _atomic_savez(path, x_train=d["x"], y_train=d["y"], x_test=d["x_test"], y_test=d["y_test"])
    # the cache is ours: a damaged one names where it lives and how to get a fresh one
    return read_npz(path, "data.cache_dir", "; delete it and it is generated again")


register_dataset("mnist1d", read_mnist1d, num_classes=10)
