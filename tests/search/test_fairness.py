"""Fair comparisons inside a search: ASHA and slow starters, degenerate batches, bad references.

The ASHA case runs a real search (local Ray, Optuna storage, MLflow) on a tiny real problem where
augmentation starts slower than plain LB and ends above it; the plain-LB trial is the search's
first (always a candidate) and runs alone first, so at the rung at epoch 2 it is the only value
ASHA holds — on validation accuracy alone, the augmented trial (below it there) would be cut.
"""

from __future__ import annotations

import pytest
import yaml

from remedies.cli import main
from remedies.config import parse_config
from remedies.engine.schedule import batch_schedule
from remedies.results.report import load_study
from remedies.search.driver import SearchOptions, run_search
from remedies.search.fair import compare_from
from remedies.search.space import parse_space
from remedies.stores import tracking


def cfg(remedies: dict, epochs: int = 20, batch: int | str = 256):
    return parse_config({"train": {"epochs": epochs, "batch_size": batch}, "remedies": remedies})


@pytest.mark.parametrize(
    ("remedies", "first"),
    [
        ({}, 1),
        ({"warm_start": {"fraction": 0.25}}, 5),  # 0.25 · 20 SB epochs
        ({"warm_start": {"epochs": 3}}, 3),
        ({"lr_scaling": {"warmup_epochs": 2.5}}, 3),  # the warm-up ends inside epoch 3
        ({"batch_ramp": {"milestones": [0.5, 0.75]}}, 15),  # the last ramp step at 0.75 · 20
        ({"augment": {}}, 10),  # a regulariser: from half-way
        ({"warm_start": {"fraction": 0.1}, "augment": {}}, 10),  # the latest phase decides
        ({"ghost_bn": {}}, 1),  # no phase: compared from the start
    ],
)
def test_compare_from_is_the_end_of_the_latest_phase(remedies, first):
    assert compare_from(cfg(remedies), n_train=7200) == first


def test_batch_schedule_folds_the_remedies_like_the_trainer():
    sched = batch_schedule(cfg({"batch_ramp": {"factor": 2, "milestones": [0.5, 0.75]}}), 7200)
    assert sched == [64] * 10 + [128] * 5 + [256] * 5
    sched = batch_schedule(cfg({"warm_start": {"sb_batch": 64, "epochs": 2}}, batch="10%"), 7200)
    assert sched == [64, 64] + [720] * 18


SLOW = {
    "name": "slow",
    "base": {
        "data": {"num_samples": 1000},
        "model": {"width": 0.25},
        "train": {"epochs": 10, "batch_size": 90, "lr": 3e-3, "checkpoint": False},
        "measure": {"keskar": {"enabled": False}},
    },
    "remedies": {"augment": {"shift": 0.2, "noise": 0.3, "scale": 0.3}},
    "objectives": [{"name": "val_accuracy", "mode": "max"}],
    "baselines": {"enabled": False},
    "sampler": {"name": "random", "seed": 3},
    "asha": {"enabled": True, "grace_period": 2, "reduction_factor": 2},  # rungs 2, 4, 8
    "num_samples": 2,
    "max_concurrent": 1,
    "resources": {"cpu": 1, "gpu": 0},
}


@pytest.mark.slow
def test_asha_does_not_cut_a_slow_starter_before_its_phase_is_over(
    ray_local, mlflow_server, tmp_path
):
    opts = SearchOptions(
        name="slow-1",
        tracking_uri=mlflow_server,
        storage=str(tmp_path / "s.db"),
        results_dir=str(tmp_path / "ray"),
        quiet=True,
    )
    run_search(parse_space(SLOW), opts)
    study = load_study("slow-1", str(tmp_path / "s.db"))
    plain, aug = study.trials
    assert plain.params == {"remedy.augment": False}  # plain LB: always the first candidate
    assert aug.params == {"remedy.augment": True}
    val = {}
    for t in (plain, aug):
        hist = tracking.metric_history(mlflow_server, t.user_attrs["mlflow_run_id"], "val_accuracy")
        val[t.number] = dict(hist)
    # the premise: at the first rung the augmented trial is below plain LB (ASHA, holding only
    # plain's value there, would stop it) and at the end it beats plain LB
    assert val[1][2] < val[0][2]
    assert aug.user_attrs["val_accuracy"] > plain.user_attrs["val_accuracy"]
    # the rule: it was compared only from epoch 5 (half its budget), so it ran to the end
    assert aug.user_attrs["state"] == "complete" and aug.user_attrs["epochs_run"] == 10
    assert plain.user_attrs["state"] == "complete"


def _search(tmp_path, monkeypatch, capsys, space: dict) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    capsys.readouterr()
    code = main(["search", "space.yaml", "--quiet"])
    return code, capsys.readouterr().err


BASE = {
    "data": {"num_samples": 1000},
    "model": {"width": 0.1},
    "train": {"epochs": 4, "batch_size": 32},
    "measure": {"keskar": {"enabled": False}},
}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (
            {
                "remedies": {
                    "batch_ramp": {
                        "factor": {"type": "int", "low": 2, "high": 4},
                        "milestones": [0.5],
                    }
                }
            },
            "remedies.batch_ramp",
            "trains on batches of 8 samples",
        ),
        (
            {"params": {"train.batch_size": {"type": "categorical", "choices": [64, 8]}}},
            "params.train.batch_size",
            "trains on batches of 8 samples",
        ),
        (
            {
                "objectives": [{"name": "gap_closed", "mode": "max"}],
                "baselines": {"enabled": False},
            },
            "objectives[0].name",
            "needs the search's baselines",
        ),
        (
            {
                "constraints": [{"name": "speedup_vs_sb", "op": ">=", "value": 2}],
                "sampler": {"name": "random"},
            },
            "constraints",
            "the random sampler ignores constraints",
        ),
        (
            {"constraints": [{"name": "speedup_vs_sb", "op": "=>", "value": 2}]},
            "constraints[0].op",
            "'>=' or '<='",
        ),
        ({"baselines": {"sb_batch": 8}}, "baselines.sb_batch", "greater than or equal to 16"),
    ],
)
def test_degenerate_or_unanswerable_spaces_are_refused(
    tmp_path, monkeypatch, capsys, change, field, says
):
    space = {
        "name": "bad",
        "base": BASE,
        "objectives": [{"name": "val_accuracy", "mode": "max"}],
        "num_samples": 1,
        **change,
    }
    code, err = _search(tmp_path, monkeypatch, capsys, space)
    assert code == 2, err
    assert err.count("\n") == 1 and field in err and says in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]  # nothing created
