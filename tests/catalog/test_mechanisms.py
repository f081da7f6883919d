"""One exact check per remedy of the mechanism it claims (tiny tensors, closed-form answers)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from remedies.catalog import REMEDIES
from remedies.catalog.augment import shift_1d
from remedies.catalog.ghost_bn import GhostBatchNorm1d, GhostBatchNorm2d
from remedies.catalog.lr_scaling import scaled_lr
from tests.catalog._util import batch, make_ctx, tiny_mlp


def build(name: str, **params):
    cls = REMEDIES.get(name)
    return cls(cls.Config.model_validate(params))


# ------------------------------------------------------------------------------------ augment


def test_augment_1d_shift_is_per_sample_integer_shift():
    x = torch.arange(40.0).repeat(64, 1)  # each row 0..39: the shift is readable off the values
    ctx = make_ctx(tiny_mlp(), input_shape=(40,))
    r = build("augment", shift=0.1, scale=0.0, noise=0.0)
    r.setup(ctx)
    torch.manual_seed(0)
    out, _ = r.augment(x, torch.zeros(64), ctx)
    offsets = x[:, 20] - out[:, 20]  # interior column: value moved by exactly the offset
    assert torch.equal(offsets, offsets.round()) and offsets.abs().max() <= 4
    assert len(offsets.unique()) > 3  # per sample, not one shift for the whole batch
    assert torch.equal(out, shift_1d(x, offsets.long()))


def test_augment_1d_scale_and_noise():
    x = torch.randn(256, 40)
    ctx = make_ctx(tiny_mlp(), input_shape=(40,))
    r = build("augment", shift=0.0, scale=0.2, noise=0.0)
    r.setup(ctx)
    out, _ = r.augment(x, torch.zeros(256), ctx)
    ratio = out / x
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4)  # one factor per row
    assert ratio.min() >= 0.8 - 1e-5 and ratio.max() <= 1.2 + 1e-5 and ratio.std() > 0.05
    r = build("augment", shift=0.0, scale=0.0, noise=0.3)
    r.setup(ctx)
    out, _ = r.augment(x, torch.zeros(256), ctx)
    assert (out - x).std().item() == pytest.approx(0.3, rel=0.05)


def test_augment_images_flip_is_per_sample():
    x = torch.rand(64, 1, 8, 8)
    ctx = make_ctx(tiny_mlp(64), input_shape=(1, 8, 8))
    r = build("augment", rotation=0.0, translation=0.0, flip=0.5)
    r.setup(ctx)
    out, _ = r.augment(x, torch.zeros(64), ctx)
    same = (out == x).flatten(1).all(1)
    flipped = torch.isclose(out, x.flip(-1)).flatten(1).all(1)
    assert torch.all(same | flipped) and same.any() and flipped.any()


def test_augment_images_one_affine_warp_within_bounds(monkeypatch):
    import kornia.geometry.transform as KT

    calls = []
    real = KT.warp_affine

    def counting(src, M, *a, **k):
        calls.append(M.shape)
        return real(src, M, *a, **k)

    monkeypatch.setattr(KT, "warp_affine", counting)
    import kornia.augmentation._2d.geometric.affine as affine_mod

    monkeypatch.setattr(affine_mod, "warp_affine", counting, raising=False)
    x = torch.rand(32, 3, 10, 10)
    ctx = make_ctx(tiny_mlp(300), input_shape=(3, 10, 10))
    r = build("augment", rotation=15.0, translation=0.2, flip=0.0)
    r.setup(ctx)
    out, _ = r.augment(x, torch.zeros(32), ctx)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert len(calls) == 1 and calls[0][0] == 32  # one batched warp, one matrix per sample
    m = r.affine.transform_matrix  # (B, 3, 3) of the last call
    angle = torch.rad2deg(torch.atan2(m[:, 1, 0], m[:, 0, 0])).abs()
    assert angle.max() <= 15.0 + 1e-4 and angle.std() > 0  # per-sample angles within θ
    p = r.affine._params
    assert p["translations"].abs().max() <= 0.2 * 10 + 1e-4


def test_augment_off_in_eval_mode():
    x = torch.randn(8, 40)
    ctx = make_ctx(tiny_mlp(), input_shape=(40,))
    r = build("augment")
    r.setup(ctx)
    ctx.model.eval()
    out, _ = r.augment(x, torch.zeros(8), ctx)
    assert out is x


# ------------------------------------------------------------------------------- conservative


class Linear1(nn.Module):
    """f(x) = g·x: a constant gradient makes the proximal iteration closed-form."""

    def __init__(self, x0: torch.Tensor):
        super().__init__()
        self.x = nn.Parameter(x0.clone())


def test_conservative_inner_steps_pull_toward_anchor():
    x0, g, lr, lam = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.5]), 0.1, 0.08
    m = Linear1(x0)
    ctx = make_ctx(m, opt=torch.optim.SGD(m.parameters(), lr=lr))
    r = build("conservative", lam=lam, inner_steps=3)
    calls = []

    def closure():
        calls.append(1)
        return (g * m.x).sum()

    loss = r.step(closure, ctx)
    # SGD on f(x) + λ/2‖x − x0‖²: d_{j+1} = d_j − lr·(g + λ d_j), d = x − x0, d_0 = 0
    d = torch.zeros(2)
    for _ in range(3):
        d = d - lr * (g + lam * d)
    assert len(calls) == 3
    assert torch.allclose(m.x.detach(), x0 + d, atol=1e-7)
    assert loss.item() == pytest.approx((g * x0).sum().item())  # f_B at x_k is what is logged
    # without the pull the third step would have gone further
    assert (m.x.detach() - x0).norm() < (3 * lr * g).norm()


# -------------------------------------------------------------------------------- adversarial


def test_fgsm_perturbation_and_mixed_loss():
    model = tiny_mlp(bn="running")
    x, y = batch(16)
    ctx = make_ctx(model)
    r = build("adversarial", eps=0.05, weight=0.3)
    # the expected perturbation, computed independently
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y).backward()
    expected = x + 0.05 * xr.grad.sign()
    seen = []
    handle = model.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach()))
    stats = model[1].running_mean.clone(), model[1].num_batches_tracked.clone()
    clean = F.cross_entropy(model(x), y)
    out = r.loss(model, x, y, clean, ctx)
    handle.remove()
    assert torch.equal(seen[-1], expected)  # the last forward is the adversarial batch
    assert torch.allclose(seen[-1] - x, 0.05 * xr.grad.sign(), atol=1e-6)
    assert len(seen) == 3  # clean forward, input-gradient probe, adversarial forward
    adv = F.cross_entropy(model(expected), y)
    assert out.item() == pytest.approx((0.7 * clean + 0.3 * adv).item(), rel=1e-6)
    # running stats: clean + adversarial forwards counted, the input-gradient probe is not
    assert model[1].num_batches_tracked.item() == stats[1].item() + 3  # + the check just above


def test_fgsm_probe_gives_no_parameter_gradient():
    model = tiny_mlp()
    x, y = batch(8)
    r = build("adversarial")
    model.zero_grad(set_to_none=True)
    r.loss(model, x, y, F.cross_entropy(model(x), y), make_ctx(model))
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------------- warm_start


def test_warm_start_switch_epoch_fraction_and_epochs():
    ctx = make_ctx(tiny_mlp(), epochs=20, batch_size=800)
    r = build("warm_start", sb_batch=64, fraction=0.25)
    sizes = [r.batch_size(e, 800, ctx) for e in range(20)]
    assert sizes == [64] * 5 + [800] * 15
    r = build("warm_start", sb_batch=128, epochs=3)
    assert [r.batch_size(e, 800, ctx) for e in range(5)] == [128, 128, 128, 800, 800]
    assert r.on_epoch_end(2, ctx) == {"warm_start": 1.0}
    assert r.on_epoch_end(3, ctx) == {"warm_start": 0.0}


def test_warm_start_in_trainer_keeps_optimizer_state():
    from remedies.config import parse_config
    from remedies.engine.trainer import train

    raw = {
        "data": {"name": "mnist1d", "num_samples": 500},
        "model": {"name": "F1", "width": 0.05},
        "train": {"batch_size": 100, "epochs": 4, "checkpoint": False, "device": "cpu"},
        "remedies": {"warm_start": {"epochs": 2, "sb_batch": 32}},
    }
    r = train(parse_config(raw), measure=False, progress=False)
    assert [h["batch_size"] for h in r.history] == [32, 32, 100, 100]
    n = 360  # 500 samples → 400 train → 360 after the 10% validation carve-out
    assert [h["steps"] for h in r.history] == [
        n // 32,
        2 * (n // 32),
        2 * (n // 32) + 3,
        2 * (n // 32) + 6,
    ]


# --------------------------------------------------------------------------------- lr_scaling


@pytest.mark.parametrize(("rule", "power"), [("none", 0.0), ("sqrt", 0.5), ("linear", 1.0)])
def test_lr_at_each_warmup_step(rule, power):
    r = build("lr_scaling", rule=rule, base_batch=64, warmup_epochs=2, multiplier=2.0)
    ctx = make_ctx(tiny_mlp(), batch_size=1024)
    target = 1e-3 * 2.0 * (1024 / 64) ** power
    steps = 4  # per epoch
    got = [r.lr(1e-3, e + i / steps, ctx) for e in range(3) for i in range(steps)]
    want = [1e-3 + (target - 1e-3) * k / 8 for k in range(8)] + [target] * 4
    assert got == pytest.approx(want, rel=1e-12)


def test_lr_scaling_follows_current_batch_and_no_warmup():
    ctx = make_ctx(tiny_mlp(), batch_size=1024)
    ctx.current_batch_size = 256  # e.g. warm start's SB phase
    r = build("lr_scaling", rule="linear", base_batch=128, warmup_epochs=0)
    assert r.lr(1e-3, 0.0, ctx) == pytest.approx(2e-3)
    from remedies.catalog.lr_scaling import LrScalingConfig

    assert scaled_lr(
        0.1, 0.5, 400, LrScalingConfig(rule="sqrt", base_batch=100, warmup_epochs=1)
    ) == pytest.approx(0.15)


# ----------------------------------------------------------------------------------- ghost_bn


@pytest.mark.parametrize("mode", ["batch", "running"])
def test_ghost_bn_normalises_each_slice(mode):
    torch.manual_seed(0)
    plain = nn.BatchNorm1d(5, track_running_stats=(mode == "running"))
    nn.init.normal_(plain.weight)
    nn.init.normal_(plain.bias)
    model = nn.Sequential(nn.Identity(), plain)
    ref = nn.BatchNorm1d(5, track_running_stats=False)
    ref.load_state_dict({k: v for k, v in plain.state_dict().items() if k in ("weight", "bias")})
    r = build("ghost_bn", ghost_batch=16)
    r.setup(make_ctx(model))
    assert isinstance(model[1], GhostBatchNorm1d)
    x = torch.randn(64, 5) * torch.arange(1, 65.0).unsqueeze(1)  # slices differ in scale
    out = model(x)
    want = torch.cat([ref(c) for c in x.split(16)])
    assert torch.allclose(out, want, atol=1e-5)
    assert not torch.allclose(out, ref(x), atol=1e-2)  # full-batch BN would be different
    if mode == "running":
        slices = x.reshape(4, 16, 5)
        m = model[1].momentum
        assert torch.allclose(model[1].running_mean, m * slices.mean(1).mean(0), atol=1e-5)
        want_var = (1 - m) + m * slices.var(1, unbiased=True).mean(0)
        assert torch.allclose(model[1].running_var, want_var, rtol=1e-5)
        assert model[1].num_batches_tracked.item() == 1
    model.eval()
    if mode == "batch":
        assert torch.allclose(model(x), ref(x), atol=1e-5)  # eval: whole-batch statistics


def test_ghost_bn_2d_and_uneven_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False))
    r = build("ghost_bn", ghost_batch=16)
    r.setup(make_ctx(model, input_shape=(3, 4, 4)))
    assert isinstance(model[0], GhostBatchNorm2d)
    ref = nn.BatchNorm2d(3, track_running_stats=False)
    x = torch.randn(48, 3, 4, 4) * torch.arange(1, 49.0).view(48, 1, 1, 1)
    assert torch.allclose(model(x), torch.cat([ref(c) for c in x.split(16)]), atol=1e-5)
    x = torch.randn(33, 3, 4, 4)  # 16 + 17: the last slice absorbs the remainder
    assert torch.allclose(model(x), torch.cat([ref(x[:16]), ref(x[16:])]), atol=1e-5)


def test_ghost_bn_state_dict_keys_match_plain_model():
    plain = tiny_mlp(bn="running")
    ghost = tiny_mlp(bn="running")
    build("ghost_bn").setup(make_ctx(ghost))
    assert plain.state_dict().keys() == ghost.state_dict().keys()
    ghost.load_state_dict(plain.state_dict())


# ---------------------------------------------------------------------------------------- sam


def _sam_setup(adaptive=False, rho=0.1, eta=0.01, bn="batch"):
    model = tiny_mlp(bn=bn)
    x, y = batch(16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctx = make_ctx(model, opt=opt)
    r = build("sam", rho=rho, adaptive=adaptive, eta=eta)
    return model, x, y, ctx, r


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_ascent_point_and_update(adaptive):
    rho, eta = (0.5, 0.01) if adaptive else (0.1, 0.01)
    model, x, y, ctx, r = _sam_setup(adaptive, rho, eta)
    w0 = [p.detach().clone() for p in model.parameters()]
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    g = [p.grad.clone() for p in model.parameters()]
    t = [w.abs() + eta if adaptive else torch.ones_like(w) for w in w0]
    norm = math.sqrt(sum(((ti * gi) ** 2).sum().item() for ti, gi in zip(t, g, strict=True)))
    e = [rho * ti * ti * gi / norm for ti, gi in zip(t, g, strict=True)]
    # the gradient at w + e, computed on a copy
    import copy

    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p, w, d in zip(twin.parameters(), w0, e, strict=True):
            p.copy_(w + d)
    twin.zero_grad()
    F.cross_entropy(twin(x), y).backward()
    g_adv = [p.grad.clone() for p in twin.parameters()]

    points = []

    def closure():
        points.append([p.detach().clone() for p in model.parameters()])
        return F.cross_entropy(model(x), y)

    r.step(closure, ctx)
    assert len(points) == 2
    for a, w, d in zip(points[1], w0, e, strict=True):
        assert torch.allclose(a, w + d, atol=1e-6)  # the ascent point
    for p, w, ga in zip(model.parameters(), w0, g_adv, strict=True):
        assert torch.allclose(p.detach(), w - 0.1 * ga, atol=1e-6)  # step from w with g(w + e)


def test_sam_zero_gradient_guard():
    model, x, y, ctx, r = _sam_setup()
    w0 = [p.detach().clone() for p in model.parameters()]
    r.step(lambda: sum((p * 0).sum() for p in model.parameters()), ctx)
    for p, w in zip(model.parameters(), w0, strict=True):
        assert torch.isfinite(p).all() and torch.equal(p.detach(), w)


def test_sam_updates_running_bn_stats_once_per_step():
    model, x, y, ctx, r = _sam_setup(bn="running")
    bn = model[1]
    with torch.no_grad():
        h = model[0](x)
    r.step(lambda: F.cross_entropy(model(x), y), ctx)
    assert bn.num_batches_tracked.item() == 1
    assert torch.allclose(bn.running_mean, bn.momentum * h.mean(0), atol=1e-6)  # from w, not w+e


# ------------------------------------------------------------------------------- train_longer


def test_train_longer_matches_sb_steps_and_caps():
    ctx = make_ctx(tiny_mlp(), batch_size=256)
    assert build("train_longer", base_batch=64).epochs(20, ctx) == 80  # 4× the epochs
    ctx.batch_size = 800
    assert build("train_longer", base_batch=64).epochs(20, ctx) == 160  # 12.5× capped at 8×
    assert build("train_longer", base_batch=64, max_factor=2).epochs(20, ctx) == 40
    assert build("train_longer", factor=1.5).epochs(20, ctx) == 30
    ctx.batch_size = 32
    assert build("train_longer", base_batch=64).epochs(20, ctx) == 20  # never fewer epochs


# --------------------------------------------------------------------------------- batch_ramp


def test_batch_ramp_grows_at_milestones():
    ctx = make_ctx(tiny_mlp(), epochs=8, batch_size=800)
    r = build("batch_ramp", factor=2, milestones=[0.5, 0.75])
    assert [r.batch_size(e, 800, ctx) for e in range(8)] == [200] * 4 + [400] * 2 + [800] * 2
    r = build("batch_ramp", factor=10, milestones=[0.25])
    assert [r.batch_size(e, 800, ctx) for e in range(4)] == [80, 80, 800, 800]


# ------------------------------------------------------------------- augment in the trainer


def test_augment_images_through_trainer(tmp_path):
    """Image batches (B, 1, 8, 8) go through kornia in the real loop; evaluation is untouched."""
    import numpy as np

    from remedies.config import parse_config
    from remedies.engine.trainer import train

    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "img.npz",
        x_train=rng.integers(0, 256, (200, 1, 8, 8), dtype=np.uint8),
        y_train=rng.integers(0, 3, 200),
        x_test=rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8),
        y_test=rng.integers(0, 3, 40),
    )
    raw = {
        "data": {"name": "npz", "path": str(tmp_path / "img.npz")},
        "model": {"name": "F1", "width": 0.05},
        "train": {"batch_size": 30, "epochs": 2, "checkpoint": False, "device": "cpu"},
        "remedies": {"augment": {}, "ghost_bn": {"ghost_batch": 16}},
    }
    r = train(parse_config(raw), measure=False, progress=False)
    assert r.epochs_run == 2 and not r.diverged


# -------------------------------------------------------------------------------- trust_ratio


def _trust_step(opt_name: str, trust: float, lr: float, lr_t: float | None = None):
    """One step of a trust-ratio run and, on a copy, the plain base optimiser's step."""
    import copy

    model = tiny_mlp(bn="running")
    twin = copy.deepcopy(model)
    make = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=lr),
        "adam": lambda ps: torch.optim.Adam(ps, lr=lr),
    }[opt_name]
    ctx = make_ctx(model, opt=make(model.parameters()), lr=lr)
    r = build("trust_ratio", trust=trust)
    ctx.before_step = lambda: r.after_backward(ctx)
    ctx.after_step = lambda: r.after_step(ctx)
    x, y = batch()
    w0 = [p.detach().clone() for p in model.parameters()]
    for m, opt in ((model, ctx.optimizer), (twin, None)):
        opt = opt or make(twin.parameters())
        for g in opt.param_groups:
            g["lr"] = lr_t or lr
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        ctx.optimizer_step() if m is model else opt.step()
    return w0, list(model.parameters()), list(twin.parameters())


def test_trust_ratio_is_lars_for_plain_sgd():
    # SGD without momentum: u = g, so each weight matrix moves by exactly trust·‖w‖·g/‖g‖
    # (LARS with η·γ = trust); biases and BN parameters keep the base step −lr·g
    trust, lr = 3e-3, 0.1
    w0, new, base = _trust_step("sgd", trust, lr)
    for w, p, b in zip(w0, new, base, strict=True):
        g = (w - b.detach()) / lr  # the gradient, recovered from the plain SGD step
        if w.ndim > 1:
            expected = w - trust * w.norm() * g / g.norm()
        else:
            expected = b.detach()
        assert torch.allclose(p.detach(), expected, atol=1e-7)


@pytest.mark.parametrize("lr_factor", [1.0, 2.5])
def test_trust_ratio_is_lamb_for_adam_and_follows_the_lr_schedule(lr_factor):
    # Adam: the direction stays Adam's update, its length becomes trust·‖w‖·lr_t/lr₀ per layer
    trust, lr = 1e-3, 1e-3
    w0, new, base = _trust_step("adam", trust, lr, lr_t=lr * lr_factor)
    for w, p, b in zip(w0, new, base, strict=True):
        d, d_adam = p.detach() - w, b.detach() - w
        if w.ndim == 1:
            assert torch.allclose(d, d_adam, atol=1e-8)
            continue
        assert d.norm().item() == pytest.approx(trust * lr_factor * w.norm().item(), rel=1e-4)
        cos = (d * d_adam).sum() / (d.norm() * d_adam.norm())
        assert cos.item() == pytest.approx(1.0, abs=1e-5)
        assert not torch.allclose(d, d_adam)  # it did change the step


# --------------------------------------------------------------------------------- grad_noise


def test_grad_noise_has_sb_shaped_covariance():
    # the gradient of the reweighted loss, over many weight draws: mean = the LB gradient ḡ,
    # covariance = scale·(1/b − 1/B)·Σ̂ with Σ̂ the per-sample gradient covariance — Σ̂ computed
    # independently, per sample, with torch.func
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = batch(n=32, d=3, classes=2)
    B, b, scale = 32, 8, 1.0
    r = build("grad_noise", scale=scale, sb_batch=b)
    ctx = make_ctx(model, batch_size=B)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def sample_loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    per = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    G = torch.cat([per[k].reshape(B, -1) for k in params], dim=1).double()  # B × 8
    g_bar = G.mean(0)
    sigma = (G - g_bar).T @ (G - g_bar) / B
    expected_cov = scale * (1 / b - 1 / B) * sigma

    W = torch.stack([r.sample_weights(y, ctx) for _ in range(6000)]).double()  # draws × B
    assert torch.allclose(W.mean(1), torch.ones(len(W), dtype=torch.float64), atol=1e-6)
    # the reweighted loss's gradient is linear in the weights, w·G / B: checked by backward on
    # a few draws, then used for all of them (6000 backward passes took most of a minute in CI)
    for w in W[:20]:
        model.zero_grad()
        (F.cross_entropy(model(x), y, reduction="none") * w.float()).mean().backward()
        got = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
        assert torch.allclose(got, w @ G / B, atol=1e-5)
    D = W @ G / B
    assert torch.allclose(D.mean(0), g_bar, atol=4e-3)
    cov = torch.cov(D.T)
    rel = (cov - expected_cov).norm() / expected_cov.norm()
    assert rel < 0.08, rel
    # and it is not isotropic: the shape follows Σ̂
    iso = torch.eye(8, dtype=torch.float64) * expected_cov.trace() / 8
    assert (cov - iso).norm() / expected_cov.norm() > 0.3


def test_grad_noise_off_for_small_batches_and_zero_scale():
    x, y = batch(n=16)
    ctx = make_ctx(tiny_mlp(), batch_size=16)
    assert build("grad_noise", sb_batch=64).sample_weights(y, ctx) is None  # B ≤ b: SB already
    assert build("grad_noise", scale=0.0, sb_batch=4).sample_weights(y, ctx) is None
    w = build("grad_noise", scale=1.0, sb_batch=4).sample_weights(y, ctx)
    assert w.shape == (16,) and w.std().item() > 0.5  # s = √3
