"""Data sets → (train, validation, test) tensors that live on the training device.

Why tensors and not DataLoaders: every supported set fits in memory, and slicing a permutation of
an on-device tensor is far cheaper per step than a Python loader (airbench's lesson). The
validation split is carved from the training data with a fixed seed, so every run of a search sees
the same one; the test split is never used for selection.

Built-in sets are entries of the registry `DATASETS` (one `register_dataset` line each).
Formats read (the same on-disk layouts torchvision's caches use, so an existing cache works):
  mnist1d   generated locally by the `mnist1d` package (no download), cached as .npz
  npz       a user file with x_train, y_train, x_test, y_test (any sample shape, integer labels)
  mnist     ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]  (IDX)
  fashion_mnist  DIR or ROOT/FashionMNIST/raw with the same four IDX files; default Debian's
            /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)
  idx       DIR with the same four IDX files, any MNIST-format set (KMNIST, ...)
  cifar10   ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}             (python pickles)
  cifar100  ROOT/cifar-100-python/{train,test}                                (python pickles)
  timit     DIR/{train,test}_{features,labels}.npy with 360-dim features (user-supplied)
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import tarfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from remedies.config import DataConfig
from remedies.errors import ConfigError
from remedies.io import atomic_target
from remedies.registry import Registry

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# what a truncated or corrupt file raises from numpy, zipfile, gzip, zlib or pickle
_CORRUPT = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError)


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
        return sum(t.element_size() * t.nelement() for t in (self.x_train, self.y_train,
                   self.x_val, self.y_val, self.x_test, self.y_test))  # fmt: skip

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
    # the cache is ours: a damaged one names where it lives and how to get a fresh one
    return read_npz(path, "data.cache_dir", "; delete it and it is generated again")


def _why(e: BaseException) -> str:
    """An exception as one short line (library messages may span lines or be empty)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def read_npz(path: Path, field: str = "data.path", hint: str = "") -> Arrays:
    """x_train, y_train, x_test, y_test from an .npz; any unreadable file is one ConfigError.

    Arrays are read eagerly inside the try: NpzFile decompresses lazily, so a truncated member
    would otherwise fail later, outside this function, as a traceback.
    """
    path = Path(path)
    if not path.is_file():
        want = ", ".join(NPZ_KEYS)
        raise ConfigError(field, f"no such file {path}; expected an .npz with {want}")
    try:
        f = np.load(path, allow_pickle=False)
    except _CORRUPT as e:
        raise ConfigError(field, f"cannot read {path} as .npz ({_why(e)}){hint}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ConfigError(field, f"{path} holds a single array, not an .npz archive with "
                          f"{', '.join(NPZ_KEYS)}")  # fmt: skip
    with f:
        missing = [k for k in NPZ_KEYS if k not in f]
        if missing:
            raise ConfigError(
                field,
                f"{path} lacks arrays {', '.join(missing)}; expected {', '.join(NPZ_KEYS)}",
            )
        try:
            return tuple(np.asarray(f[k]) for k in NPZ_KEYS)  # type: ignore[return-value]
        except _CORRUPT as e:
            raise ConfigError(field, f"{path} is truncated or corrupt ({_why(e)}){hint}") from None


def _read_idx(path: Path) -> np.ndarray:
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except _CORRUPT as e:  # a truncated .gz raises EOFError, a damaged one BadGzipFile/zlib
        raise ConfigError("data.path", f"cannot read {path} ({_why(e)})") from None
    magic = int.from_bytes(data[0:4], "big")
    if len(data) < 4 or magic >> 8 != 0x08:  # 0x08 = unsigned byte payload
        raise ConfigError("data.path", f"{path} is not an IDX file of unsigned bytes")
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim:
        raise ConfigError("data.path", f"{path} is truncated inside its header")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ConfigError("data.path", f"{path} is truncated or corrupt: header says shape "
                          f"{shape}, file holds {arr.size} bytes of data")  # fmt: skip
    return arr.reshape(shape)


MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip
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


@dataclass(frozen=True)
class IdxSet:
    """Where one IDX data set in the MNIST format may live: the four files
    {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], in one folder."""

    title: str  # for messages
    subdir: str | None = None  # torchvision's cache layout under a root, e.g. "MNIST/raw"
    system: Path | None = None  # a system-wide copy, e.g. a Debian dataset-* package's folder
    install: str = ""  # how to get a copy, for the error message
    mirror: str | None = None  # data.download: base URL, files checked against MNIST_FILES' md5s

    def folders(self, cfg: DataConfig) -> list[Path]:
        """Folders searched in order: data.path's torchvision layout, then data.path itself; with
        no data.path, the cache's layout, then the system copy."""
        roots = [cfg.path] if cfg.path is not None else [cache_dir(cfg)]
        out = [r / self.subdir for r in roots if self.subdir] + (roots if cfg.path else [])
        if cfg.path is None and self.system is not None:
            out.append(self.system)
        return out


MNIST = IdxSet(
    "MNIST",
    subdir="MNIST/raw",
    mirror=MNIST_MIRROR,
    install="point data.path at a folder holding MNIST/raw, or set data.download: true",
)
FASHION_MNIST = IdxSet(
    "Fashion-MNIST", subdir="FashionMNIST/raw", system=Path("/usr/share/datasets/fashion-mnist"),
    install="point data.path at a folder holding the four IDX files (or FashionMNIST/raw), or "
    "install Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)",
)  # fmt: skip
IDX_FOLDER = IdxSet("IDX", install="point data.path at a folder holding the four IDX files "
                    f"{', '.join(IDX_FILES)} (each may be .gz)")  # fmt: skip


def _idx_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    found, missing = {}, []
    for name in IDX_FILES:
        cand = next((c for c in (folder / name, folder / f"{name}.gz") if c.is_file()), None)
        if cand is None:
            missing.append(name)
        else:
            found[name] = cand
    return found, missing


def read_idx_set(cfg: DataConfig, spec: IdxSet) -> Arrays:
    """One IDX set from the first folder of `spec.folders` that holds all four files."""
    folders = spec.folders(cfg)
    found: dict[str, Path] = {}
    missing: list[str] = list(IDX_FILES)
    for folder in folders:
        found, missing = _idx_files(folder)
        if not missing:
            break
    else:
        found, missing = _idx_files(folders[0])
        if not (cfg.download and spec.mirror):
            where = " or ".join(str(f) for f in folders)
            raise ConfigError("data.path", f"no {spec.title} copy at {where} (missing "
                              f"{missing[0]}[.gz]); {spec.install}")  # fmt: skip
        for name in missing:
            found[name] = _download(f"{spec.mirror}{name}.gz", folders[0] / f"{name}.gz",
                                    MNIST_FILES[name])  # fmt: skip
    arrays = {name: _read_idx(p) for name, p in found.items()}
    for name, arr in arrays.items():
        want = 3 if "images" in name else 1  # (N, rows, cols) images, (N,) labels
        if arr.ndim != want:
            raise ConfigError("data.path", f"{found[name]} holds a {arr.ndim}-D array; "
                              f"{name} must be {want}-D")  # fmt: skip
    xtr, ytr, xte, yte = (arrays[n] for n in IDX_FILES)
    return xtr[:, None], ytr, xte[:, None], yte  # (N, 1, rows, cols) uint8


def read_mnist(cfg: DataConfig) -> Arrays:
    return read_idx_set(cfg, MNIST)


def _unpickle(path: Path, label_key: bytes) -> dict:
    """One CIFAR batch; a truncated or foreign pickle is one ConfigError, not a traceback."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except (*_CORRUPT, pickle.UnpicklingError, AttributeError, ImportError, IndexError,
            TypeError) as e:  # fmt: skip
        raise ConfigError("data.path", f"cannot read {path} as a CIFAR batch ({_why(e)})") from None
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        raise ConfigError("data.path", f"{path} is not a CIFAR batch: expected a dict with "
                          f"{b'data'!r} and {label_key!r}")  # fmt: skip
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
                raise ConfigError("data.path", f"{p} is corrupt: data {x.shape}, labels "
                                  f"{y.shape}; expected (N, 3072) and (N,)")  # fmt: skip
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs).reshape(-1, 3, 32, 32), np.concatenate(ys)

    return *load(train_files), *load(test_files)


def read_timit(cfg: DataConfig) -> Arrays:
    root = Path(str(cfg.path))  # required for timit: validated
    arrays: tuple[np.ndarray, ...]
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
        arrays = tuple(_read_npy(root / f"{n}.npy") for n in names)
    for i in (0, 2):
        if arrays[i].ndim != 2 or arrays[i].shape[1] != 360:
            raise ConfigError("data.path", f"TIMIT features must be (N, 360), got "
                              f"{arrays[i].shape} in {NPZ_KEYS[i]}")  # fmt: skip
    return arrays  # type: ignore[return-value]


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except _CORRUPT as e:  # truncated: "cannot reshape array…"/EOF; pickled: refused
        raise ConfigError("data.path", f"cannot read {path} as .npy ({_why(e)})") from None


@dataclass(frozen=True)
class DataSet:
    """A built-in data set: its reader and what is fixed about it. A new set is one entry."""

    read: Callable[[DataConfig], Arrays]
    num_classes: int | None = None  # fixed by the set; None: inferred from the labels
    needs_path: bool = False  # data.path is required (user-supplied data)


DATASETS: Registry[DataSet] = Registry("data set")


def register_dataset(
    name: str,
    read: Callable[[DataConfig], Arrays],
    *,
    num_classes: int | None = None,
    needs_path: bool = False,
) -> DataSet:
    return DATASETS.register(name)(DataSet(read, num_classes, needs_path))


register_dataset("mnist1d", read_mnist1d, num_classes=10)
register_dataset("npz", lambda c: read_npz(c.path), needs_path=True)  # type: ignore[arg-type]
register_dataset("mnist", read_mnist, num_classes=10)
register_dataset("fashion_mnist", lambda c: read_idx_set(c, FASHION_MNIST), num_classes=10)
register_dataset("idx", lambda c: read_idx_set(c, IDX_FOLDER), needs_path=True)  # e.g. KMNIST
register_dataset("cifar10", read_cifar, num_classes=10)
register_dataset("cifar100", read_cifar, num_classes=100)
register_dataset("timit", read_timit, needs_path=True)


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
        if x.ndim < 2:
            raise ConfigError("data", f"x_{name} must hold one row per sample (≥ 2-D), "
                              f"got shape {x.shape}")  # fmt: skip
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise ConfigError("data", f"x_{name} contains NaN or infinite values")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ConfigError("data", f"x_train samples have shape {x_tr.shape[1:]} but x_test "
                          f"samples have {x_te.shape[1:]}")  # fmt: skip
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
            raise ConfigError("data.num_classes", f"is {n} but {where} holds label {top}; "
                              f"allowed: labels 0..{n - 1} or num_classes ≥ {top + 1}")  # fmt: skip
        return n
    known = DATASETS.get(cfg.name).num_classes if cfg.name else None
    if known is not None:
        if top >= known:
            raise ConfigError("data.path", f"{cfg.name} has {known} classes but {where} holds "
                              f"label {top}; the copy is corrupt")  # fmt: skip
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
        x_train=_to_float(x_tr[train_idx]), y_train=_labels(y_tr[train_idx]),
        x_val=_to_float(x_tr[val_idx]), y_val=_labels(y_tr[val_idx]),
        x_test=_to_float(x_te), y_test=_labels(y_te),
        num_classes=num_classes,
    )  # fmt: skip


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> Splits | StreamSplits:
    """Read the configured data set and return its three splits on `device` (a factory's
    Datasets stay where they are and are streamed in batches)."""
    if cfg.factory is not None:
        return from_factory(cfg).to(device)
    assert cfg.name is not None  # validated: a name or a factory
    return make_splits(_subset(DATASETS.get(cfg.name).read(cfg), cfg.subset), cfg).to(device)


# --------------------------------------------------------------------------- your own data


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


SPLIT_NAMES = ("train", "val", "test")


def from_factory(cfg: DataConfig) -> Splits | StreamSplits:
    """Call `data.factory` and check what it returned, once: the wrong type or shape, mismatched
    lengths, non-finite inputs or labels out of range are one line naming data.factory."""
    from remedies.factories import call

    path, field = str(cfg.factory), "data.factory"
    out = call(path, field, cfg.kwargs)
    if isinstance(out, Mapping):
        missing = [k for k in SPLIT_NAMES if k not in out]
        if missing:
            raise ConfigError(field, f"{path} returned a mapping without {', '.join(missing)}; "
                              "expected keys train, val, test")  # fmt: skip
        parts = [out[k] for k in SPLIT_NAMES]
    elif isinstance(out, (tuple, list)) and len(out) == 3:
        parts = list(out)
    else:
        raise ConfigError(field, f"{path} returned {_kind(out)}; expected (train, val, test), "
                          "each an (x, y) pair of tensors or a torch Dataset")  # fmt: skip
    datasets = [isinstance(p, Dataset) for p in parts]
    if all(datasets):
        return _stream_splits(parts, cfg, path)
    if any(datasets):
        raise ConfigError(field, f"{path} returned a mix of Datasets and (x, y) pairs; return "
                          "all three splits the same way")  # fmt: skip
    arrays: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name, part in zip(SPLIT_NAMES, parts, strict=True):
        if not (isinstance(part, (tuple, list)) and len(part) == 2):
            raise ConfigError(field, f"{path}'s {name} split is {_kind(part)}; expected an (x, y) "
                              "pair of tensors or arrays, or a torch Dataset")  # fmt: skip
        try:
            x, y = torch.as_tensor(part[0]), torch.as_tensor(part[1])
        except (TypeError, ValueError, RuntimeError) as e:
            raise ConfigError(field, f"{path}'s {name} split is not numeric ({_why(e)})") from None
        arrays.append((x, y))
    (xt, yt), (xv, yv), (xs, ys) = arrays
    for name, (x, y) in zip(SPLIT_NAMES, arrays, strict=True):
        _check_pair(path, name, x, y, xt.shape[1:])
    top = max(int(y.max()) for _, y in arrays if len(y))
    n = cfg.num_classes if cfg.num_classes is not None else top + 1
    if top >= n:
        raise ConfigError(field, f"{path}'s labels reach {top} but data.num_classes is {n}; "
                          f"allowed: labels 0..{n - 1}")  # fmt: skip
    if n < 2:
        raise ConfigError(field, f"{path}'s labels hold one class; a classifier needs ≥ 2")
    return Splits(x_train=_as_float(xt), y_train=yt.long(), x_val=_as_float(xv), y_val=yv.long(),
                  x_test=_as_float(xs), y_test=ys.long(), num_classes=n)  # fmt: skip


def _kind(obj: object) -> str:
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)}"
    return f"a {type(obj).__name__}"


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _check_pair(path: str, name: str, x: torch.Tensor, y: torch.Tensor,
                shape: tuple[int, ...]) -> None:  # fmt: skip
    field = "data.factory"
    if x.dim() < 2 or len(x) != len(y):
        raise ConfigError(field, f"{path}'s {name} split: x {tuple(x.shape)} and y "
                          f"{tuple(y.shape)}; expected x (N, ...) and y (N,)")  # fmt: skip
    if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ConfigError(field, f"{path}'s {name} labels must be a 1-D integer tensor, got "
                          f"{y.dtype} {tuple(y.shape)}")  # fmt: skip
    if len(y) and int(y.min()) < 0:
        raise ConfigError(field, f"{path}'s {name} labels hold {int(y.min())}; labels are 0..C-1")
    if x.shape[1:] != shape:
        raise ConfigError(field, f"{path}'s {name} samples have shape {tuple(x.shape[1:])}, the "
                          f"train samples {tuple(shape)}")  # fmt: skip
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ConfigError(field, f"{path}'s {name} inputs contain NaN or infinite values")
    if name == "train" and len(y) < 2:
        raise ConfigError(field, f"{path}'s train split needs at least 2 samples")


def _stream_splits(parts: list[Dataset], cfg: DataConfig, path: str) -> StreamSplits:
    """Datasets are checked on their first sample (reading them all would defeat streaming)."""
    field = "data.factory"
    if cfg.num_classes is None:
        raise ConfigError("data.num_classes", f"is required when {path} returns Datasets (their "
                          "labels are not read in advance)")  # fmt: skip
    shape: tuple[int, ...] | None = None
    for name, ds in zip(SPLIT_NAMES, parts, strict=True):
        try:
            n = len(ds)  # type: ignore[arg-type]
            item = ds[0] if n else None
        except Exception as e:  # noqa: BLE001 - the user's Dataset
            raise ConfigError(field, f"{path}'s {name} Dataset fails to give its first sample "
                              f"({_why(e)})") from None  # fmt: skip
        if item is None:
            if name == "train":
                raise ConfigError(field, f"{path}'s train Dataset is empty")
            continue
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ConfigError(field, f"{path}'s {name} Dataset gives {_kind(item)} per sample; "
                              "expected an (x, y) pair")  # fmt: skip
        x, y = torch.as_tensor(item[0]), torch.as_tensor(item[1])
        if y.dim() != 0 or y.is_floating_point() or not 0 <= int(y) < cfg.num_classes:
            raise ConfigError(field, f"{path}'s {name} Dataset's first label is {item[1]!r}; "
                              f"allowed: an integer in 0..{cfg.num_classes - 1}")  # fmt: skip
        if shape is None:
            shape = tuple(x.shape)
        elif tuple(x.shape) != shape:
            raise ConfigError(field, f"{path}'s {name} samples have shape {tuple(x.shape)}, the "
                              f"train samples {shape}")  # fmt: skip
    train, val, test = parts
    return StreamSplits(train, val, test, num_classes=cfg.num_classes, input_shape=shape or (),
                        workers=cfg.loader_workers)  # fmt: skip


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


def _atomic_savez(path: Path, **arrays: Any) -> None:
    with atomic_target(path) as tmp:
        np.savez(tmp, **arrays)
