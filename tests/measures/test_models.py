"""Measures on real torch models: closed-form Hessians, chunking, BN policy, model restoration,
the ReLU-rescaling oracle, run_measures keys/records, config validation and interpolation."""

from __future__ import annotations

import copy
import csv
import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from remedies.errors import ConfigError
from remedies.measures import MeasureConfig, run_measures
from remedies.measures.adaptive import worst_case_sharpness
from remedies.measures.interpolation import interpolate, plot_interpolation, write_csv
from remedies.measures.lanczos import lanczos_top
from remedies.measures.objective import ModelObjective

D = torch.float64


def data(n: int = 64, d: int = 5, c: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=D), torch.randint(0, c, (n,), generator=g)


def dense_hessian(obj: ModelObjective) -> torch.Tensor:
    hvp = obj.hvp_at(obj.w0)
    return torch.stack([hvp(e) for e in torch.eye(obj.w0.numel(), dtype=D)])


# -- 6. closed-form Hessians --------------------------------------------------------------------
def test_mse_hessian_is_two_over_n_xtx() -> None:
    x, _ = data()
    y = torch.randn(64, dtype=D)
    model = nn.Linear(5, 1, bias=False).double()
    obj = ModelObjective(model, x, y, chunk_size=10, loss_fn=lambda o, t: F.mse_loss(o[:, 0], t))
    torch.testing.assert_close(dense_hessian(obj), 2 / 64 * x.T @ x)


def test_logistic_hessian_closed_form() -> None:
    """Two-class CE with logits (0, xᵀw) is logistic regression: H = (1/N) Xᵀ diag(p(1−p)) X."""
    x, _ = data()
    y = torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(1))
    lin = nn.Linear(5, 1, bias=False).double()
    model = nn.Sequential(lin, nn.ConstantPad1d((1, 0), 0.0))  # logits (0, xᵀw)
    obj = ModelObjective(model, x, y, chunk_size=7)
    p = torch.sigmoid(x @ lin.weight.detach()[0])
    h = x.T @ torch.diag(p * (1 - p)) @ x / 64
    torch.testing.assert_close(dense_hessian(obj), h)
    lam = lanczos_top(obj.hvp_at(obj.w0), 5, tol=1e-12).eigenvalues[0]
    assert lam == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-10)


def test_softmax_hessian_closed_form() -> None:
    """H = (1/N) Σ (diag p − ppᵀ) ⊗ x xᵀ for W ∈ R^{C×d} flattened row-major."""
    x, y = data()
    model = nn.Linear(5, 3, bias=False).double()
    obj = ModelObjective(model, x, y, chunk_size=9)
    p = torch.softmax(x @ model.weight.detach().T, dim=1)
    h = (
        sum(
            torch.kron(torch.diag(pi) - torch.outer(pi, pi), torch.outer(xi, xi))
            for pi, xi in zip(p, x, strict=True)
        )
        / 64
    )
    torch.testing.assert_close(dense_hessian(obj), h)
    r = lanczos_top(obj.hvp_at(obj.w0), 15, k=2, tol=1e-12, max_iter=15)
    ev = torch.linalg.eigvalsh(h).flip(0)
    assert r.eigenvalues == pytest.approx(ev[:2].tolist(), rel=1e-9)
    loss, grad = obj.loss_grad(obj.w0)
    assert loss == pytest.approx(float(F.cross_entropy(model(x), y).detach()), rel=1e-12)


# -- chunking and BN policy -----------------------------------------------------------------------
def mlp(bn: str | None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(5, 8)]
    if bn:
        layers.append(nn.BatchNorm1d(8, track_running_stats=(bn == "running")))
    layers += [nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)]
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize("bn", [None, "running"])
def test_chunked_equals_full_batch(bn: str | None) -> None:
    x, y = data(50)
    model = mlp(bn).eval()
    if bn:
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    full = ModelObjective(model, x, y, chunk_size=50)
    chunked = ModelObjective(model, x, y, chunk_size=7)
    assert chunked.chunk == 7
    lf, gf = full.loss_grad(full.w0)
    lc, gc = chunked.loss_grad(chunked.w0)
    assert lc == pytest.approx(lf, rel=1e-12)
    torch.testing.assert_close(gc, gf)
    v = torch.randn(full.w0.numel(), dtype=D)
    torch.testing.assert_close(chunked.hvp_at(chunked.w0)(v), full.hvp_at(full.w0)(v))
    nocache = ModelObjective(model, x, y, chunk_size=7, hvp_cache=False)
    torch.testing.assert_close(nocache.hvp_at(nocache.w0)(v), full.hvp_at(full.w0)(v))


def test_hvp_cache_auto_keeps_the_graphs_only_when_they_fit(monkeypatch) -> None:
    """auto measures the first chunk's saved tensors; the products are the same either way."""
    import remedies.measures.objective as objective

    x, y = data(50)
    model = mlp("none").eval()
    v = torch.randn(ModelObjective(model, x, y).w0.numel(), dtype=D)
    ref = ModelObjective(model, x, y, chunk_size=7, hvp_cache=False)
    fits = ModelObjective(model, x, y, chunk_size=7)
    assert fits.hvp_cache == "auto"
    torch.testing.assert_close(fits.hvp_at(fits.w0)(v), ref.hvp_at(ref.w0)(v))
    assert fits.hvp_cache_used
    monkeypatch.setattr(objective, "HVP_CACHE_SHARE", 0.0)  # nothing fits
    tight = ModelObjective(model, x, y, chunk_size=7)
    torch.testing.assert_close(tight.hvp_at(tight.w0)(v), ref.hvp_at(ref.w0)(v))
    assert not tight.hvp_cache_used


def test_graph_bytes_counts_what_backward_keeps() -> None:
    """y = relu(x @ W), only W requiring grad: autograd keeps x (n×d) for ∂/∂W and the ReLU
    output (n×h) — not W, which no gradient needs here."""
    from remedies.measures.objective import graph_bytes

    n, d, h = 64, 30, 20
    x = torch.randn(n, d, dtype=D)
    w = torch.randn(d, h, dtype=D, requires_grad=True)
    _, nbytes = graph_bytes(lambda: torch.relu(x @ w).sum())
    assert nbytes == 8 * (n * d + n * h)


def test_batch_bn_is_never_split_silently() -> None:
    x, y = data(50)
    model = mlp("batch").eval()
    obj = ModelObjective(model, x, y, chunk_size=7)
    assert obj.bn_kind == "batch" and obj.chunk == 50  # memory chunking ignored: one BN batch
    assert obj.loss(obj.w0) == pytest.approx(float(F.cross_entropy(model(x), y).detach()))
    obj10 = ModelObjective(model, x, y, bn_batch_size=10)
    with torch.no_grad():
        expected = (
            sum(
                float(F.cross_entropy(model(x[i : i + 10]), y[i : i + 10]))
                for i in range(0, 50, 10)
            )
            / 5
        )
    assert obj10.chunk == 10 and obj10.loss(obj10.w0) == pytest.approx(expected, rel=1e-12)
    _, details = run_measures(
        model, x, y, MeasureConfig(bn_batch_size=10, chunk_size=7), names=["keskar_full_eps1e-03"]
    )
    assert details[0]["bn_mode"] == "batch" and details[0]["bn_batch"] == 10


# -- restoration ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bn", ["running", "batch"])
@pytest.mark.parametrize("bn_eval", ["eval", "train"])
def test_model_left_bit_for_bit(bn: str, bn_eval: str) -> None:
    x, y = data(40)
    model = mlp(bn)
    model.train()
    model(x)  # non-trivial running statistics
    model[3].eval()  # a mixed mode pattern must survive too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    cfg = MeasureConfig.model_validate(
        {
            "bn": bn_eval,
            "lambda_max": {"enabled": True},
            "trace": {"enabled": True, "probes": 3},
            "adaptive": {"enabled": True, "steps": 2, "average_samples": 2},
            "keskar": {"subspace_dims": [4], "iters": 2},
        }
    )
    values, _ = run_measures(model, x, y, cfg)
    assert len(values) == 10  # 4 keskar, lambda_max, trace + se, 3 adaptive
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k  # bit-for-bit, buffers included
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())


# -- 7. Dinh et al. rescaling ---------------------------------------------------------------------
def test_relu_rescaling_changes_lambda_max_but_not_adaptive() -> None:
    x, y = data(60)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    alpha = 4.0
    scaled = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    with torch.no_grad():  # (αW₁, αb₁, W₂/α): the same function
        scaled[0].weight.copy_(alpha * net[0].weight)
        scaled[0].bias.copy_(alpha * net[0].bias)
        scaled[2].weight.copy_(net[2].weight / alpha)
        scaled[2].bias.copy_(net[2].bias)
    torch.testing.assert_close(scaled(x), net(x))
    cfg = MeasureConfig.model_validate(
        {
            "keskar": {"enabled": False},
            "lambda_max": {"enabled": True, "tol": 1e-8},
            "adaptive": {
                "enabled": True,
                "l2_rho": [0.05],
                "linf_rho": [0.01],
                "average_rho": [0.05],
            },
        }
    )
    a, _ = run_measures(net, x, y, cfg)
    b, _ = run_measures(scaled, x, y, cfg)
    for key in ("adaptive_l2_rho5e-02", "adaptive_linf_rho1e-02", "adaptive_avg_rho5e-02"):
        assert a[key] > 0 and b[key] == pytest.approx(a[key], rel=1e-8), key
    assert not math.isclose(a["lambda_max"], b["lambda_max"], rel_tol=0.2)
    # plain (unscaled) worst-case sharpness is not invariant either
    pa = worst_case_sharpness(ModelObjective(net.eval(), x, y), 0.05, "l2")
    pb = worst_case_sharpness(ModelObjective(scaled.eval(), x, y), 0.05, "l2")
    assert not math.isclose(pa.value, pb.value, rel_tol=0.2)


# -- run_measures contract ----------------------------------------------------------------------
def test_default_keys_records_and_settings() -> None:
    x, y = data(40)
    model = mlp("running").eval()
    values, details = run_measures(model, x, y, MeasureConfig())
    assert set(values) == {"keskar_full_eps1e-03", "keskar_full_eps5e-04"}
    assert all(v > 0 for v in values.values())
    rec = details[0]
    for field in (
        "measure",
        "key",
        "value",
        "eps",
        "subspace_dim",
        "subspace_seed",
        "n_samples",
        "bn_mode",
        "iters",
        "function_evals",
        "wall_time_s",
    ):
        assert field in rec, field
    assert rec["n_samples"] == 40 and rec["bn_mode"] == "running" and rec["function_evals"] >= 2


def test_names_select_families_and_parse_keys() -> None:
    x, y = data(40)
    model = mlp(None).eval()
    cfg = MeasureConfig(max_samples=30)
    values, details = run_measures(
        model, x, y, cfg, names=["keskar_sub5_eps2e-03", "lambda_max", "hessian_trace"]
    )
    assert set(values) == {
        "keskar_sub5_eps2e-03",
        "lambda_max",
        "hessian_trace",
        "hessian_trace_se",
    }
    assert all(d["n_samples"] == 30 for d in details)
    sub = next(d for d in details if d["key"] == "keskar_sub5_eps2e-03")
    assert sub["subspace_dim"] == 5 and sub["eps"] == 2e-3 and sub["subspace_seed"] == 0
    with pytest.raises(ConfigError, match="lambda_max"):
        run_measures(model, x, y, cfg, names=["lamda_max"])


def test_config_defaults_and_validation() -> None:
    cfg = MeasureConfig()
    assert cfg.keskar.eps == [1e-3, 5e-4] and cfg.keskar.iters == 10 and cfg.keskar.full_space
    assert not cfg.lambda_max.enabled
    for bad in (
        {"keskar": {"eps": [-1e-3]}},
        {"keskar": {"epsilon": [1e-3]}},
        {"bn": "batch"},
        {"trace": {"probes": 1}},
        {"lambda_max": {"k": 0}},
        {"kesker": {}},
    ):
        with pytest.raises(ValidationError):
            MeasureConfig.model_validate(bad)


# -- interpolation ------------------------------------------------------------------------------
def test_interpolation_endpoints_paths_and_outputs(tmp_path) -> None:
    x, y = data(60)
    xt, yt = data(30, seed=1)
    a, b = mlp("running", 0).eval(), mlp("running", 1).eval()
    with torch.no_grad():
        a[1].running_mean.uniform_(-1, 1)
    before = {k: v.clone() for k, v in b.state_dict().items()}
    table = interpolate(a, b, (x, y), (xt, yt))
    assert len(table) == 25 and table[0]["alpha"] == -1.0 and table[-1]["alpha"] == 2.0

    def with_train_stats(m: nn.Module) -> nn.Module:
        # independent re-estimate: BN statistics of the first layer's outputs on the train set
        m = copy.deepcopy(m).eval()
        with torch.no_grad():
            h = m[0](x)
            m[1].running_mean.copy_(h.mean(0))
            m[1].running_var.copy_(h.var(0, unbiased=True))
        return m

    a_, b_ = with_train_stats(a), with_train_stats(b)

    def ce(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():  # a reference value: no gradient graph behind it
            return float(F.cross_entropy(m(x), y))

    row0 = next(r for r in table if r["alpha"] == 0.0)
    assert row0["train_loss"] == pytest.approx(ce(a_, x, y), rel=1e-9)
    assert row0["test_acc"] == pytest.approx(float((a_(xt).argmax(1) == yt).double().mean()))
    # A's own (deliberately off) running mean is NOT what the path uses
    assert row0["train_loss"] != pytest.approx(ce(a, x, y), rel=1e-6)
    curved = interpolate(a, b, (x, y), (xt, yt), alphas=[0.0, 1.0], path="curved")
    assert curved[0]["train_loss"] == pytest.approx(row0["train_loss"], rel=1e-12)
    assert curved[1]["train_loss"] == pytest.approx(ce(b_, x, y), rel=1e-9)
    assert all(torch.equal(b.state_dict()[k], v) for k, v in before.items())
    png = plot_interpolation(table, tmp_path / "fig3.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(write_csv(table, tmp_path / "t.csv").open()))
    assert len(rows) == 25 and float(rows[12]["alpha"]) == pytest.approx(0.5)


def test_keskar_details_carry_their_settings() -> None:
    """A value's record says how it was read: subset size (and what it was drawn from), subset
    seed, solver seed, iterations, start, ε and function evaluations; a different setting is
    visibly different in its record."""
    x, y = data(60)
    model = mlp("running").eval()
    cfg = MeasureConfig.model_validate(
        {
            "keskar": {"eps": [2e-3], "iters": 3, "init": "vertex", "seed": 7},
            "max_samples": 25,
            "subset_seed": 4,
        }
    )
    values, details = run_measures(model, x, y, cfg)
    (rec,) = details
    assert set(values) == {"keskar_full_eps2e-03"} and rec["key"] == "keskar_full_eps2e-03"
    assert rec["n_samples"] == 25 and rec["n_samples_total"] == 60 and rec["max_samples"] == 25
    assert rec["subset_seed"] == 4 and rec["seed"] == 7
    assert rec["iters"] == 3 and rec["eps"] == 2e-3 and rec["init"] == "vertex"
    assert rec["space"] == "full" and rec["solver"] == "L-BFGS-B"
    # a vertex start costs ∇f at x and f at the vertex before the 3 iterations' evaluations
    assert rec["function_evals"] >= 2 + 3 and rec["solver_iters"] == 3
    # the whole set, the default settings: recorded as such
    _, (full, _) = run_measures(model, x, y, MeasureConfig())
    assert full["n_samples"] == full["n_samples_total"] == 60 and full["max_samples"] is None
    assert full["subset_seed"] is None and full["iters"] == 10 and full["init"] == "random"
    assert full["seed"] == 0 and full["eps"] == 1e-3


def test_keskar_zero_iterations_reads_the_vertex_alone() -> None:
    """iters: 0 with the vertex start is the linear model's box maximum evaluated on f: two
    loss+gradient passes, no solver, and not flagged as a stalled solve."""
    x, y = data(60)
    model = mlp("running").eval()
    cfg = MeasureConfig.model_validate({"keskar": {"eps": [1e-3], "iters": 0, "init": "vertex"}})
    values, (rec,) = run_measures(model, x, y, cfg)
    assert values["keskar_full_eps1e-03"] > 0
    assert rec["function_evals"] == 2 and rec["solver_iters"] == 0 and not rec["suspect"]
    with pytest.raises(ValidationError):
        MeasureConfig.model_validate({"keskar": {"iters": -1}})
