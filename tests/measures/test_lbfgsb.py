import numpy as np
import pytest

from remedies.measures.lbfgsb import minimize_box


@pytest.mark.parametrize("maxiter", [1, 4, 10])
def test_fast_driver_matches_scipy_minimize_iterate_for_iterate(maxiter):
    # a non-convex quadratic on a box with some infinite bounds: the same compiled solver must
    # reach the same point through our driver as through scipy.optimize.minimize
    rng = np.random.default_rng(0)
    n = 30
    q = rng.normal(size=(n, n))
    H = q @ q.T / n - 0.5 * np.eye(n)
    c = rng.normal(size=n)

    def f(x):
        return 0.5 * x @ H @ x + c @ x, H @ x + c

    lb = -rng.uniform(0.5, 2, n)
    ub = rng.uniform(0.5, 2, n)
    lb[:3], ub[3:6] = -np.inf, np.inf
    x0 = rng.uniform(-0.1, 0.1, n)
    fast = minimize_box(f, x0, lb, ub, maxiter=maxiter, fast=True)
    slow = minimize_box(f, x0, lb, ub, maxiter=maxiter, fast=False)
    assert fast.nit == slow.nit == maxiter
    assert fast.nfev == slow.nfev
    np.testing.assert_allclose(fast.x, slow.x, rtol=1e-12, atol=1e-14)
    assert np.all(fast.x >= lb) and np.all(fast.x <= ub)
    assert fast.fun < f(x0)[0]  # it minimised
