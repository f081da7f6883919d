"""Fixtures shared across the test tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_workers():
    """A local Ray for data-parallel runs (Ray Train workers), or the one already running (the
    service tests' session Ray): reused, so a test session starts Ray as rarely as possible."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    # workers import `tests.factories` by path; the controller polls reports every 0.2 s, not 2
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
    )
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)  # fmt: skip
    yield ray
    ray.shutdown()
