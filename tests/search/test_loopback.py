"""A real `remedies search`, started as a user starts it — in a subprocess whose environment has
none of this test suite's settings (conftest sets the Ray loopback switch for the session's own
Ray, which once hid a search that listened on every interface) — listens on loopback only: every
listening socket of the driver and of every process it started (GCS, raylets, agents, workers)
is on 127.0.0.1 / ::1, sampled while the references and trials run."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

SPACE = {
    "name": "loopback",
    "base": {
        "data": {"name": "mnist1d", "num_samples": 600},
        "model": {"width": 0.1},
        "train": {"epochs": 4, "batch_size": 64, "checkpoint": False},
        "measure": {"keskar": {"enabled": False}},
    },
    "params": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "objectives": [{"name": "val_accuracy", "mode": "max"}],
    "baselines": {"sb_batch": 32, "lr_factors": [1.0], "lb": False},
    "asha": {"enabled": False},
    "num_samples": 2,
    "max_concurrent": 1,
    "resources": {"cpu": 1, "gpu": 0},
}


def listening(root: psutil.Process) -> dict[tuple[str, int], str]:
    """(address, port) → process name of every listening TCP socket in root's process tree."""
    out = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            for c in p.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN:
                    out[(c.laddr.ip, c.laddr.port)] = p.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or 127.x written as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    a = ipaddress.ip_address(ip)
    mapped = getattr(a, "ipv4_mapped", None)
    return (mapped or a).is_loopback


@pytest.mark.slow
def test_a_real_search_listens_on_loopback_only(tmp_path: Path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "REMEDIES_"))}
    exe = shutil.which("remedies") or str(Path(sys.executable).with_name("remedies"))
    args = [
        exe,
        "search",
        "space.yaml",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'm.db'}",
        "--storage",
        str(tmp_path / "s.db"),
        "--results-dir",
        str(tmp_path / "ray"),
        "--quiet",
    ]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: dict[tuple[str, int], str] = {}
    root = psutil.Process(proc.pid)
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < 300:
        try:
            seen.update(listening(root))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.5)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    names = set(seen.values())
    assert any("raylet" in n for n in names) and any("gcs" in n for n in names), seen
    off = {a: n for a, n in seen.items() if not loopback(a[0])}
    assert not off, f"{len(off)} of {len(seen)} listening sockets off loopback: {off}"
