"""timit: user-supplied TIMIT frame features, DIR/{train,test}_{features,labels}.npy (or one .npz
with x_train, y_train, x_test, y_test), 360-dim features and integer labels. Not downloadable
(LDC licence): data.path is required.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from remedies.config import DataConfig
from remedies.data.registry import _CORRUPT, Arrays, _why, register_dataset
from remedies.data.sets.npz import NPZ_KEYS, read_npz
from remedies.errors import ConfigError


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
            raise ConfigError(
                "data.path",
                f"TIMIT features must be (N, 360), got {arrays[i].shape} in {NPZ_KEYS[i]}",
            )
    return arrays  # type: ignore[return-value]


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except _CORRUPT as e:  # truncated: "cannot reshape array…"/EOF; pickled: refused
        raise ConfigError("data.path", f"cannot read {path} as .npy ({_why(e)})") from None


register_dataset("timit", read_timit, needs_path=True)
