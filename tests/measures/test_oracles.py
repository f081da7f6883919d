"""Every analytic oracle of measures.md on L(w) = ½(w−w*)ᵀH(w−w*) at w = w*, in float64."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from remedies.measures.adaptive import average_sharpness, worst_case_sharpness
from remedies.measures.hutchinson import hutchinson_trace
from remedies.measures.keskar import keskar_sharpness, random_subspace
from remedies.measures.lanczos import lanczos_top

D = torch.float64


class Quadratic:
    """The Objective protocol for ½(w−w*)ᵀH(w−w*) + c, evaluated at w0 = w*."""

    def __init__(self, h: torch.Tensor, w_star: torch.Tensor, c: float = 0.0) -> None:
        self.h, self.w0, self.c = h.to(D), w_star.to(D), c
        self.n_evals = 0

    def loss(self, w: torch.Tensor) -> float:
        self.n_evals += 1
        d = w - self.w0
        return float(0.5 * d @ self.h @ d) + self.c

    def loss_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        d = w - self.w0
        return self.loss(w), self.h @ d

    def hvp_at(self, w: torch.Tensor):
        return lambda v: self.h @ v.to(D)


def random_psd(n: int, seed: int, spectrum: torch.Tensor | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=D))
    lam = spectrum if spectrum is not None else torch.rand(n, generator=g, dtype=D)
    return q @ torch.diag(lam.to(D)) @ q.T


def w_star(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=D)


# -- 1. Lanczos → λ_max(H) --------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
def test_lanczos_top_k_matches_eigh(k: int) -> None:
    n = 200
    spectrum = torch.cat([torch.tensor([10.0, 7.0, 5.0]), torch.rand(n - 3) * 2 - 1])
    h = random_psd(n, 0, spectrum)
    r = lanczos_top(lambda v: h @ v, n, k=k, tol=1e-10, max_iter=n)
    exact = torch.linalg.eigvalsh(h).flip(0)[:k]
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, exact.numpy(), rtol=1e-8)
    for lam, vec in zip(r.eigenvalues, r.eigenvectors, strict=True):  # true eigenvectors
        torch.testing.assert_close(h @ vec, lam * vec, atol=1e-4, rtol=0)


def test_lanczos_returns_largest_algebraic_not_magnitude() -> None:
    # power iteration would return −20 here (largest magnitude); λ_max is 3
    h = torch.diag(torch.tensor([-20.0, 3.0, 1.0, 0.5], dtype=D))
    r = lanczos_top(lambda v: h @ v, 4, tol=1e-12)
    assert r.eigenvalues[0] == pytest.approx(3.0, rel=1e-10)


def test_lanczos_stops_on_the_eigenvalue_bound_and_the_bound_holds() -> None:
    n = 500
    spectrum = torch.cat([torch.tensor([50.0]), torch.rand(n - 1) * 10])
    h = random_psd(n, 3, spectrum)
    r = lanczos_top(lambda v: h @ v, n, tol=1e-3)
    assert r.converged and r.n_products < 15  # far fewer than a residual-based stop needs
    assert abs(r.eigenvalues[0] - 50.0) <= max(r.error_bounds[0], 1e-12) + 1e-9
    assert abs(r.eigenvalues[0] - 50.0) / 50.0 <= 1e-3


# -- 2. Hutchinson ------------------------------------------------------------------------------
def test_hutchinson_single_probe_exact_on_diagonal() -> None:
    h = torch.diag(torch.linspace(-1.0, 5.0, 50, dtype=D))
    r = hutchinson_trace(lambda v: h @ v, 50, probes=2, seed=4, dtype=D)
    assert r.trace == pytest.approx(float(torch.trace(h)), rel=1e-12)
    assert r.std_error == pytest.approx(0.0, abs=1e-12)


def test_hutchinson_unbiased_within_standard_error_on_dense() -> None:
    h = random_psd(30, 5)
    r = hutchinson_trace(lambda v: h @ v, 30, probes=4000, seed=0, dtype=D)
    assert abs(r.trace - float(torch.trace(h))) < 4 * r.std_error
    assert 0 < r.std_error < 0.05 * float(torch.trace(h))


# -- 3. Keskar box, A = I -------------------------------------------------------------------------
def _box(x: torch.Tensor, eps: float) -> torch.Tensor:
    return eps * (x.abs() + 1)


@pytest.mark.parametrize("eps", [1e-3, 5e-4])
def test_keskar_diagonal_psd(eps: float) -> None:
    n = 40
    hd = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=D) * 100
    x = w_star(n)
    r = keskar_sharpness(Quadratic(torch.diag(hd), x), eps)
    b = _box(x, eps)
    expected = 0.5 * float((hd * b**2).sum()) / (1 + 0) * 100
    assert r.value == pytest.approx(expected, rel=1e-9)
    assert r.nfev >= 2 and r.nit <= 10


def test_keskar_rank_one() -> None:
    n, eps = 30, 1e-3
    u = w_star(n, seed=7) * 3
    x = w_star(n)
    r = keskar_sharpness(Quadratic(torch.outer(u, u), x), eps)
    expected = 0.5 * float((u.abs() * _box(x, eps)).sum()) ** 2 * 100
    assert r.value == pytest.approx(expected, rel=1e-9)


def test_keskar_general_psd_vertex_enumeration() -> None:
    """The box max of a convex quadratic sits at a vertex (enumerated, 2¹⁰ of them). L-BFGS-B is
    a local method: it must end at a vertex that is a local (KKT) maximum and never above the
    global one; with a dominant eigenvalue, as in trained networks, it gets within 1 % of it."""
    n, eps = 10, 1e-3
    x = w_star(n)
    b = _box(x, eps)
    vertices = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=n)), dtype=D) * b
    for seed in range(4):
        spectrum = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=D) * 50
        if seed >= 2:
            spectrum[0] = 500.0  # dominant direction
        h = random_psd(n, seed, spectrum)
        best = float((0.5 * ((vertices @ h) * vertices).sum(1)).max()) * 100
        r = keskar_sharpness(Quadratic(h, x), eps, iters=50, seed=seed)
        y = torch.from_numpy(r.y)
        assert r.value <= best * (1 + 1e-9)  # a feasible point can't beat the global max
        np.testing.assert_allclose(np.abs(r.y), b.numpy(), rtol=1e-9)  # at a vertex
        assert bool(((h @ y) * y >= 0).all())  # KKT: the gradient points out of the box
        assert r.value == pytest.approx(float(0.5 * y @ h @ y) * 100, rel=1e-12)
        if seed >= 2:
            assert r.value >= 0.99 * best


def test_keskar_normalises_by_one_plus_f0() -> None:
    n, eps, c = 20, 1e-3, 1.5
    hd = torch.ones(n, dtype=D)
    x = w_star(n)
    r = keskar_sharpness(Quadratic(torch.diag(hd), x, c=c), eps)
    assert r.value == pytest.approx(0.5 * float((_box(x, eps) ** 2).sum()) / (1 + c) * 100)


def test_keskar_start_inside_box_avoids_stall_at_minimum() -> None:
    # with y0 = 0 at the minimum the gradient is exactly 0: a naive solver returns 0
    h = torch.diag(torch.full((10,), 4.0, dtype=D))
    r = keskar_sharpness(Quadratic(h, w_star(10)), 1e-3, start=1e-6)
    assert r.value > 0


def test_keskar_random_subspace_oracle() -> None:
    """Subspace: max over |z_i| ≤ b_i of ½ zᵀ(AᵀHA)z; with H = uuᵀ that is ½(Σ|(Aᵀu)_i| b_i)²."""
    n, p, eps = 300, 20, 1e-3
    pinv, gram_inv = random_subspace(n, p, seed=3, dtype=D, device="cpu")
    a = pinv.T @ gram_inv
    torch.testing.assert_close(a, torch.linalg.pinv(pinv))  # A = pinv(A⁺) without n×n
    torch.testing.assert_close(pinv.norm(dim=1), torch.ones(p, dtype=D))
    assert float(pinv.abs().max()) <= 1.0
    u, x = w_star(n, 9), w_star(n)
    r = keskar_sharpness(Quadratic(torch.outer(u, u), x), eps, subspace_dim=p, seed=3)
    b = eps * ((pinv @ x).abs() + 1)
    expected = 0.5 * float(((a.T @ u).abs() * b).sum()) ** 2 * 100
    assert r.value == pytest.approx(expected, rel=1e-9)


class Affine(Quadratic):
    """f(w) = c + gᵀ(w − x) + ½(w − x)ᵀH(w − x) at w0 = x: a point with a gradient left."""

    def __init__(self, h: torch.Tensor, x: torch.Tensor, g: torch.Tensor) -> None:
        super().__init__(h, x)
        self.g = g.to(D)

    def loss(self, w: torch.Tensor) -> float:
        return super().loss(w) + float(self.g @ (w - self.w0))

    def loss_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        return self.loss(w), self.h @ (w - self.w0) + self.g


@pytest.mark.parametrize("p", [None, 15])
def test_keskar_first_order_and_reach_on_a_linear_function(p: int | None) -> None:
    """H = 0: the box maximum *is* the linear model's, Σ bᵢ|(Aᵀg)ᵢ|, at y* = b ⊙ sign(Aᵀg), so
    `first_order` equals the value and `reach` equals ‖A y*‖ — both computed here from A."""
    n, eps = 200, 1e-3
    x, g = w_star(n), w_star(n, seed=5) * 1e-2
    obj = Affine(torch.zeros(n, n, dtype=D), x, g)
    r = keskar_sharpness(obj, eps, subspace_dim=p, seed=2, init="vertex")
    if p is None:
        a, b = torch.eye(n, dtype=D), _box(x, eps)
    else:
        pinv, gram_inv = random_subspace(n, p, seed=2, dtype=D, device="cpu")
        a, b = torch.linalg.pinv(pinv), eps * ((pinv @ x).abs() + 1)
    atg = a.T @ g
    expected = float((b * atg.abs()).sum()) * 100
    assert r.value == pytest.approx(expected, rel=1e-9)
    assert r.first_order == pytest.approx(expected, rel=1e-12)
    assert r.reach == pytest.approx(float((a @ (b * atg.sign())).norm()), rel=1e-9)
    # from a random start the solver gets within 0.1 % of it; first_order does not depend on it
    rand = keskar_sharpness(obj, eps, subspace_dim=p, seed=2)
    assert rand.first_order == r.first_order and rand.value == pytest.approx(expected, rel=1e-3)


def test_keskar_first_order_is_zero_at_a_minimum_and_reach_is_the_vertex() -> None:
    """At a minimum of a diagonal quadratic the linear model is flat (first_order 0) while the
    value is all curvature; the maximiser is a vertex, so reach = ‖b‖."""
    n, eps = 40, 1e-3
    hd = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=D) * 100 + 1
    x = w_star(n)
    r = keskar_sharpness(Quadratic(torch.diag(hd), x), eps)
    assert r.first_order == 0.0 and r.value > 0
    assert r.reach == pytest.approx(float(_box(x, eps).norm()), rel=1e-9)


# -- 4./5. Worst-case and average-case balls -----------------------------------------------------
def test_worst_case_l2_is_half_rho2_lambda_max() -> None:
    n, rho = 50, 0.3
    spectrum = torch.cat([torch.tensor([9.0]), torch.rand(n - 1) * 3 - 1])
    h = random_psd(n, 2, spectrum)
    r = worst_case_sharpness(Quadratic(h, w_star(n)), rho, "l2", steps=20)
    assert r.value == pytest.approx(0.5 * rho**2 * 9.0, rel=1e-6)


def test_worst_case_l2_negative_definite_gives_zero() -> None:  # λ_max⁺ = max(λ_max, 0)
    h = -torch.eye(5, dtype=D)
    r = worst_case_sharpness(Quadratic(h, w_star(5)), 0.1, "l2")
    assert r.value == 0.0


def test_worst_case_reports_the_evaluations_it_made() -> None:
    # zero curvature: the gradient vanishes at the first step and the ascent stops there, so
    # f0 + one loss_grad + the end point = 3 evaluations, not steps + 2
    for h, expected in ((torch.zeros(4, 4, dtype=D), 3), (torch.eye(4, dtype=D), 7)):
        obj = Quadratic(h, w_star(4))
        r = worst_case_sharpness(obj, 0.1, "l2", steps=5)
        assert r.n_evals == obj.n_evals == expected


def test_adaptive_l2_is_half_rho2_lambda_max_dhd() -> None:
    n, rho = 40, 0.2
    h = random_psd(n, 4, torch.cat([torch.tensor([20.0]), torch.rand(n - 1)]))
    x = w_star(n)
    dhd = torch.diag(x.abs()) @ h @ torch.diag(x.abs())
    lam = float(torch.linalg.eigvalsh(dhd)[-1])
    r = worst_case_sharpness(Quadratic(h, x), rho, "l2", scale=x.abs(), steps=20)
    assert r.value == pytest.approx(0.5 * rho**2 * lam, rel=1e-5)


def test_worst_case_linf_diagonal_and_rank_one() -> None:
    n, rho = 25, 0.1
    x = w_star(n)
    hd = torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=D)
    r = worst_case_sharpness(Quadratic(torch.diag(hd), x), rho, "linf")
    assert r.value == pytest.approx(0.5 * rho**2 * float(hd.sum()), rel=1e-12)
    u = w_star(n, 5)
    r = worst_case_sharpness(Quadratic(torch.outer(u, u), x), rho, "linf")
    assert r.value == pytest.approx(0.5 * rho**2 * float(u.abs().sum()) ** 2, rel=1e-12)


@pytest.mark.parametrize(("dist", "factor"), [("gaussian", 1.0), ("uniform", 1 / 3)])
def test_average_case_is_half_sigma2_trace(dist: str, factor: float) -> None:
    n, rho = 20, 0.5
    h = random_psd(n, 6)
    r = average_sharpness(Quadratic(h, w_star(n)), rho, dist, samples=4000, seed=1)  # type: ignore[arg-type]
    expected = 0.5 * rho**2 * factor * float(torch.trace(h))
    assert r.std_error is not None
    assert abs(r.value - expected) < 4 * r.std_error
    assert r.std_error < 0.05 * expected  # the check has teeth: a factor-3 error is ≫ 4 SE


def test_adaptive_invariant_under_rescaling_on_quadratic() -> None:
    """w → Sw, H → S⁻¹HS⁻¹ is the same function in new coordinates: adaptive values are equal,
    λ_max and trace are not."""
    n = 30
    h = random_psd(n, 8, torch.cat([torch.tensor([5.0]), torch.rand(n - 1)]))
    x = w_star(n)
    s = torch.exp(torch.linspace(-1.5, 1.5, n, dtype=D))
    h2 = torch.diag(1 / s) @ h @ torch.diag(1 / s)
    q1, q2 = Quadratic(h, x), Quadratic(h2, s * x)
    for norm in ("l2", "linf"):
        a1 = worst_case_sharpness(q1, 0.1, norm, scale=x.abs(), seed=3)  # type: ignore[arg-type]
        a2 = worst_case_sharpness(q2, 0.1, norm, scale=(s * x).abs(), seed=3)  # type: ignore[arg-type]
        assert a2.value == pytest.approx(a1.value, rel=1e-10)
    m1 = average_sharpness(q1, 0.1, scale=x.abs(), samples=5, seed=2)
    m2 = average_sharpness(q2, 0.1, scale=(s * x).abs(), samples=5, seed=2)
    assert m2.value == pytest.approx(m1.value, rel=1e-10)
    lam1 = lanczos_top(q1.hvp_at(x), n, tol=1e-10, max_iter=n).eigenvalues[0]
    lam2 = lanczos_top(q2.hvp_at(x), n, tol=1e-10, max_iter=n).eigenvalues[0]
    assert not math.isclose(lam1, lam2, rel_tol=0.1)
    assert not math.isclose(float(torch.trace(h)), float(torch.trace(h2)), rel_tol=0.1)
