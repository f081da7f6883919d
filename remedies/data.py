"""Data sets → (train, validation, test) tensors that live on the training device.

Why tensors and not DataLoaders: every supported set fits in memory, and slicing a permutation of
an on-device tensor is far cheaper per step than a Python loader (airbench's lesson). The
validation split is carved from the training data with a fixed seed, so every run of a search sees
the same one; the test split is never used for selection.

Formats read (the same on-disk layouts torchvision's caches use, so an existing cache works):
  mnist1d   generated locally by the `mnist1d` package (no download), cached as .npz
  npz       a user file with x_train, y_train, x_test, y_test (any sample shape, integer labels)
  mnist     ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]  (IDX)
  cifar10   ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}             (python pickles)
  cifar100  ROOT/cifar-100-python/{train,test}                                (python pickles)
  timit     DIR/{train,test}_{features,labels}.npy with 360-dim features (user-supplied)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from remedies.config import DataConfig
from remedies.errors import ConfigError
from remedies.io import atomic_target

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test


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

    def to(self, device: torch.device | str) -> Splits:
        moved = {k: getattr(self, k).to(device) for k in
                 ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}  # fmt: skip
        return Splits(**moved, num_classes=self.num_classes)


def cache_dir(cfg: DataConfig) -> Path:
    d = cfg.cache_dir or Path(os.environ.get("REMEDIES_CACHE", Path.home() / ".cache" / "remedies"))
    return Path(d).expanduser()


# ------------------------------------------------------------------------------------- readers


def read_mnist1d(cfg: DataConfig) -> Arrays:
    """MNIST-1D from the package's procedural generator (never its download path), cached."""
    path = cache_dir(cfg) / f"mnist1d_n{cfg.num_samples}_seed42.npz"
    if not path.exists():
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = cfg.num_samples
        d = make_dataset(args)
        _atomic_savez(path, x_train=d["x"], y_train=d["y"], x_test=d["x_test"], y_test=d["y_test"])
    return read_npz(path, "data.num_samples")


def read_npz(path: Path, field: str = "data.path") -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f]
            if missing:
                raise ConfigError(
                    field,
                    f"{path} lacks arrays {', '.join(missing)}; "
                    "expected x_train, y_train, x_test, y_test",
                )
            return f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    except (OSError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(field, f"cannot read {path} as .npz: {e}") from None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte payload
        raise ConfigError("data.path", f"{path} is not an IDX file of unsigned bytes")
    ndim = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ConfigError("data.path", f"{path} is truncated: header says {shape}")
    return arr.reshape(shape)


MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {  # name -> md5 of the .gz (the checksums torchvision uses)
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
CIFAR = {  # name -> (folder, url, md5 of the archive)
    "cifar10": ("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "eb9058c3a382ffc7106e4002c42a8d85"),
}  # fmt: skip


def read_mnist(cfg: DataConfig) -> Arrays:
    raw = (cfg.path or cache_dir(cfg)) / "MNIST" / "raw"
    found = {}
    for name, md5 in MNIST_FILES.items():
        for cand in (raw / name, raw / f"{name}.gz"):
            if cand.exists():
                found[name] = cand
                break
        else:
            if not cfg.download:
                raise ConfigError(
                    "data.path",
                    f"no MNIST copy at {raw} (missing {name}[.gz]); "
                    "point data.path at a folder holding MNIST/raw, or set data.download: true",
                )
            found[name] = _download(MNIST_MIRROR + name + ".gz", raw / f"{name}.gz", md5)
    xtr, ytr = (
        _read_idx(found["train-images-idx3-ubyte"]),
        _read_idx(found["train-labels-idx1-ubyte"]),
    )
    xte, yte = (
        _read_idx(found["t10k-images-idx3-ubyte"]),
        _read_idx(found["t10k-labels-idx1-ubyte"]),
    )
    return xtr[:, None], ytr, xte[:, None], yte  # (N, 1, 28, 28) uint8


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def read_cifar(cfg: DataConfig) -> Arrays:
    folder, url, md5 = CIFAR[cfg.name]
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
        parts = [_unpickle(p) for p in files]
        x = np.concatenate([np.asarray(p[b"data"], dtype=np.uint8) for p in parts])
        y = np.concatenate([np.asarray(p[key], dtype=np.int64) for p in parts])
        return x.reshape(-1, 3, 32, 32), y

    return *load(train_files), *load(test_files)


def read_timit(cfg: DataConfig) -> Arrays:
    root = Path(cfg.path)  # type: ignore[arg-type]
    if root.suffix == ".npz":
        arrays = read_npz(root)
    else:
        names = ("train_features", "train_labels", "test_features", "test_labels")
        missing = [n for n in names if not (root / f"{n}.npy").exists()]
        if missing:
            raise ConfigError(
                "data.path",
                f"{root} lacks {', '.join(m + '.npy' for m in missing)} "
                "(TIMIT is user-supplied: 360-dim frame features and integer labels)",
            )
        arrays = tuple(np.load(root / f"{n}.npy", allow_pickle=False) for n in names)
    if arrays[0].ndim != 2 or arrays[0].shape[1] != 360 or arrays[2].shape[1:] != (360,):
        raise ConfigError("data.path", f"TIMIT features must be (N, 360), got {arrays[0].shape}")
    return arrays  # type: ignore[return-value]


READERS = {"mnist1d": read_mnist1d, "npz": lambda c: read_npz(c.path), "mnist": read_mnist,
           "cifar10": read_cifar, "cifar100": read_cifar, "timit": read_timit}  # fmt: skip


# ---------------------------------------------------------------------------------- assembling


def _check(arrays: Arrays) -> None:
    x_tr, y_tr, x_te, y_te = arrays
    for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if len(x) != len(y):
            raise ConfigError("data", f"x_{name} has {len(x)} samples but y_{name} has {len(y)}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ConfigError("data", f"y_{name} must be a 1-D array of integer class labels, "
                              f"got dtype {y.dtype} shape {y.shape}")  # fmt: skip
        if len(y) and y.min() < 0:
            raise ConfigError("data", f"y_{name} has negative labels; labels must be 0..C-1")
        if not np.issubdtype(x.dtype, np.number):
            raise ConfigError("data", f"x_{name} must be numeric, got dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise ConfigError("data", f"x_{name} contains NaN or infinite values")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ConfigError("data", f"x_train samples have shape {x_tr.shape[1:]} but x_test "
                          f"samples have {x_te.shape[1:]}")  # fmt: skip
    if len(y_tr) < 2:
        raise ConfigError("data", "the training set needs at least 2 samples")


def _to_float(x: np.ndarray) -> torch.Tensor:
    # pixels as uint8 are scaled to [0, 1] (the paper's only preprocessing); floats are kept
    t = torch.from_numpy(np.require(x, requirements=["C", "W"]))  # copies read-only buffers
    return t.float().div_(255.0) if x.dtype == np.uint8 else t.float()


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(y.astype(np.int64))


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
    num_classes = int(max(y_tr.max(), y_te.max() if len(y_te) else 0)) + 1
    return Splits(
        x_train=_to_float(x_tr[train_idx]), y_train=_labels(y_tr[train_idx]),
        x_val=_to_float(x_tr[val_idx]), y_val=_labels(y_tr[val_idx]),
        x_test=_to_float(x_te), y_test=_labels(y_te),
        num_classes=num_classes,
    )  # fmt: skip


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> Splits:
    """Read the configured data set and return its three splits on `device`."""
    return make_splits(READERS[cfg.name](cfg), cfg).to(device)


# ------------------------------------------------------------------------------------ download


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest: Path, md5: str) -> Path:
    """Fetch `url` to `dest` atomically and verify its checksum; a failure leaves nothing behind."""
    if dest.exists() and _md5(dest) == md5:
        return dest
    with atomic_target(dest) as tmp:  # replaces dest only if no error is raised inside
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                while block := r.read(1 << 20):
                    f.write(block)
        except OSError as e:
            raise ConfigError("data.download", f"could not download {url}: {e}") from None
        if _md5(tmp) != md5:
            raise ConfigError("data.download", f"checksum mismatch for {url}; file discarded")
    return dest


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    with atomic_target(path) as tmp:
        np.savez(tmp, **arrays)
