"""SciPy's L-BFGS-B, driven without the O(n) Python loops of `scipy.optimize.minimize`.

Why: for a million-parameter box, `minimize(method="L-BFGS-B")` spends ≈4 s per call in
pure-Python bound conversion (`old_bound_to_new` and a per-variable loop building `nbd`) before
the solver starts — more than a third of a whole Keskar measurement on F1. This drives the very
same compiled routine (`scipy.optimize._lbfgsb.setulb`) with the bound arrays built vectorised,
following SciPy's own driver loop step for step. If SciPy's private interface ever changes, it
falls back to `minimize`, which gives the same iterates (a test checks they agree).

SciPy's OpenBLAS is held to one thread while the solver runs: its idle worker threads spin after
every vector operation on the million-long arrays and steal the cores the next PyTorch pass
needs (measured on 2 cores: each loss+gradient pass ≈ 15 % slower without the limit).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.optimize import Bounds, minimize
from threadpoolctl import ThreadpoolController

FunGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass
class LbfgsbResult:
    x: np.ndarray
    fun: float
    nit: int
    nfev: int
    solver_time_s: float  # time inside SciPy, i.e. not in `fun`: the solver's own overhead


def minimize_box(
    fun: FunGrad,
    x0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    *,
    maxiter: int,
    maxcor: int = 10,
    maxls: int = 20,
    fast: bool = True,
) -> LbfgsbResult:
    """Minimise fun over lb ≤ x ≤ ub for exactly `maxiter` iterations (no tolerance stop)."""
    with _one_blas_thread_outside_torch():
        return _minimize_box(fun, x0, lb, ub, maxiter, maxcor, maxls, fast)


@contextmanager
def _one_blas_thread_outside_torch() -> Iterator[None]:
    """Limit the OpenBLAS pools of NumPy/SciPy, never a BLAS that PyTorch itself loaded."""
    with _numpy_openblas().limit(limits=1):
        yield


@cache
def _numpy_openblas() -> ThreadpoolController:
    """The OpenBLAS pools outside PyTorch, found once per process: listing the loaded libraries
    costs ≈ 2 ms, a share of a cheap Keskar reading (a few small solves)."""
    ctl = ThreadpoolController()
    paths = [
        c.filepath
        for c in ctl.lib_controllers
        if c.internal_api == "openblas" and "torch" not in c.filepath
    ]
    return ctl.select(filepath=paths)


def _minimize_box(fun, x0, lb, ub, maxiter, maxcor, maxls, fast) -> LbfgsbResult:
    if fast:
        try:
            return _drive_setulb(fun, x0, lb, ub, maxiter, maxcor, maxls)
        except (ImportError, TypeError, AttributeError):
            pass  # SciPy's private driver interface changed: use the public one
    fun_time = [0.0]

    def timed(x: np.ndarray) -> tuple[float, np.ndarray]:
        t = time.perf_counter()
        out = fun(x)
        fun_time[0] += time.perf_counter() - t
        return out

    t0 = time.perf_counter()
    res = minimize(
        timed,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=Bounds(lb, ub),
        options={"maxiter": maxiter, "maxcor": maxcor, "maxls": maxls, "gtol": 0.0, "ftol": 0.0},
    )
    solver = time.perf_counter() - t0 - fun_time[0]
    return LbfgsbResult(res.x, float(res.fun), int(res.nit), int(res.nfev), solver)


def _drive_setulb(fun, x0, lb, ub, maxiter, m, maxls) -> LbfgsbResult:
    from scipy.optimize import _lbfgsb  # SciPy ≥ 1.15 (C port) signature

    n = x0.size
    low = np.asarray(lb, dtype=np.float64).copy()
    up = np.asarray(ub, dtype=np.float64).copy()
    nbd = np.where(np.isfinite(low), 1, 0) + np.where(np.isfinite(up), 2, 0)
    nbd = np.select([nbd == 3, nbd == 1, nbd == 2], [2, 1, 3], 0).astype(np.int32)
    low[~np.isfinite(low)] = 0.0
    up[~np.isfinite(up)] = 0.0
    x = np.clip(np.asarray(x0, dtype=np.float64), lb, ub).copy()
    f = np.array(0.0, dtype=np.float64)
    g = np.zeros(n, dtype=np.float64)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m, np.float64)
    iwa = np.zeros(3 * n, dtype=np.int32)
    task = np.zeros(2, dtype=np.int32)
    ln_task = np.zeros(2, dtype=np.int32)
    lsave = np.zeros(4, dtype=np.int32)
    isave = np.zeros(44, dtype=np.int32)
    dsave = np.zeros(29, dtype=np.float64)
    nit = nfev = 0
    solver = 0.0
    while True:
        # factr = pgtol = 0: never stop on tolerance, only on the iteration count
        t = time.perf_counter()
        _lbfgsb.setulb(
            m, x, low, up, nbd, f, g, 0.0, 0.0, wa, iwa, task, lsave, isave, dsave, maxls, ln_task
        )
        solver += time.perf_counter() - t
        if task[0] == 3:  # wants f and g at x
            fv, gv = fun(x)
            f = np.array(fv, dtype=np.float64)
            g = np.asarray(gv, dtype=np.float64)
            nfev += 1
        elif task[0] == 1:  # a new iterate
            nit += 1
            if nit >= maxiter:
                break
        else:  # converged, abnormal line search, or error: stop as SciPy does
            break
    return LbfgsbResult(x=x, fun=float(f), nit=nit, nfev=nfev, solver_time_s=solver)
