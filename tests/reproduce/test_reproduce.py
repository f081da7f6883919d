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
    assert re.search(rf"\| measured \| .* \| {sum(lb) / len(lb):.2f} ± ", md)
    assert all("suspect" in d and "suspect_why" in d for r in recs for d in r["details"])
    assert any(claim.startswith("F1: LB/SB Keskar") for claim, _, _ in s["checks"])

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
