"""Space files are validated up front: every shipped space parses, bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from remedies.cli import main
from remedies.errors import ConfigError
from remedies.results.report import hypervolume_2d, knee, pareto
from remedies.search.optuna_space import define_by_run
from remedies.search.space import load_space, parse_space, resolve

ROOT = Path(__file__).resolve().parents[2]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))

TINY = {
    "name": "tiny",
    "base": {
        "data": {"num_samples": 1000},
        "model": {"width": 0.1},
        "train": {"epochs": 2, "batch_size": 128},
    },
    "params": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    "remedies": {"sam": {"rho": {"type": "float", "low": 0.01, "high": 0.5, "log": True}}},
}


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
    assert "log scale" in _bad(
        {"params/train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}
    )
    assert "params.train.lr" in _bad(
        {"params/train.lr": {"type": "float", "low": 1e-3, "high": 50}}
    )
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

    space = parse_space(
        {
            **TINY,
            "remedies": {
                "sam": {"rho": {"type": "float", "low": 0.01, "high": 0.5, "log": True}},
                "conservative": {"lam": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
                "lr_scaling": {},
            },
        }
    )
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


# ------------------------------------------------------------ objectives vs. what trials report


def _space_error(raw: dict) -> str:
    with pytest.raises(ConfigError) as e:
        parse_space(raw)
    assert "\n" not in str(e.value)
    return str(e.value)


ONE_EPS = {**TINY["base"], "measure": {"keskar": {"eps": [1e-3]}}}


def test_objective_must_be_produced_by_the_base_measure_section():
    objs = [
        {"name": "val_accuracy", "mode": "max"},
        {"name": "keskar_full_eps5e-04", "mode": "min"},
    ]
    msg = _space_error({**TINY, "base": ONE_EPS, "objectives": objs})
    assert msg == (
        "objectives[1].name: 'keskar_full_eps5e-04' is not a value any trial reports; allowed: "
        "val_accuracy, train_accuracy, test_accuracy, gap, val_loss, train_loss, wall_time_s, "
        "train_time_s, train_cpu_s, measure_time_s, epochs, steps, speedup_vs_sb, "
        "speedup_vs_sb_wall, speedup_vs_sb_budget, steps_ratio_vs_sb, time_to_target_s, "
        "steps_to_target, steps_ratio_to_target, batch_ratio, scaling_efficiency, "
        "steps_ratio_bound, gap_closed, test_gap_closed, or a key the base's "
        "measure section "
        "produces: keskar_full_eps1e-03"
    )
    # the same name is fine once the section measures it
    parse_space({**TINY, "objectives": [{"name": "keskar_full_eps5e-04", "mode": "min"}]})


def test_objectives_follow_every_measure_family():
    base = {
        **TINY["base"],
        "measure": {
            "keskar": {"enabled": False},
            "lambda_max": {"enabled": True, "k": 2},
            "trace": {"enabled": True},
        },
    }
    ok = [{"name": n, "mode": "min"} for n in ("lambda_2", "hessian_trace_se", "gap")]
    assert parse_space({**TINY, "base": base, "objectives": ok}).metric_names[0] == "lambda_2"
    msg = _space_error({**TINY, "base": base, "objectives": [{"name": "lambda_3", "mode": "min"}]})
    assert msg.startswith("objectives[0].name: 'lambda_3' is not a value any trial reports")
    assert msg.endswith("produces: lambda_max, lambda_2, hessian_trace, hessian_trace_se")


def test_default_objectives_without_keskar_say_they_are_the_defaults():
    msg = _space_error(
        {**TINY, "base": {**TINY["base"], "measure": {"keskar": {"enabled": False}}}}
    )
    assert msg.startswith("objectives[1].name: 'keskar_full_eps1e-03' is not a value")
    assert "produces: none (every measure is off)" in msg and "default objectives" in msg


def test_objective_checked_under_every_sampled_measure_value():
    eps = {"type": "categorical", "choices": [[1e-3], [2e-3], [1e-3, 5e-4]]}
    raw = {**TINY, "base": ONE_EPS, "params": {"measure.keskar.eps": eps}}
    msg = _space_error(raw)  # default objectives: keskar_full_eps1e-03 is missing at [0.002]
    assert msg.startswith(
        "objectives[1].name: 'keskar_full_eps1e-03' is not reported when "
        "params.measure.keskar.eps is [0.002] (that measure section produces: "
        "keskar_full_eps2e-03); allowed: "
    )
    eps["choices"] = [[1e-3], [1e-3, 2e-3]]
    parse_space(raw)
    # a sampled switch turns the full-space measure off: its key vanishes in those trials
    switch = {"type": "categorical", "choices": [True, False]}
    raw = {**TINY, "base": ONE_EPS, "params": {"measure.keskar.full_space": switch}}
    assert (
        "when params.measure.keskar.full_space is False (that measure section produces: none)"
        in _space_error(raw)
    )


def test_every_categorical_choice_is_probed():
    bad_middle = {"type": "categorical", "choices": [64, "0%", 128]}
    msg = _space_error({**TINY, "params": {"train.batch_size": bad_middle}})
    assert msg.startswith("params.train.batch_size: '0%' is not accepted: train.batch_size:")
    # a remedy knob: the middle choice is below ghost_batch's minimum of 16
    g = {"ghost_bn": {"ghost_batch": {"type": "categorical", "choices": [16, 8, 32]}}}
    msg = _space_error({**TINY, "remedies": g})
    assert msg.startswith("remedies.ghost_bn: not accepted with {'ghost_batch': 8}: ")
    g["ghost_bn"]["ghost_batch"]["choices"] = [16, 64, 32]
    parse_space({**TINY, "remedies": g})


def test_measure_keys_are_the_keys_run_measures_reports():
    import torch

    from remedies.measures import MeasureConfig, run_measures
    from remedies.measures.config import measure_keys

    cfg = MeasureConfig.model_validate(
        {
            "keskar": {"eps": [1e-3, 5e-4], "subspace_dims": [3], "iters": 1},
            "lambda_max": {"enabled": True, "k": 2, "max_iter": 8},
            "trace": {"enabled": True, "probes": 2},
            "adaptive": {
                "enabled": True,
                "l2_rho": [0.5],
                "linf_rho": [2e-3, 1e-2],
                "average_rho": [0.05],
                "average_samples": 2,
                "steps": 1,
            },
            "noise_scale": {"enabled": True},
        }
    )
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x, y = torch.randn(24, 4), torch.arange(24) % 3
    values, _ = run_measures(model, x, y, cfg)
    assert sorted(values) == sorted(measure_keys(cfg))  # (families run in registry order)
    assert len(values) == 13  # 4 keskar (2 ε × full, sub3), 2 λ, 2 trace, 4 adaptive, 1 noise
    off = MeasureConfig.model_validate({"keskar": {"full_space": False}})
    assert measure_keys(off) == [] and run_measures(model, x, y, off)[0] == {}


def test_storage_exists_reads_without_creating(tmp_path):
    import sqlite3

    import optuna

    from remedies.stores.optuna_storage import storage_exists

    assert not storage_exists(str(tmp_path / "absent.db"))
    assert not storage_exists(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not storage_exists(str(tmp_path / "no_dir" / "x.db"))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "text.db").write_text("not a database")
    with pytest.raises(ConfigError, match="not a readable SQLite database"):
        storage_exists(str(tmp_path / "text.db"))
    other = tmp_path / "other.db"  # an SQLite file of something else is not a study database
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE t (x)")
    before = other.read_bytes()
    assert not storage_exists(str(other)) and other.read_bytes() == before
    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'real.db'}")
    assert storage_exists(str(tmp_path / "real.db"))
    assert storage_exists("postgresql://user@localhost/db")  # only a connection can tell
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db", "real.db", "text.db"]
