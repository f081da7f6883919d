"""Studies and runs that outlive the machine they were kept on.

On a `ray up` cluster the Optuna study (`studies.db`) and the MLflow backend (`mlflow.db`) live
on the head's disk, which `ray down` deletes (artifacts are already in the bucket). `backup`
takes a consistent snapshot of each SQLite file — SQLite's online backup, so a search or an
MLflow server may keep writing meanwhile — and puts the set under `DEST/<UTC time>/`;
`restore` brings the newest set back before the next head starts its MLflow server.
DEST is a folder or any URI pyarrow reads (`s3://bucket/backups`), like `--results-dir`.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import pyarrow.fs as pafs

from remedies.errors import ConfigError
from remedies.io import atomic_target
from remedies.stores.optuna_storage import sqlite_file
from remedies.stores.results_dir import Results


def _snapshot(src: Path, dst: Path) -> None:
    ro = f"file:{quote(str(src))}?mode=ro"
    with (
        closing(sqlite3.connect(ro, uri=True, timeout=30)) as a,
        closing(sqlite3.connect(dst)) as b,
    ):
        a.backup(b)


def backup(files: dict[str, str], dest: str, stamp: str | None = None) -> Results:
    """Snapshot each `{flag: SQLite file or sqlite:/// URL}` into DEST/<stamp>/<its file name>;
    returns that folder. Every source is checked before anything is written."""
    sources: dict[str, Path] = {}
    for flag, given in files.items():
        path = sqlite_file(given)
        if path is None:
            why = "a database server keeps its data off this machine: use its own backups"
            raise ConfigError(flag, f"{given} is not a SQLite file ({why})")
        if not path.is_file():
            raise ConfigError(flag, f"{path} does not exist")
        if path.name in sources:
            raise ConfigError(flag, f"two files named {path.name}")
        sources[path.name] = path
    root = Results.parse(dest)
    root.check("--to")
    target = root.child(stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    with tempfile.TemporaryDirectory() as d:
        for name, path in sources.items():
            snap = Path(d) / name
            _snapshot(path, snap)
            target.write_bytes(name, snap.read_bytes())
        target.write_bytes("COMPLETE", b"")  # a set interrupted mid-upload is never restored
    return target


def latest(source: str) -> Results | None:
    """The newest complete snapshot under SOURCE, or None when there is none."""

    root = Results.parse(source)
    root.check("--from")
    fs, base = root.filesystem()
    listed = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    sets = sorted(f.base_name for f in listed if f.type == pafs.FileType.Directory)
    for stamp in reversed(sets):
        if root.child(stamp).read_bytes("COMPLETE") is not None:
            return root.child(stamp)
    return None


def restore(source: str, to: Path, force: bool = False) -> list[Path]:
    """Copy the newest snapshot's files into TO; refuses to overwrite unless `force`."""

    snap = latest(source)
    if snap is None:
        return []
    fs, base = snap.filesystem()
    names = [
        f.base_name
        for f in fs.get_file_info(pafs.FileSelector(base))
        if f.type == pafs.FileType.File and f.base_name != "COMPLETE"
    ]
    clash = [n for n in names if (to / n).exists()]
    if clash and not force:
        raise ConfigError("--to", f"{to / clash[0]} exists; pass --force to replace it")

    out = []
    for n in sorted(names):
        with atomic_target(to / n) as tmp:
            tmp.write_bytes(snap.read_bytes(n) or b"")
        out.append(to / n)
    return out
