"""Contract tests over every registered remedy: defaults validate, bad keys and ranges give one-line
errors naming `remedies.<name>.<param>`, and each remedy trains a tiny model without touching the
trainer's loop."""

from __future__ import annotations

import pytest

from remedies.catalog import REMEDIES
from remedies.config import parse_config
from remedies.errors import ConfigError
from remedies.trainer import train

BUILT = ["augment", "conservative", "adversarial", "warm_start", "lr_scaling", "ghost_bn", "sam",
         "train_longer", "batch_ramp", "trust_ratio", "grad_noise"]  # fmt: skip


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


@pytest.mark.parametrize(("name", "param", "bad"), [
    ("augment", "rotation", 30), ("augment", "translation", 0.5), ("augment", "flip", 0.3),
    ("conservative", "lam", 1.0), ("conservative", "inner_steps", 0),
    ("adversarial", "eps", 0.5), ("adversarial", "weight", 1.5),
    ("warm_start", "sb_batch", 8), ("warm_start", "fraction", 0.9),
    ("lr_scaling", "rule", "cubic"), ("lr_scaling", "multiplier", 10),
    ("lr_scaling", "warmup_epochs", 20), ("ghost_bn", "ghost_batch", 4),
    ("train_longer", "factor", 20), ("sam", "eta", 1.0),
    ("batch_ramp", "factor", 1), ("batch_ramp", "milestones", [0.8, 0.5]),
    ("trust_ratio", "trust", 0.5), ("grad_noise", "scale", 1.5), ("grad_noise", "sb_batch", 0),
])  # fmt: skip
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


@pytest.mark.parametrize("name", BUILT)
def test_each_remedy_trains(name):
    r = train(parse_config(tiny({name: {}})), measure=False, progress=False)
    assert not r.diverged and r.epochs_run >= 2


def test_three_remedies_end_to_end(tmp_path):
    """The issue's composition check: warm start + lr scaling + ghost BN + SAM in one run, with
    `running` BN, through the real trainer, then a checkpoint reload of the ghost-BN model."""
    from remedies.checkpoint import load_checkpoint

    raw = tiny({"warm_start": {"epochs": 1, "sb_batch": 32}, "lr_scaling": {"rule": "linear"},
                "ghost_bn": {"ghost_batch": 20}, "sam": {}},
               model={"bn": "running"}, epochs=3, checkpoint=True)  # fmt: skip
    cfg = parse_config(raw)
    r = train(cfg, measure=False, progress=False, out_dir=tmp_path)
    assert [h["batch_size"] for h in r.history] == [32, 40, 40]
    assert [h["warm_start"] for h in r.history] == [1.0, 0.0, 0.0]
    assert r.history[-1]["lr"] == pytest.approx(1e-3 * 40 / 64)  # linear rule after warmup
    assert not r.diverged
    model, _, metrics = load_checkpoint(r.checkpoint)
    assert type(model[2]).__name__ == "GhostBatchNorm1d"
    assert metrics["test_accuracy"] == pytest.approx(r.test_accuracy)
