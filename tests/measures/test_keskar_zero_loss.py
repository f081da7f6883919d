"""Keskar sharpness at a minimum whose loss float32 cannot resolve, against an exact box maximum.

A softmax-regression "net" (Linear 3 → 2, no bias) set by hand: feature 0 separates the classes
with margin 2·c·a = 20 (per-sample loss ≈ 2e-9, below float32's ≈ 6e-8 resolution of
log(1 + t), so float32 reads f = 0), and feature 1 is ±L by class with weight 0, so the box
|ΔW| ≤ ε(|W| + 1) lets a perturbation of 1e-3 on it swing each margin by 2e-3·L = 30 and
flip every prediction. Cross-entropy is convex in W, so the box maximum sits at one of the
2⁶ vertices: enumerated exactly in float64. At the minimum ∇f ≈ 3e-5 in the decisive
coordinates against a box 1e-3 wide — the regime in which the maximiser used to stall.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from remedies.measures.config import MeasureConfig
from remedies.measures.keskar import keskar_sharpness
from remedies.measures.objective import ModelObjective
from remedies.measures.runner import run_measures

EPS, C, A, L = 1e-3, 2.0, 5.0, 1.5e4


def zero_loss_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    n = 8
    y = torch.tensor([0, 1] * (n // 2))
    s = 1.0 - 2.0 * y.double()  # +1 for class 0, −1 for class 1
    noise = torch.linspace(-1, 1, n, dtype=torch.float64)
    x = torch.stack([A * s, L * s, noise], dim=1).float()
    net = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[C, 0.0, 0.0], [-C, 0.0, 0.0]]))
    return net, x, y


def exact_box_max(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
) -> tuple[float, float]:
    """(f0, max over the 64 vertices of f(W + ΔW)), in float64."""
    w = net.weight.detach().double()
    b = eps * (w.abs() + 1)
    xd = x.double()
    f0 = float(F.cross_entropy(xd @ w.T, y))
    best = f0
    for signs in itertools.product([-1.0, 1.0], repeat=w.numel()):
        d = torch.tensor(signs, dtype=torch.float64).view_as(w) * b
        best = max(best, float(F.cross_entropy(xd @ (w + d).T, y)))
    return f0, best


def metric(f0: float, fmax: float) -> float:
    return (fmax - f0) / (1 + f0) * 100


def test_the_setup_is_below_float32_resolution_and_the_box_maximum_is_large() -> None:
    net, x, y = zero_loss_net()
    f0, fmax = exact_box_max(net, x, y, EPS)
    assert 1e-10 < f0 < 1e-8  # e^-20 per sample
    with torch.no_grad():
        assert float(F.cross_entropy(net(x), y)) == 0.0  # float32 cannot see it
    assert metric(f0, fmax) > 500  # the box holds margin flips: very sharp


@pytest.mark.parametrize("eps", [1e-3, 5e-4])
def test_solver_reaches_the_exact_box_maximum_at_near_zero_loss(eps: float) -> None:
    net, x, y = zero_loss_net()
    f0, fmax = exact_box_max(net, x, y, eps)
    values, details = run_measures(net, x, y, MeasureConfig(keskar={"eps": [eps]}))
    (d,) = details
    assert d["dtype"] == "float64"  # auto precision switched: float32 gets f wrong
    assert d["value"] == pytest.approx(metric(f0, fmax), rel=1e-9)
    assert d["suspect"] is False and d["suspect_why"] == []
    assert d["at_bound"] == 1.0 and d["kkt_residual"] <= 1e-3


def test_both_starts_reach_the_maximum_and_report_how_far_they_moved() -> None:
    net, x, y = zero_loss_net()
    obj = ModelObjective(net, x, y).with_dtype(torch.float64)
    f0, fmax = exact_box_max(net, x, y, EPS)
    for init in ("random", "vertex"):
        r = keskar_sharpness(obj, EPS, init=init)
        assert r.value == pytest.approx(metric(f0, fmax), rel=1e-9), init
        assert r.at_bound == 1.0 and r.kkt_residual <= 1e-3
    r = keskar_sharpness(obj, EPS, init="random", start=0.1)
    assert 0.4 < r.moved <= 0.55  # from |z| ≤ 0.1 to a vertex: about half the box width


def test_float32_forced_is_flagged_suspect() -> None:
    net, x, y = zero_loss_net()
    _, details = run_measures(net, x, y, MeasureConfig(keskar={"eps": [EPS]}, precision="float32"))
    (d,) = details
    assert d["dtype"] == "float32" and d["suspect"] is True
    assert any("below float32 resolution" in why for why in d["suspect_why"])


def test_restarts_never_lower_the_value_and_are_counted() -> None:
    net, x, y = zero_loss_net()
    obj = ModelObjective(net, x, y).with_dtype(torch.float64)
    one = keskar_sharpness(obj, EPS)
    more = keskar_sharpness(obj, EPS, restarts=3, seed=1)
    assert more.starts == 4 and more.value >= one.value * (1 - 1e-12)
    assert more.nfev > one.nfev
