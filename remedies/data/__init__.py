"""Data sets → (train, validation, test) tensors that live on the training device.

A built-in set is one file under `remedies/data/sets/` that registers its reader with one
`register_dataset(...)` call (the registry `DATASETS`, in `remedies.data.registry`); importing
this package imports every such file. Formats read (the on-disk layouts torchvision's caches use,
so an existing cache works):
  mnist1d   generated locally by the `mnist1d` package (no download), cached as .npz
  npz       a user file with x_train, y_train, x_test, y_test (any sample shape, integer labels)
  mnist     ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]  (IDX)
  fashion_mnist  DIR or ROOT/FashionMNIST/raw with the same four IDX files; default Debian's
            /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)
  idx       DIR with the same four IDX files, any MNIST-format set (KMNIST, ...)
  cifar10   ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}             (python pickles)
  cifar100  ROOT/cifar-100-python/{train,test}                                (python pickles)
  timit     DIR/{train,test}_{features,labels}.npy with 360-dim features (user-supplied)

The rest of the package: `splits` (arrays → checked, seeded `Splits`), `factory` (a user's
`data.factory`, held as `Splits` or streamed as `StreamSplits`), `download` (md5-checked, atomic).
"""

from __future__ import annotations

import torch

import remedies.data.sets  # noqa: F401  (registers every built-in data set)
from remedies.config import DataConfig
from remedies.data.download import _atomic_savez as _atomic_savez
from remedies.data.download import _download as _download
from remedies.data.download import _md5 as _md5
from remedies.data.factory import SPLIT_NAMES, from_factory
from remedies.data.registry import DATASETS, Arrays, DataSet, cache_dir, register_dataset
from remedies.data.sets.cifar import CIFAR, read_cifar
from remedies.data.sets.idx import (
    FASHION_MNIST,
    IDX_FILES,
    IDX_FOLDER,
    MNIST,
    MNIST_FILES,
    MNIST_MIRROR,
    IdxSet,
    read_idx_set,
    read_mnist,
)
from remedies.data.sets.mnist1d import read_mnist1d
from remedies.data.sets.npz import NPZ_KEYS, read_npz
from remedies.data.sets.timit import read_timit
from remedies.data.splits import Splits, StreamSplits, _subset, make_splits

__all__ = [
    "CIFAR",
    "DATASETS",
    "FASHION_MNIST",
    "IDX_FILES",
    "IDX_FOLDER",
    "MNIST",
    "MNIST_FILES",
    "MNIST_MIRROR",
    "NPZ_KEYS",
    "SPLIT_NAMES",
    "Arrays",
    "DataSet",
    "IdxSet",
    "Splits",
    "StreamSplits",
    "cache_dir",
    "from_factory",
    "load_data",
    "make_splits",
    "read_cifar",
    "read_idx_set",
    "read_mnist",
    "read_mnist1d",
    "read_npz",
    "read_timit",
    "register_dataset",
]


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> Splits | StreamSplits:
    """Read the configured data set and return its three splits on `device` (a factory's
    Datasets stay where they are and are streamed in batches)."""
    if cfg.factory is not None:
        return from_factory(cfg).to(device)
    assert cfg.name is not None  # validated: a name or a factory
    return make_splits(_subset(DATASETS.get(cfg.name).read(cfg), cfg.subset), cfg).to(device)
