"""cifar10, cifar100: ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch} and
ROOT/cifar-100-python/{train,test}, the python pickles of the official archives (the layout
torchvision's cache uses, so an existing cache works); data.download: true fetches and checks them.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from remedies.config import DataConfig
from remedies.data.download import _download
from remedies.data.registry import _CORRUPT, Arrays, _why, cache_dir, register_dataset
from remedies.errors import ConfigError

CIFAR = {  # name -> (folder, url, md5 of the archive)
    "cifar10": (
        "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": (
        "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}


def _unpickle(path: Path, label_key: bytes) -> dict:
    """One CIFAR batch; a truncated or foreign pickle is one ConfigError, not a traceback."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except (
        *_CORRUPT,
        pickle.UnpicklingError,
        AttributeError,
        ImportError,
        IndexError,
        TypeError,
    ) as e:
        raise ConfigError("data.path", f"cannot read {path} as a CIFAR batch ({_why(e)})") from None
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        raise ConfigError(
            "data.path",
            f"{path} is not a CIFAR batch: expected a dict with {b'data'!r} and {label_key!r}",
        )
    return d


def read_cifar(cfg: DataConfig) -> Arrays:
    folder, url, md5 = CIFAR[str(cfg.name)]
    root = cfg.path or cache_dir(cfg)
    base = root / folder
    if cfg.name == "cifar10":
        train_files = [base / f"data_batch_{i}" for i in range(1, 6)]
        test_files, key = [base / "test_batch"], b"labels"
    else:
        train_files, test_files, key = [base / "train"], [base / "test"], b"fine_labels"
    if not all(p.exists() for p in train_files + test_files):
        if not cfg.download:
            raise ConfigError(
                "data.path",
                f"no {cfg.name} copy at {base}; point data.path at the folder "
                f"holding {folder}/, or set data.download: true",
            )
        archive = _download(url, root / url.rsplit("/", 1)[1], md5)
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")

    def load(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for p in files:
            d = _unpickle(p, key)
            try:
                x = np.asarray(d[b"data"], dtype=np.uint8)
                y = np.asarray(d[key], dtype=np.int64)
            except (ValueError, TypeError, OverflowError) as e:
                raise ConfigError("data.path", f"{p} holds non-numeric data ({_why(e)})") from None
            if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (len(x),):
                raise ConfigError(
                    "data.path",
                    f"{p} is corrupt: data {x.shape}, labels "
                    f"{y.shape}; expected (N, 3072) and (N,)",
                )
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs).reshape(-1, 3, 32, 32), np.concatenate(ys)

    return *load(train_files), *load(test_files)


register_dataset("cifar10", read_cifar, num_classes=10)
register_dataset("cifar100", read_cifar, num_classes=100)
