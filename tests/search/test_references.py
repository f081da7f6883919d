"""Baselines inside a search, on real components (local Ray, a real `mlflow server`, Optuna
storage) and tiny real runs — no injected accuracies.

Checked against what MLflow logged for the reference runs (an independent record of them): the
speedup and gap-closed arithmetic of every trial, that the references never enter the front or an
export, that a constraint is honoured by `export --pick`, and that the report answers.
"""

from __future__ import annotations

import math

import optuna
import pytest
import yaml

from remedies.cli import main
from remedies.results.report import front_rows, load_study, text_report
from remedies.results.rows import trial_rows
from remedies.search.driver import SearchOptions, run_search
from remedies.search.space import parse_space
from remedies.stores import tracking

N = 4
SPACE = {
    "name": "refs",
    "base": {
        "data": {"num_samples": 1000},
        "model": {"width": 0.1},
        "train": {"epochs": 3, "batch_size": 128, "checkpoint": False, "lr": 3e-3},
        "measure": {"keskar": {"eps": [1e-3], "iters": 2}, "max_samples": 100},
    },
    "params": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "remedies": {
        "augment": {"noise": {"type": "float", "low": 0.0, "high": 0.2}},
        "sam": {"rho": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
    },
    "objectives": [
        {"name": "val_accuracy", "mode": "max"},
        {"name": "speedup_vs_sb", "mode": "max"},
    ],
    "constraints": [{"name": "speedup_vs_sb", "op": ">=", "value": 1.0}],
    "baselines": {"sb_batch": 32, "lr_factors": [0.5, 1.0]},
    "sampler": {"name": "tpe", "seed": 1, "n_startup_trials": 2},
    "asha": {"enabled": False},
    "num_samples": N,
    "max_concurrent": 2,
    "resources": {"cpu": 1, "gpu": 0},
}


def to_target_from_mlflow(uri: str, run_id: str, target: float) -> tuple[float, float] | None:
    """(steps, cumulative training CPU s) at the first logged epoch at or above `target`."""
    val = dict(tracking.metric_history(uri, run_id, "val_accuracy"))
    cpu = dict(tracking.metric_history(uri, run_id, "train_cpu_s"))
    steps = dict(tracking.metric_history(uri, run_id, "steps"))
    total = 0.0
    for e in sorted(val):
        total += cpu[e]
        if val[e] >= target:
            return steps[e], total
    return None


@pytest.fixture(scope="module")
def searched(ray_local, mlflow_server, tmp_path_factory):
    d = tmp_path_factory.mktemp("refs")
    storage = str(d / "studies.db")
    opts = SearchOptions(
        name="refs-1",
        tracking_uri=mlflow_server,
        storage=storage,
        results_dir=str(d / "ray"),
        quiet=True,
    )
    summary = run_search(parse_space(SPACE), opts)
    return summary, load_study("refs-1", storage), storage, d


@pytest.mark.slow
def test_references_are_logged_and_every_trial_is_scored_against_them(searched, mlflow_server):
    summary, study, _, _ = searched
    parent = study.user_attrs["mlflow_parent_run_id"]
    refs = study.user_attrs["references"]
    runs = tracking.child_runs(mlflow_server, "refs", parent, role="reference")
    assert sorted(r.data.tags["reference"] for r in runs) == ["lb", "sb", "sb"]
    assert len(tracking.child_runs(mlflow_server, "refs", parent)) == N  # trials only
    logged = {r.info.run_id: r for r in runs}
    # the SB reference is the sweep's best validation accuracy, as MLflow logged it
    sbs = [r for r in runs if r.data.tags["reference"] == "sb"]
    best = max(sbs, key=lambda r: r.data.metrics["final_val_accuracy"])
    assert refs["sb"]["run_id"] == best.info.run_id and best.data.tags["selected"] == "True"
    assert sorted(float(r.data.params["train.lr"]) for r in sbs) == pytest.approx([1.5e-3, 3e-3])
    assert all(r.data.params["train.batch_size"] == "32" for r in sbs)
    lb = next(r for r in runs if r.data.tags["reference"] == "lb")
    assert lb.data.params["train.batch_size"] == "128" and lb.data.params["remedies"] == "{}"
    # same threads as the trials (resources.cpu = 1 → 1), recorded with the time
    assert all(r.data.metrics["final_threads"] == 1 for r in runs)
    sb_m, lb_m = logged[refs["sb"]["run_id"]].data.metrics, lb.data.metrics

    trials = {
        k.data.tags["trial_number"]: k for k in tracking.child_runs(mlflow_server, "refs", parent)
    }
    done = [r for r in trial_rows(study) if r["state"] == "COMPLETE"]
    assert len(done) == N
    # the target: SB's best validation accuracy over its epochs, less one standard error
    sb_best = max(
        v for _, v in tracking.metric_history(mlflow_server, refs["sb"]["run_id"], "val_accuracy")
    )
    p = sb_best / 100
    target = sb_best - 100 * math.sqrt(p * (1 - p) / refs["n_val"])
    assert refs["target"]["accuracy"] == pytest.approx(target)
    reached = 0
    for r in done:
        m = trials[str(r["number"])].data.metrics
        assert m["final_threads"] == 1
        # training time alone: the measure is apart, and both fit in the wall time
        assert 0 < m["final_train_time_s"] and 0 < m["final_measure_time_s"]
        assert m["final_train_time_s"] + m["final_measure_time_s"] <= m["final_wall_time_s"]
        assert m["final_epochs"] == 3 and m["final_steps"] == 3 * (720 // 128)
        # on CPU the speedup is a ratio of CPU times (load elsewhere cannot inflate them);
        # the wall-clock ratio is reported beside it
        speed = sb_m["final_train_cpu_s"] / m["final_train_cpu_s"]
        assert m["final_speedup_vs_sb_budget"] == pytest.approx(speed, rel=1e-9)
        assert r["metrics"]["speedup_vs_sb_budget"] == pytest.approx(speed, rel=1e-9)
        # the default speed-up is to SB's accuracy, from the runs' per-epoch MLflow histories
        # (an independent record of the curves the trial and SB reported)
        to_sb = to_target_from_mlflow(mlflow_server, refs["sb"]["run_id"], target)
        to_me = to_target_from_mlflow(mlflow_server, trials[str(r["number"])].info.run_id, target)
        if to_me is None:  # never reached: no speed-up, infeasible for the constraint
            assert m["final_speedup_vs_sb"] == 0 == r["metrics"]["speedup_vs_sb"]
            assert m["final_reached_target"] == 0 and "final_steps_to_target" not in m
            assert study.trials[r["number"]].constraints == {"speedup_vs_sb >= 1": 1.0}
            continue
        reached += 1
        assert to_sb is not None  # SB's best epoch is at or above its own target
        to_speed = to_sb[1] / to_me[1]
        assert m["final_speedup_vs_sb"] == pytest.approx(to_speed, rel=1e-6)
        assert m["final_steps_to_target"] == to_me[0]
        assert m["final_steps_ratio_to_target"] == pytest.approx(to_sb[0] / to_me[0])
        assert m["final_batch_ratio"] == 128 / 32
        eff = (to_sb[0] / to_me[0]) / 4
        assert m["final_scaling_efficiency"] == pytest.approx(eff)
        wall = sb_m["final_train_time_s"] / m["final_train_time_s"]
        assert m["final_speedup_vs_sb_wall"] == pytest.approx(wall, rel=1e-9)
        steps = sb_m["final_steps"] / m["final_steps"]  # hardware-free, from MLflow's record
        assert m["final_steps_ratio_vs_sb"] == pytest.approx(steps, rel=1e-12)
        assert 0 < m["final_train_cpu_s"]
        sb_v, lb_v = sb_m["final_val_accuracy"], lb_m["final_val_accuracy"]
        if sb_v > lb_v:
            gap = (m["final_val_accuracy"] - lb_v) / (sb_v - lb_v)
            assert m["final_gap_closed"] == pytest.approx(gap, rel=1e-9)
        else:  # undefined, and said so
            assert "final_gap_closed" not in m and r["metrics"]["gap_closed"] is None
            assert "gap_closed is undefined" in text_report(study)
        # what Optuna's constrained samplers read: the violation 1.0 − speedup
        t = study.trials[r["number"]]
        assert t.constraints == {"speedup_vs_sb >= 1": pytest.approx(1.0 - to_speed, abs=1e-6)}
    assert reached >= 1  # the check above must have run on at least one trial
    # plain LB is always a candidate: the first trial has every remedy off
    first = study.trials[0].params
    assert first.get("remedy.augment") is False and first.get("remedy.sam") is False


@pytest.mark.slow
def test_references_never_enter_the_front_or_an_export(searched, mlflow_server, tmp_path):
    summary, study, storage, _ = searched
    parent = study.user_attrs["mlflow_parent_run_id"]
    ref_ids = {
        r.info.run_id for r in tracking.child_runs(mlflow_server, "refs", parent, role="reference")
    }
    _, front = front_rows(study)
    assert front and not {r["mlflow_run"] for r in front} & ref_ids
    assert all(r["constraints"][0] <= 0 for r in front)  # the front holds feasible trials
    out = tmp_path / "all"
    assert (
        main(
            [
                "export",
                "refs-1",
                "--storage",
                storage,
                "--pick",
                "pareto",
                "--out",
                str(tmp_path / "p.yaml"),
                "--all-pareto",
                str(out),
            ]
        )
        == 0
    )
    for f in out.glob("*.yaml"):
        assert not any(i in f.read_text() for i in ref_ids)
    arts = {a.path for a in tracking.client(mlflow_server).list_artifacts(parent)}
    assert {"gap_vs_speedup.png", "answer.txt"} <= arts
    assert "best recipe: trial" in summary.answer
    assert tracking.client(mlflow_server).get_run(parent).data.tags["answer"] == summary.answer


@pytest.mark.slow
def test_export_pick_honours_a_constraint(searched, tmp_path, capsys):
    _, study, storage, _ = searched
    done = [r for r in trial_rows(study) if r["state"] == "COMPLETE"]
    speeds = sorted(r["metrics"]["speedup_vs_sb"] for r in done)
    bar = speeds[len(speeds) // 2]  # half the trials fall short of it
    ok = [r for r in done if r["metrics"]["speedup_vs_sb"] >= bar]
    assert 0 < len(ok) < len(done)
    want = max(ok, key=lambda r: r["val_accuracy"])
    out = tmp_path / "pick.yaml"
    rule = f"max val_accuracy where speedup_vs_sb >= {bar!r}"
    assert main(["export", "refs-1", "--storage", storage, "--pick", rule, "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith(f"# exported from search 'refs-1', trial {want['number']} ")
    assert f"pick: {rule}\n" in text
    assert yaml.safe_load(text)["train"]["lr"] == pytest.approx(want["params"]["train.lr"])
    # a rule nothing satisfies, and a malformed one: one line, exit 2, nothing written
    capsys.readouterr()
    bad = tmp_path / "none.yaml"
    never = "max val_accuracy where speedup_vs_sb >= 1e9"
    assert main(["export", "refs-1", "--storage", storage, "--pick", never, "--out", str(bad)]) == 2
    assert "no completed trial" in capsys.readouterr().err and not bad.exists()
    assert (
        main(
            [
                "export",
                "refs-1",
                "--storage",
                storage,
                "--pick",
                "best val_accuracy",
                "--out",
                str(bad),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pick" in err and not bad.exists()


@pytest.mark.slow
def test_report_answers_with_references_and_standard_error(searched):
    _, study, _, _ = searched
    text = text_report(study)
    refs = study.user_attrs["references"]
    n = refs["n_val"]
    assert n == 80
    p = refs["sb"]["val_accuracy"] / 100
    se = 100 * math.sqrt(p * (1 - p) / n)
    assert f"{refs['sb']['val_accuracy']:6.2f} ± {se:.2f} %" in text
    assert "best recipe: trial" in text and "× faster than SB" in text
    assert optuna.trial.TrialState.COMPLETE in [t.state for t in study.trials]


@pytest.mark.slow
def test_confirm_seeds_re_trains_the_candidates_and_picks_on_mean_val(searched, tmp_path, capsys):
    import json
    import re
    import statistics

    _, study, storage, _ = searched
    out = tmp_path / "c.yaml"
    capsys.readouterr()
    assert (
        main(
            [
                "export",
                "refs-1",
                "--storage",
                storage,
                "--pick",
                "max val_accuracy where speedup_vs_sb >= 0",
                "--confirm-seeds",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    seen = {
        int(n): float(v) for n, v in re.findall(r"confirm trial (\d+), seed 1: val ([\d.]+)", err)
    }
    assert len(seen) == 3  # the top three candidates, one extra seed each
    text = out.read_text()
    chosen = int(text.split("trial ", 1)[1].split(" ", 1)[0])
    rows = {t.number: t.user_attrs["val_accuracy"] for t in study.trials}
    means = {n: statistics.mean([rows[n], v]) for n, v in seen.items()}
    assert chosen == max(means, key=means.get)
    assert "# confirmed over seeds [0, 1]: val " in text
    assert f"# answer: trial {chosen}, " in text and "% test over seeds [0, 1] (SB " in text
    # the seed-1 value is what `remedies train` of the export gives with seed 1 (same threads)
    capsys.readouterr()
    assert main(["train", str(out), "--set", "train.seed=1", "--quiet"]) == 0
    got = json.loads(capsys.readouterr().out)["val_accuracy"]
    assert got == pytest.approx(seen[chosen], abs=0.01)


def test_references_of_a_base_without_an_lr_use_the_run_configs_default():
    """A base that leaves `train.lr` to the default (a model/data factory space, say): every
    reference carries the lr it trains with, the SB sweep around that default."""
    from remedies.config import parse_config
    from remedies.search.references import reference_configs
    from remedies.search.space import parse_space

    space = parse_space(
        {"name": "nolr", "base": {"data": {"num_samples": 200}, "train": {"epochs": 1}}}
    )
    default = parse_config({}).train.lr
    got = [
        (key.split("-")[0], cfg["train"]["lr"], cfg["train"]["threads"])
        for key, cfg in reference_configs(space, threads=3)
    ]
    factors = space.baselines.lr_factors
    assert got == [("sb", default * f, 3) for f in factors] + [("lb", default, 3)]


def test_data_parallel_spaces_time_sb_on_their_worker_counts():
    """Trials on 2 or 4 workers: SB is also timed on 2 and 4 (each splits SB's batch), at the
    base lr; a space of one-process trials runs no such reference. A trial's speed-up is then
    wall clock against SB's fastest worker count, whichever it is."""
    from remedies.search.references import reference_configs
    from remedies.search.scores import scores
    from remedies.search.space import parse_space

    base = {"data": {"num_samples": 200}, "train": {"epochs": 1, "lr": 0.01}}
    dp = parse_space(
        {
            "name": "dp",
            "base": base,
            "params": {"train.workers": {"type": "categorical", "choices": [1, 2, 4]}},
        }
    )
    got = [(k, c["train"]["workers"], c["train"]["lr"]) for k, c in reference_configs(dp, 1)]
    assert [g for g in got if g[0].startswith("sbspeed")] == [
        ("sbspeed-w2-lr0.01", 2, 0.01),
        ("sbspeed-w4-lr0.01", 4, 0.01),
    ]
    one = parse_space({"name": "one", "base": base})
    assert not [k for k, _ in reference_configs(one, 1) if k.startswith("sbspeed")]

    sb = {"train_time_s": 10.0, "train_cpu_s": 9.0, "device": "cpu", "steps": 400}
    trial = {"train_time_s": 4.0, "train_cpu_s": 7.0, "device": "cpu", "steps": 40}
    alone = scores({"sb": sb}, trial)
    assert alone["speedup_vs_sb"] == 9.0 / 7.0 and alone["speedup_vs_sb_wall"] == 10.0 / 4.0
    speed = [{"workers": 2, "train_time_s": 6.0}, {"workers": 4, "train_time_s": 8.0}]
    dp_scores = scores({"sb": sb, "sb_speed": speed}, trial)
    assert dp_scores["speedup_vs_sb"] == dp_scores["speedup_vs_sb_wall"] == 6.0 / 4.0
    assert dp_scores["steps_ratio_vs_sb"] == 10.0
    slower = [{"workers": 2, "train_time_s": 12.0}]  # SB does not scale: one worker is fastest
    assert scores({"sb": sb, "sb_speed": slower}, trial)["speedup_vs_sb"] == 10.0 / 4.0
