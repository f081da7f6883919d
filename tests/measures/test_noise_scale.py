"""Gradient noise scale against closed-form per-sample gradients of softmax regression."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from remedies.config import parse_config
from remedies.errors import ConfigError
from remedies.measures.config import MeasureConfig
from remedies.measures.noise_scale import gradient_noise_scale
from remedies.measures.objective import ModelObjective
from remedies.measures.runner import run_measures


def softmax_regression(n: int = 90, d: int = 5, c: int = 3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    torch.manual_seed(0)
    return nn.Linear(d, c), x, y


def closed_form_b_simple(model: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    """gᵢ = [(pᵢ − e_yᵢ) xᵢᵀ, pᵢ − e_yᵢ] for softmax regression; B = tr Σ / ‖G‖² over the set."""
    w, b = model.weight.detach().double(), model.bias.detach().double()
    xd = x.double()
    r = torch.softmax(xd @ w.T + b, dim=1) - torch.nn.functional.one_hot(y, w.shape[0]).double()
    g = torch.cat([(r[:, :, None] * xd[:, None, :]).reshape(len(y), -1), r], dim=1)
    mean = g.mean(0)
    tr = (g * g).sum(1).mean() - mean @ mean
    return float(tr / (mean @ mean))


@pytest.mark.parametrize("max_floats", [1 << 22, 40])  # one vmap chunk, and many small ones
def test_noise_scale_matches_closed_form(max_floats):
    model, x, y = softmax_regression()
    obj = ModelObjective(model, x, y)
    r = gradient_noise_scale(obj, max_floats=max_floats)
    assert r.b_simple == pytest.approx(closed_form_b_simple(model, x, y), rel=1e-5)
    assert r.chunk == (90 if max_floats > 1000 else 40 // 18)
    # ‖G‖² is the squared norm of the ordinary full-batch gradient
    _, g = obj.loss_grad(obj.w0)
    assert r.grad_norm_sq == pytest.approx(float(g.double() @ g.double()), rel=1e-5)


def test_noise_scale_through_run_measures_with_running_bn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    _, x, y = softmax_regression()
    model.train()
    model(x)  # running statistics that differ from the initial ones
    values, details = run_measures(model, x, y, MeasureConfig(), names=["noise_scale"])
    assert set(values) == {"noise_scale"} and values["noise_scale"] > 0
    rec = details[0]
    assert rec["bn_mode"] == "running" and rec["trace_sigma"] > 0 and rec["n_samples"] == 90


def test_noise_scale_refuses_batch_statistics_bn():
    model = nn.Sequential(
        nn.Linear(5, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.ReLU(), nn.Linear(8, 3)
    )
    _, x, y = softmax_regression()
    with pytest.raises(ConfigError, match="noise_scale"):
        run_measures(model, x, y, MeasureConfig(), names=["noise_scale", "keskar"])
    with pytest.raises(ConfigError, match=r"measure\.noise_scale\.enabled"):
        parse_config({"model": {"bn": "batch"}, "measure": {"noise_scale": {"enabled": True}}})
    parse_config({"measure": {"noise_scale": {"enabled": True}}})  # running BN (default): fine
