"""`--results-dir` on an S3-compatible store (a real moto server): Tune's folders and each trial's
saved training state live there, so a retried trial resumes from what it saved — not from a
local disk another node would not have."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from remedies.cli import main
from remedies.search.driver import SearchOptions, run_search
from remedies.search.space import parse_space
from remedies.stores.results_dir import Results
from tests.search.consistency import assert_consistent
from tests.search.test_search_e2e import TINY, crash_once


@pytest.mark.slow
def test_search_keeps_its_state_in_s3(ray_local, mlflow_server, s3_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = {**TINY, "name": "s3", "num_samples": 2, "asha": {"enabled": False}, "remedies": {}}
    storage = str(tmp_path / "studies.db")
    uri = s3_server.format("runs")
    raw["base"] = {**raw["base"], "model": crash_once(tmp_path, raw, after_epoch=1)}
    opts = SearchOptions(
        name="s3-1", tracking_uri=mlflow_server, storage=storage, results_dir=uri, quiet=True
    )
    assert run_search(parse_space(raw), opts).exit_code == 0
    got = assert_consistent(storage, mlflow_server, "s3", "s3-1", 2)
    # the retry found the state the first attempt saved in the bucket
    assert [r.data.tags["attempt_resumed_at_epoch"] for r in got["runs"].values()] == ["1", "1"]
    fs, base = Results(uri).child("s3-1").filesystem()
    keys = [f.path for f in fs.get_file_info(pafs.FileSelector(base, recursive=True))]
    assert any("/attempt-1/" in k for k in keys), keys[:10]  # Tune's own files are there too
    assert not [k for k in keys if k.endswith("state.pt")], "decided trials keep no state"
    assert not (tmp_path / "ray_results").exists()


@pytest.mark.slow
def test_a_retry_resumes_from_the_last_checkpoint(
    ray_local, mlflow_server, s3_server, tmp_path, monkeypatch
):
    """`checkpoint_every: {epochs: 3}` and a fault after epoch 5: the retry continues from
    epoch 3 (the work since is what is lost), in the same run, every step 1–6 logged once."""
    monkeypatch.chdir(tmp_path)
    raw = {
        **TINY,
        "name": "ck",
        "num_samples": 1,
        "asha": {"enabled": False},
        "remedies": {},
        "checkpoint_every": {"epochs": 3},
    }
    raw["base"] = {**raw["base"], "train": {**raw["base"]["train"], "epochs": 6}}
    storage = str(tmp_path / "studies.db")
    raw["base"] = {**raw["base"], "model": crash_once(tmp_path, raw, after_epoch=5)}
    opts = SearchOptions(
        name="ck-1",
        tracking_uri=mlflow_server,
        storage=storage,
        results_dir=s3_server.format("ck"),
        quiet=True,
    )
    assert run_search(parse_space(raw), opts).exit_code == 0
    got = assert_consistent(storage, mlflow_server, "ck", "ck-1", 1)
    (run,) = got["runs"].values()
    assert (run.data.tags["attempt"], run.data.tags["attempt_resumed_at_epoch"]) == ("2", "3")


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("s3://no-such-bucket/x?endpoint_override={port}&scheme=http", "does not exist"),
        ("s3://remedies-test/x?endpoint_override=127.0.0.1:9&scheme=http", "cannot use it"),
        ("ftp://127.0.0.1/x", "cannot use it"),
    ],
)
def test_unusable_results_store_is_one_line(s3_server, tmp_path, monkeypatch, capsys, where, why):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(
        "name: x\nbase: {data: {num_samples: 200}, model: {width: 0.1}, train: {epochs: 1}}\n"
    )
    port = s3_server.split("endpoint_override=")[1].split("&")[0]
    capsys.readouterr()
    rc = main(
        [
            "search",
            "space.yaml",
            "--results-dir",
            where.format(port=port),
            "--storage",
            "s.db",
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'm.db'}",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("remedies: error: --results-dir:")
    assert why in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]


@pytest.fixture(scope="module")
def locked_s3(tmp_path_factory):
    """An S3-compatible server that checks credentials (moto with IAM auth on after its first
    request, which creates the bucket): the environment's keys are not among its users."""
    import os

    import boto3

    from tests.conftest import start_moto

    proc, port = start_moto(
        tmp_path_factory.mktemp("moto-auth"), {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "1"}
    )
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="locked")
    yield f"s3://locked/x?endpoint_override=127.0.0.1:{port}&scheme=http"
    proc.terminate()
    proc.wait(timeout=20)


def test_unauthorised_results_store_is_one_line(locked_s3, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(
        "name: x\nbase: {data: {num_samples: 200}, model: {width: 0.1}, train: {epochs: 1}}\n"
    )
    capsys.readouterr()
    rc = main(
        [
            "search",
            "space.yaml",
            "--results-dir",
            locked_s3,
            "--storage",
            "s.db",
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'm.db'}",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("remedies: error: --results-dir:")
    assert "ACCESS_DENIED" in err and "cannot use it" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]
