"""Contract tests over every registered remedy: defaults validate, bad keys and ranges give one-line
errors naming `remedies.<name>.<param>`, and each remedy, trained through the real loop with its
defaults, does the thing it claims (a registered remedy without a declared claim fails)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

import remedies.engine.applied as applied_mod
import remedies.engine.trainer as trainer_mod
from remedies.catalog import REMEDIES
from remedies.config import parse_config
from remedies.data import Splits
from remedies.engine.trainer import TrainResult, train
from remedies.errors import ConfigError
from remedies.launch import fit

BUILT = [
    "augment",
    "conservative",
    "adversarial",
    "warm_start",
    "lr_scaling",
    "ghost_bn",
    "sam",
    "train_longer",
    "batch_ramp",
    "trust_ratio",
    "grad_noise",
]


def tiny(remedies: dict, **train_kw) -> dict:
    return {
        "data": {"name": "mnist1d", "num_samples": 500},
        "model": {"name": "F1", "width": 0.05, **train_kw.pop("model", {})},
        "train": {"batch_size": 40, "epochs": 2, "checkpoint": False, "device": "cpu", **train_kw},
        "remedies": remedies,
    }


def test_issue_remedies_are_registered():
    assert set(BUILT) <= set(REMEDIES.names())


@pytest.mark.parametrize("name", REMEDIES.names())
def test_defaults_validate_and_round_trip(name):
    cfg = parse_config(tiny({name: {}}))
    again = parse_config(tiny({name: cfg.remedies[name]}))  # the dump re-validates unchanged
    assert again.remedies == cfg.remedies


@pytest.mark.parametrize("name", REMEDIES.names())
def test_unknown_key_is_one_line_error(name):
    with pytest.raises(ConfigError) as e:
        parse_config(tiny({name: {"no_such_param": 1}}))
    msg = str(e.value)
    assert f"remedies.{name}.no_such_param" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("name", "param", "bad"),
    [
        ("augment", "rotation", 30),
        ("augment", "translation", 0.5),
        ("augment", "flip", 0.3),
        ("conservative", "lam", 1.0),
        ("conservative", "inner_steps", 0),
        ("adversarial", "eps", 0.5),
        ("adversarial", "weight", 1.5),
        ("warm_start", "sb_batch", 8),
        ("warm_start", "fraction", 0.9),
        ("lr_scaling", "rule", "cubic"),
        ("lr_scaling", "multiplier", 10),
        ("lr_scaling", "warmup_epochs", 20),
        ("ghost_bn", "ghost_batch", 4),
        ("train_longer", "factor", 20),
        ("sam", "eta", 1.0),
        ("batch_ramp", "factor", 1),
        ("batch_ramp", "milestones", [0.8, 0.5]),
        ("trust_ratio", "trust", 0.5),
        ("grad_noise", "scale", 1.5),
        ("grad_noise", "sb_batch", 0),
    ],
)
def test_out_of_range_names_the_field(name, param, bad):
    with pytest.raises(ConfigError, match=rf"remedies\.{name}\.{param}"):
        parse_config(tiny({name: {param: bad}}))


def test_sam_rho_range_depends_on_adaptive():
    assert parse_config(tiny({"sam": {"adaptive": True}})).remedies["sam"]["rho"] == 0.5
    parse_config(tiny({"sam": {"adaptive": True, "rho": 2.0}}))
    with pytest.raises(ConfigError, match=r"remedies\.sam\.rho: must be in \[0\.01, 0\.5\]"):
        parse_config(tiny({"sam": {"rho": 2.0}}))


def test_warm_start_epochs_and_fraction_exclusive():
    with pytest.raises(ConfigError, match=r"remedies\.warm_start.*either epochs or fraction"):
        parse_config(tiny({"warm_start": {"epochs": 2, "fraction": 0.1}}))


def test_two_step_owners_refused():
    with pytest.raises(ConfigError, match="conservative and sam"):
        parse_config(tiny({"conservative": {}, "sam": {}}))


# ---------------------------------------------------------------- each remedy does what it claims
#
# Every registered remedy, with its default config, trains the same tiny large-batch run as a plain
# run with the same seed (same initial weights, same batch order) through the real trainer. A
# recorder captures what a remedy can change — the batches the model sees, the weights at each
# forward, the gradient and update of each optimiser step, the BN outputs, the per-epoch history —
# and the remedy's claim (its docstring / the spec's catalogue) is checked against the plain run.
# A remedy whose hooks do nothing leaves the trace identical to the plain run's, so every claim
# asserts a difference: `test_claims_reject_a_do_nothing_remedy` proves that for each of them.
# tests/catalog/test_mechanisms.py checks each mechanism exactly on isolated tensors; this is the
# cheap registry-wide check that each remedy does something, and the thing it says, in training.

N_TRAIN, LB, EPOCHS, LR = 384, 96, 4, 1e-3  # 4 steps an epoch; LB above every default small batch


@dataclass(repr=False)
class Forward:
    """One forward pass of the whole model."""

    x: torch.Tensor
    weights: list[torch.Tensor]
    bn_out: list[torch.Tensor] = field(default_factory=list)  # each BN layer's output, in order


@dataclass(repr=False)
class Step:
    """One optimiser step and the training forwards since the previous one."""

    forwards: list[Forward]
    grads: list[torch.Tensor]  # what the optimiser applied (after the gradient hooks)
    before: list[torch.Tensor]
    after: list[torch.Tensor] = field(default_factory=list)  # at the next forward: after_step too

    def update(self) -> list[torch.Tensor]:
        return [a - b for a, b in zip(self.after, self.before, strict=True)]


@dataclass(repr=False)  # a failure message should not print every recorded tensor
class Trace:
    result: TrainResult
    steps: list[Step]  # the optimiser steps of the first epoch
    eval_x: torch.Tensor  # the first evaluation batch

    @property
    def sizes(self) -> list[int]:
        return [h["batch_size"] for h in self.result.history]


def _copy(ts) -> list[torch.Tensor]:
    return [t.detach().clone() for t in ts]


def _flat(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def trace_run(remedies: dict, splits: Splits) -> Trace:
    """Train the tiny LB config with `remedies`, recording the first epoch in full.

    The recorder sits outside the remedy interface — hooks on the model the trainer builds and on
    the optimiser it makes — so it sees what training actually did, whichever hooks caused it."""
    events: list[tuple[str, Any]] = []  # ("fwd" | "eval", Forward) and ("step", Step)
    done = False  # set at the first evaluation forward: the end of epoch 1

    def build(cfg, sp, device):
        model = real_build(cfg, sp, device)

        def bn_hook(mod, args, out):
            if not done and mod.training:
                events[-1][1].bn_out.append(out.detach().clone())

        def pre(mod, args):
            nonlocal done
            if not events:  # the first forward: remedies' setup has swapped its modules by now
                for m in mod.modules():
                    if isinstance(m, _BatchNorm):
                        m.register_forward_hook(bn_hook)
            if done:
                return
            done = not mod.training
            events.append(
                (
                    "fwd" if mod.training else "eval",
                    Forward(args[0].detach().clone(), _copy(mod.parameters())),
                )
            )

        model.register_forward_pre_hook(pre)
        return model

    def make_opt(cfg, params):
        opt = real_make_opt(cfg, params)
        ps = [p for g in opt.param_groups for p in g["params"]]

        def pre(o, args, kwargs):
            if not done:
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in ps]
                events.append(("step", Step([], _copy(grads), _copy(ps))))

        opt.register_step_pre_hook(pre)
        return opt

    real_build, real_make_opt = trainer_mod.build_model, applied_mod.make_optimizer
    cfg = parse_config(
        {
            "model": {"name": "F1", "width": 0.05},
            "train": {
                "batch_size": LB,
                "epochs": EPOCHS,
                "lr": LR,
                "checkpoint": False,
                "device": "cpu",
            },
            "remedies": remedies,
        }
    )
    with (
        patch.object(trainer_mod, "build_model", build),
        patch.object(applied_mod, "make_optimizer", make_opt),
    ):
        result = train(cfg, splits=splits, measure=False, progress=False)
    steps: list[Step] = []
    pending: list[Forward] = []
    for kind, ev in events:
        if kind == "step":
            ev.forwards, pending = pending, []
            steps.append(ev)
            continue
        if steps and not steps[-1].after:
            steps[-1].after = ev.weights
        pending.append(ev)
    evals = [ev.x for kind, ev in events if kind == "eval"]  # none if epoch 1 diverged
    return Trace(result, steps, evals[0] if evals else torch.empty(0))


@pytest.fixture(scope="module")
def splits() -> Splits:
    """A small learnable set (class-dependent means), built in memory: no generator, no cache."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(4, 40, generator=g)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 4, (n,), generator=g)
        return means[y] + 0.5 * torch.randn(n, 40, generator=g), y

    (xt, yt), (xv, yv), (xs, ys) = make(N_TRAIN), make(64), make(64)
    return Splits(x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys, num_classes=4)


@pytest.fixture(scope="module")
def plain(splits: Splits) -> Trace:
    t = trace_run({}, splits)
    # the baseline every claim is measured against: one forward and one step per batch, at LB
    assert t.sizes == [LB] * EPOCHS and len(t.steps) == N_TRAIN // LB
    assert all(len(s.forwards) == 1 for s in t.steps)
    return t


def _same_start(t: Trace, p: Trace) -> None:
    """Step 1 starts from the plain run's weights on the plain run's batch: differences after it
    are the remedy's."""
    first, first0 = t.steps[0].forwards[0], p.steps[0].forwards[0]
    assert _same(first.weights, first0.weights), "initial weights differ from the plain run"
    assert torch.equal(first.x, first0.x), "first batch differs from the plain run's"


def augments_training_batches_only(t: Trace, p: Trace, cfg: dict) -> None:
    """augment: the training batch the model sees is changed; evaluation batches are not."""
    x, x0 = t.steps[0].forwards[0].x, p.steps[0].forwards[0].x
    assert x.shape == x0.shape and not torch.equal(x, x0), "training batch left unchanged"
    assert torch.equal(t.eval_x, p.eval_x), "evaluation batch was changed"


def owns_the_step_with_inner_iterations(t: Trace, p: Trace, cfg: dict) -> None:
    """conservative: each batch takes `inner_steps` optimiser steps (one forward each) on the
    proximal problem, so the trainer step ends somewhere else than plain Adam's single step."""
    k = cfg["inner_steps"]
    assert len(t.steps) == k * t.result.history[0]["steps"], "not k optimiser steps per batch"
    assert all(len(s.forwards) == 1 for s in t.steps)
    _same_start(t, p)
    assert torch.equal(t.steps[k - 1].forwards[0].x, p.steps[0].forwards[0].x)  # one batch, k steps
    assert not torch.allclose(_flat(t.steps[k - 1].after), _flat(p.steps[0].after))


def ascends_then_steps_from_w(t: Trace, p: Trace, cfg: dict) -> None:
    """sam: per step, a forward at w and one at w + e with ‖e‖ = ρ; the optimiser then steps
    from w with the gradient taken at w + e — a different update than plain Adam's."""
    assert not cfg["adaptive"]  # SAM by default: ‖e‖ = ρ exactly (ASAM scales it per weight)
    s, s0 = t.steps[0], p.steps[0]
    assert len(t.steps) == t.result.history[0]["steps"], "not one optimiser step per batch"
    assert len(s.forwards) == 2, "no second (ascent) forward"
    w, w_adv = _flat(s.forwards[0].weights), _flat(s.forwards[1].weights)
    assert (w_adv - w).norm().item() == pytest.approx(cfg["rho"], rel=1e-3)  # float32 weights
    # back at w (w + e − e: equal up to float32 rounding) before the optimiser steps
    assert torch.allclose(_flat(s.before), w, rtol=0, atol=1e-6), "the step does not start from w"
    _same_start(t, p)
    assert not torch.allclose(_flat(s.grads), _flat(s0.grads)), "gradient not taken at w + e"


def mixes_in_fgsm_examples(t: Trace, p: Trace, cfg: dict) -> None:
    """adversarial: besides the clean batch the model sees an input-gradient probe of it and the
    FGSM batch x ± ε, and the loss (so the gradient) mixes in the adversarial term."""
    s, s0 = t.steps[0], p.steps[0]
    assert len(s.forwards) == 3, "expected clean, probe and adversarial forwards"
    clean, probe, adv = (f.x for f in s.forwards)
    _same_start(t, p)
    assert torch.equal(probe, clean), "the probe is not the clean batch"
    # |x_adv − x| = ε in every coordinate, up to float32 rounding of x + ε
    assert (adv - clean).abs().max().item() == pytest.approx(cfg["eps"], abs=1e-6)
    assert not torch.allclose(_flat(s.grads), _flat(s0.grads)), "loss unchanged"


def reweights_per_sample_losses(t: Trace, p: Trace, cfg: dict) -> None:
    """grad_noise: the same batch, one forward, but randomly reweighted per-sample losses: the
    gradient of the step differs from the plain LB gradient."""
    assert LB > cfg["sb_batch"]  # the remedy is active only above its small batch
    s, s0 = t.steps[0], p.steps[0]
    assert len(s.forwards) == 1, "extra forwards"
    _same_start(t, p)  # the same weights and the same batch: only the loss weights differ
    assert not torch.allclose(_flat(s.grads), _flat(s0.grads)), "gradient unchanged"


def starts_at_the_small_batch(t: Trace, p: Trace, cfg: dict) -> None:
    """warm_start: the first `fraction` of the epochs (or `epochs`) run at sb_batch, then LB."""
    k = cfg["epochs"] if cfg["epochs"] is not None else round(cfg["fraction"] * EPOCHS)
    assert k >= 1 and cfg["sb_batch"] < LB  # the defaults give this run a warm phase
    assert t.sizes == [cfg["sb_batch"]] * k + [LB] * (EPOCHS - k)
    assert [h["warm_start"] for h in t.result.history] == [1.0] * k + [0.0] * (EPOCHS - k)


def grows_the_batch_at_milestones(t: Trace, p: Trace, cfg: dict) -> None:
    """batch_ramp: start at LB / factor^m, grow by `factor` at each of the m milestones, end at
    LB."""
    f, m = cfg["factor"], len(cfg["milestones"])
    sizes = t.sizes
    assert sizes[0] == LB // f**m and sizes[-1] == LB, sizes
    assert all(b in (a, a * f) for a, b in zip(sizes, sizes[1:])) and len(set(sizes)) == m + 1


def scales_lr_with_warmup(t: Trace, p: Trace, cfg: dict) -> None:
    """lr_scaling: the lr rises gradually from lr₀ to lr₀·multiplier·(B/B₀)^p (p by rule)."""
    assert [h["lr"] for h in p.result.history] == [LR] * EPOCHS
    lrs = [h["lr"] for h in t.result.history]
    power = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}[cfg["rule"]]
    target = LR * cfg["multiplier"] * (LB / cfg["base_batch"]) ** power
    assert lrs[-1] == pytest.approx(target, rel=1e-9) and target != pytest.approx(LR)
    assert LR < lrs[0] < lrs[-1] and lrs == sorted(lrs), lrs  # gradual warmup, per step


def multiplies_the_epoch_budget(t: Trace, p: Trace, cfg: dict) -> None:
    """train_longer: epochs × min(B/B₀, max_factor) (or × factor), so LB takes SB's steps."""
    factor = cfg["factor"] or min(LB / cfg["base_batch"], cfg["max_factor"])
    assert p.result.epochs_run == EPOCHS
    assert t.result.epochs_run == len(t.result.history) == math.ceil(EPOCHS * factor) > EPOCHS


def normalises_per_ghost_batch(t: Trace, p: Trace, cfg: dict) -> None:
    """ghost_bn: every BN layer normalises each g-slice of the batch by that slice's statistics,
    so each slice's output mean is the BN bias (0 at initialisation) — not just the batch's."""
    g = cfg["ghost_batch"]
    assert LB % g == 0 and LB > g  # whole ghost batches in this run

    def worst_slice_mean(out: torch.Tensor) -> float:
        return out.reshape(LB // g, g, -1).mean(1).abs().max().item()

    outs, outs0 = t.steps[0].forwards[0].bn_out, p.steps[0].forwards[0].bn_out
    assert len(outs) == len(outs0) > 0
    assert max(worst_slice_mean(o) for o in outs) < 1e-4, "a slice is not normalised on its own"
    assert min(worst_slice_mean(o) for o in outs0) > 1e-2  # plain BN: only the batch mean is 0


def rescales_layer_updates(t: Trace, p: Trace, cfg: dict) -> None:
    """trust_ratio: each weight matrix moves by trust·‖w‖ (lr_t = lr₀ here); 1-D parameters
    (biases, BN) keep the base optimiser's update."""
    s, s0 = t.steps[0], p.steps[0]
    _same_start(t, p)
    for w, d, d0 in zip(s.before, s.update(), s0.update(), strict=True):
        if w.ndim > 1:
            assert (d.norm() / w.norm()).item() == pytest.approx(cfg["trust"], rel=1e-3)
        else:
            assert torch.allclose(d, d0, atol=1e-8)


Claim = Callable[[Trace, Trace, dict], None]
CLAIMS: dict[str, Claim] = {
    "augment": augments_training_batches_only,
    "conservative": owns_the_step_with_inner_iterations,
    "sam": ascends_then_steps_from_w,
    "adversarial": mixes_in_fgsm_examples,
    "grad_noise": reweights_per_sample_losses,
    "warm_start": starts_at_the_small_batch,
    "batch_ramp": grows_the_batch_at_milestones,
    "lr_scaling": scales_lr_with_warmup,
    "train_longer": multiplies_the_epoch_budget,
    "ghost_bn": normalises_per_ghost_batch,
    "trust_ratio": rescales_layer_updates,
}


def defaults(name: str) -> dict:
    return parse_config({"remedies": {name: {}}}).remedies[name]


def test_every_registered_remedy_declares_a_claim():
    """A new remedy without an entry in CLAIMS fails here (and in the test below)."""
    assert set(CLAIMS) == set(REMEDIES.names()), (
        f"no claim for {sorted(set(REMEDIES.names()) - set(CLAIMS))}, "
        f"claims for unknown remedies {sorted(set(CLAIMS) - set(REMEDIES.names()))}"
    )


@pytest.mark.parametrize("name", REMEDIES.names())
def test_remedy_does_what_it_claims(name, splits, plain):
    if name not in CLAIMS:
        pytest.fail(f"remedy {name!r} declares no claim: add its check to CLAIMS")
    t = trace_run({name: {}}, splits)
    assert not t.result.diverged
    CLAIMS[name](t, plain, t.result.config.remedies[name])


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_claims_reject_a_do_nothing_remedy(name, plain):
    """A remedy whose hooks do nothing trains exactly the plain run (same seed, same batches), so
    its trace *is* the plain trace: every claim must fail on it."""
    with pytest.raises(AssertionError):
        CLAIMS[name](plain, plain, defaults(name))


def test_three_remedies_end_to_end(tmp_path):
    """The issue's composition check: warm start + lr scaling + ghost BN + SAM in one run, with
    `running` BN, through the real trainer, then a checkpoint reload of the ghost-BN model."""
    from remedies.engine.checkpoint import load_checkpoint

    raw = tiny(
        {
            "warm_start": {"epochs": 1, "sb_batch": 32},
            "lr_scaling": {"rule": "linear"},
            "ghost_bn": {"ghost_batch": 20},
            "sam": {},
        },
        model={"bn": "running"},
        epochs=3,
        checkpoint=True,
    )
    cfg = parse_config(raw)
    r = fit(cfg, measure=False, progress=False, out_dir=tmp_path)
    assert [h["batch_size"] for h in r.history] == [32, 40, 40]
    assert [h["warm_start"] for h in r.history] == [1.0, 0.0, 0.0]
    assert r.history[-1]["lr"] == pytest.approx(1e-3 * 40 / 64)  # linear rule after warmup
    assert not r.diverged
    model, _, metrics = load_checkpoint(r.checkpoint)
    assert type(model[2]).__name__ == "GhostBatchNorm1d"
    assert metrics["test_accuracy"] == pytest.approx(r.test_accuracy)
