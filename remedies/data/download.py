"""Downloads and cache writes that never leave a partial file behind.

Why atomic: a run killed mid-download (or a full disk) must not leave a truncated archive that the
next run trusts; `atomic_target` replaces the destination only when the block finishes cleanly,
and a download is kept only when its md5 matches the published one.
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from remedies.errors import ConfigError
from remedies.io import atomic_target


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
