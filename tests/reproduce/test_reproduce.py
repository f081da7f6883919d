"""`remedies reproduce` end to end on a tiny net: real Ray tasks (the session's Ray when one is
up, else its own local instance, as the CLI does) and a real MLflow server. Checks the files,
the report's sections and numbers against the runs' own records, and that every run's suspect
flags reached MLflow."""

from __future__ import annotations

import json
import re

import pytest

from remedies.reproduce.driver import reproduce
from remedies.reproduce.protocol import ReproduceOptions, plan

pytestmark = pytest.mark.slow


def test_reproduce_writes_the_report_and_logs_every_run(mlflow_server, tmp_path):
    opts = ReproduceOptions(
        seeds=2,
        epochs=2,
        sb=256,
        batch_sizes=[32, 64, "10%"],
        warm_k=[0, 1],
        overrides=["data.num_samples=400", "model.width=0.1", "measure.keskar.iters=3"],
    )
    out = tmp_path / "rep"
    s = reproduce(
        opts,
        out,
        jobs=2,
        tracking_uri=mlflow_server,
        experiment="rep-test",
        quiet=True,
        command="remedies reproduce (test)",
        markdown=tmp_path / "docs" / "reproduction.md",
    )
    md = (tmp_path / "docs" / "reproduction.md").read_text()
    for section in (
        "Table 2",
        "Tables 3 (A = I) and 4",
        "side by side",
        "Distance from",
        "Fig. 3",
        "Fig. 4",
        "Fig. 5",
        "What held and what did not",
    ):
        assert section in md, section
    for png in ("fig3_F1_linear.png", "fig3_F1_curved.png", "fig4_F1.png", "fig5_F1.png"):
        assert (out / png).stat().st_size > 1000
        assert f"](../rep/{png})" in md  # links relative to the Markdown's folder
    recs = json.loads((out / "results.json").read_text())
    assert len(recs) == len(plan(opts)) == 4 + 2 + 1
    assert "7 runs: 7 on cpu" in md  # this box has no GPU: a GPU box says cuda here
    # the table's numbers are the runs' own: LB/SB mean test accuracy, recomputed here
    lb = [
        r["test_accuracy"]
        for r in recs
        if r["batch"] == "10%" and r["warm_k"] == 0 and "table" in r["parts"]
    ]
    assert re.search(rf"\| F1 / MNIST-1D \(this run\) \| .* \| {sum(lb) / len(lb):.2f} ± ", md)
    assert all("suspect" in d and "suspect_why" in d for r in recs for d in r["details"])
    assert any(claim.startswith("F1 / MNIST-1D: LB/SB Keskar") for claim, _, _ in s["checks"])

    from mlflow import MlflowClient

    c = MlflowClient(mlflow_server)
    exp = c.get_experiment_by_name("rep-test")
    runs = c.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "reproduce"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == len(recs)
    arts = {a.path for a in c.list_artifacts(parents[0].info.run_id)}
    assert {"reproduction.md", "results.json", "fig4_F1.png"} <= arts
    for ch in children:
        rec = next(r for r in recs if r["name"] == ch.info.run_name)
        for d in rec["details"]:
            assert ch.data.metrics[f"suspect_{d['key']}"] == float(d["suspect"])
            assert ch.data.metrics[d["key"]] == pytest.approx(d["value"])

    # an invocation cut off after some runs: `--resume` trains only what is missing, and the
    # runs it keeps are the earlier ones, record for record
    kept = sorted((out / "runs").glob("*.pt"))
    assert len(kept) == len(recs)
    gone, others = kept[0], kept[1:]
    gone.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in others}
    again = reproduce(
        opts,
        out,
        jobs=2,
        tracking_uri=mlflow_server,
        experiment="rep-test",
        quiet=True,
        resume=True,
    )
    assert gone.is_file()
    assert {p: p.stat().st_mtime_ns for p in others} == stamps  # not trained again
    recs2 = json.loads((out / "results.json").read_text())
    same = [r["name"] for r in recs2 if r["name"] != gone.stem]
    by_name = {r["name"]: r for r in recs}
    assert all(
        by_name[n]["test_accuracy"] == r["test_accuracy"]
        for r in recs2
        for n in [r["name"]]
        if n in same
    )
    assert again["report"]


def test_reproduce_c1_on_fashion_mnist_labels_every_row_with_its_data_set(mlflow_server, tmp_path):
    """C1 on real images (Debian's Fashion-MNIST): the net is built for 1 × 28 × 28 samples, and
    the report prints its rows as Fashion-MNIST's beside the paper's CIFAR-10 values, labelled
    as such — never as a reproduction on CIFAR-10."""
    opts = ReproduceOptions(
        nets=["C1"],
        data="fashion_mnist",
        seeds=1,
        epochs=3,  # the budget: the stop rule below ends both runs at their first epoch ≥ 20 %
        until_train_acc=20.0,
        sb=64,
        batch_sizes=[64, "10%"],
        warm_k=[0],
        side_by_side=False,
        overrides=["data.subset=1500", "model.width=0.1", "measure.keskar.iters=3"],
    )
    out = tmp_path / "fm"
    s = reproduce(opts, out, jobs=2, tracking_uri=mlflow_server, experiment="rep-fm", quiet=True)
    md = (out / "report.md").read_text()
    recs = json.loads((out / "results.json").read_text())
    assert len(recs) == 2 and {r["config"]["data"]["name"] for r in recs} == {"fashion_mnist"}
    assert {tuple(r["input_shape"]) for r in recs} == {(1, 28, 28)}
    assert recs[0]["n_train"] == 1350  # 1500 − the 10 % validation carve-out
    # trained to the stopping point, not for a count: each run ends at the first epoch whose
    # whole-training-set accuracy reads ≥ 20 %, and the report says where each stopped
    for r in recs:
        reads = [h["train_eval_accuracy"] for h in r["history"]]
        assert r["converged"] is True and reads[-1] >= 20.0 > max(reads[:-1], default=0.0)
        assert r["epochs_run"] == len(reads) <= 3
        assert r["train_accuracy"] == pytest.approx(reads[-1])
    assert "until ≥ 20 % training accuracy (at most 3 epochs)" in md
    assert "Trained until ≥ 20 % training accuracy (whole training set, eval mode" in md
    held = {claim: ok for claim, ok, _ in s["checks"]}
    assert held["C1 / Fashion-MNIST: SB and LB both trained to the stopping point (≥ 20 % "
                "training accuracy) within 3 epochs"]  # fmt: skip
    assert "Reproduction of" not in md.splitlines()[0]
    assert "C1 / Fashion-MNIST instead of CIFAR-10" in md.splitlines()[0]
    assert "## C1 / Fashion-MNIST (1350 training samples; the paper: C1 / CIFAR-10)" in md
    assert "**Not the paper's setting.**" in md and "nothing here reproduces" in md
    # the net was built for the data's shape, and the report says what that changed
    assert "input channels of the first convolution: 1 here, 3 on CIFAR-10" in md
    assert "inputs of the first linear layer: 294 here, 384 on CIFAR-10" in md  # 6 ch × 7² vs 8²
    # Table 2: this run's row and the paper's CIFAR-10 row, each labelled
    lb = next(r for r in recs if r["batch"] == "10%")["test_accuracy"]
    assert re.search(rf"\| C1 / Fashion-MNIST \(this run\) \| .* \| {lb:.2f} ± 0.00 \|", md)
    assert (
        "| C1 / CIFAR-10 (paper) | 99.89 ± 0.02 | 99.66 ± 0.2 | 80.04 ± 0.12 | 77.26 ± 0.42 |" in md
    )
    # Tables 3–4: the measured columns and the paper's are headed with their data sets
    assert "| measure | C1 / Fashion-MNIST (this run): SB | LB |" in md
    assert "| C1 / CIFAR-10 (paper): SB | LB | LB/SB |" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| `keskar_full_eps1e-03`"))
    assert row.endswith("| 28.58 ± 3.13 | 707.23 ± 43.04 | 25× |")
    assert "| measured |" not in md and "paper (C1" not in md
    assert s["checks"] and all(c.startswith("C1 / Fashion-MNIST: ") for c, _, _ in s["checks"])
    assert (out / "fig3_C1_linear.png").stat().st_size > 1000
