"""mnist, fashion_mnist, idx: sets in MNIST's IDX format, the four files
{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] in one folder (the layout torchvision's cache
uses, so an existing cache works):
  mnist          ROOT/MNIST/raw (data.download: true fetches it, checked against md5s)
  fashion_mnist  DIR or ROOT/FashionMNIST/raw; default Debian's /usr/share/datasets/fashion-mnist
                 (apt-get install dataset-fashion-mnist)
  idx            DIR holding the four files: any MNIST-format set (KMNIST, ...)
One file for the three: they differ only in where the files may live (`IdxSet`).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from remedies.config import DataConfig
from remedies.data.download import _download
from remedies.data.registry import _CORRUPT, Arrays, _why, cache_dir, register_dataset
from remedies.errors import ConfigError

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_FILES = {  # name -> md5 of the .gz (the checksums torchvision uses)
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}


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
        raise ConfigError(
            "data.path",
            f"{path} is truncated or corrupt: header says shape "
            f"{shape}, file holds {arr.size} bytes of data",
        )
    return arr.reshape(shape)


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
    "Fashion-MNIST",
    subdir="FashionMNIST/raw",
    system=Path("/usr/share/datasets/fashion-mnist"),
    install="point data.path at a folder holding the four IDX files (or FashionMNIST/raw), or "
    "install Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)",
)
IDX_FOLDER = IdxSet(
    "IDX",
    install="point data.path at a folder holding the four IDX files "
    f"{', '.join(IDX_FILES)} (each may be .gz)",
)


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
            raise ConfigError(
                "data.path",
                f"no {spec.title} copy at {where} (missing {missing[0]}[.gz]); {spec.install}",
            )
        for name in missing:
            found[name] = _download(
                f"{spec.mirror}{name}.gz", folders[0] / f"{name}.gz", MNIST_FILES[name]
            )
    arrays = {name: _read_idx(p) for name, p in found.items()}
    for name, arr in arrays.items():
        want = 3 if "images" in name else 1  # (N, rows, cols) images, (N,) labels
        if arr.ndim != want:
            raise ConfigError(
                "data.path", f"{found[name]} holds a {arr.ndim}-D array; {name} must be {want}-D"
            )
    xtr, ytr, xte, yte = (arrays[n] for n in IDX_FILES)
    return xtr[:, None], ytr, xte[:, None], yte  # (N, 1, rows, cols) uint8


def read_mnist(cfg: DataConfig) -> Arrays:
    return read_idx_set(cfg, MNIST)


register_dataset("mnist", read_mnist, num_classes=10)
register_dataset("fashion_mnist", lambda c: read_idx_set(c, FASHION_MNIST), num_classes=10)
register_dataset("idx", lambda c: read_idx_set(c, IDX_FOLDER), needs_path=True)  # e.g. KMNIST
