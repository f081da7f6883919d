"""npz: a user file with arrays x_train, y_train, x_test, y_test (any sample shape, integer
labels). `read_npz` is also how mnist1d's cache and a TIMIT .npz are read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from remedies.config import DataConfig
from remedies.data.registry import _CORRUPT, Arrays, _why, register_dataset
from remedies.errors import ConfigError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


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
        raise ConfigError(
            field, f"{path} holds a single array, not an .npz archive with {', '.join(NPZ_KEYS)}"
        )
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


def read_npz_set(cfg: DataConfig) -> Arrays:
    return read_npz(cfg.path)  # type: ignore[arg-type]  # data.path is required: validated


register_dataset("npz", read_npz_set, needs_path=True)
