"""Space files are validated up front: every shipped space parses, bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from remedies.cli import main
from remedies.errors import ConfigError
from remedies.service.optuna_space import define_by_run
from remedies.service.report import hypervolume_2d, knee, pareto
from remedies.service.space import load_space, parse_space, resolve

ROOT = Path(__file__).resolve().parents[2]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))

TINY = {
    "name": "tiny",
    "base": {"data": {"num_samples": 1000}, "model": {"width": 0.1},
             "train": {"epochs": 2, "batch_size": 128}},
    "params": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    "remedies": {"sam": {"rho": {"type": "float", "low": 0.01, "high": 0.5, "log": True}}},
}  # fmt: skip


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_shipped_spaces_validate(path):
    space = load_space(path)
    assert space.num_samples >= 1


def test_shipped_spaces_exist():
    names = {p.stem for p in SPACES}
    assert {"quickstart", "keskar_f1_mnist", "keskar_c1_cifar10"} <= names


def _bad(change: dict) -> str:
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    for k, v in change.items():
        node = raw
        *parts, last = k.split("/")
        for p in parts:
            node = node[p]
        node[last] = v
    with pytest.raises(ConfigError) as e:
        parse_space(raw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_inputs_name_the_field():
    assert "samplr: unknown key" in _bad({"samplr": {}})
    assert "sampler.name" in _bad({"sampler": {"name": "bayes"}}) and "tpe" in _bad(
        {"sampler": {"name": "bayes"}}
    )
    assert "params.train.lr" in _bad({"params/train.lr": {"type": "float", "low": 1}})
    assert "params.train.lrr" in _bad({"params/train.lrr": {"type": "float", "low": 1, "high": 2}})
    assert "log scale" in _bad({"params/train.lr": {"type": "float", "low": 0, "high": 1,
                                                    "log": True}})  # fmt: skip
    assert "params.train.lr" in _bad({"params/train.lr": {"type": "float", "low": 1e-3,
                                                          "high": 50}})  # fmt: skip
    assert "remedies.samm" in _bad({"remedies": {"samm": {}}})
    assert "remedies.sam" in _bad({"remedies": {"sam": {"rhoo": 0.1}}})
    assert "objectives" in _bad({"objectives": [{"name": "accuracy", "mode": "max"}]})
    assert "base." in _bad({"base": {"train": {"epochz": 3}}})


def test_define_by_run_is_conditional():
    import optuna

    space = parse_space(TINY)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_on = seen_off = False
    for _ in range(12):
        t = study.ask()
        s = define_by_run(space)(t)
        cfg = resolve(space, s)
        if s["remedy.sam"]:
            seen_on = True
            assert "sam.rho" in t.params and cfg["remedies"]["sam"]["rho"] == s["sam.rho"]
        else:
            seen_off = True
            assert "sam.rho" not in t.params and "sam" not in cfg["remedies"]
        study.tell(t, 0.0)
    assert seen_on and seen_off


def test_step_owning_remedies_are_never_sampled_together():
    import optuna

    from remedies.config import parse_config

    space = parse_space({**TINY, "remedies": {
        "sam": {"rho": {"type": "float", "low": 0.01, "high": 0.5, "log": True}},
        "conservative": {"lam": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
        "lr_scaling": {},
    }})  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        t = study.ask()
        s = define_by_run(space)(t)
        assert not (s["remedy.sam"] and s["remedy.conservative"])
        seen.add((s["remedy.sam"], s["remedy.conservative"]))
        parse_config(resolve(space, s))  # every sampled trial is a valid run config
        study.tell(t, 0.0)
    assert seen == {(False, False), (True, False), (False, True)}


def test_pareto_knee_hypervolume():
    pts = [[90, -1], [80, -0.5], [85, -2], [70, -0.1], [60, -0.2]]
    assert sorted(pareto(pts)) == [0, 1, 3]
    front = [pts[i] for i in (0, 1, 3)]
    assert front[knee(front)] == [80, -0.5]
    assert hypervolume_2d([[1, 1]], [0, 0]) == 1
    assert hypervolume_2d([[2, 1], [1, 2]], [0, 0]) == 3


def test_cli_bad_space_exits_2_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({**TINY, "sampler": {"name": "bayes"}}))
    assert main(["search", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sampler.name" in err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "remedies_studies.db").exists()
    assert main(["export", "nope", "--out", str(tmp_path / "x.yaml")]) == 2
    assert not (tmp_path / "x.yaml").exists()
