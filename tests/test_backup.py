"""`remedies backup` / `restore`: the study and the MLflow backend outlive the head's disk.
Real SQLite stores written by Optuna and MLflow, snapshots in a real S3-compatible server."""

from __future__ import annotations

import shutil

import optuna
import pytest

from remedies.cli import main
from remedies.stores.results_dir import Results


def make_stores(d):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{d / 'studies.db'}")
    for x in (1.0, 2.0, 3.0):
        study.enqueue_trial({"x": x})
        study.optimize(lambda t: t.suggest_float("x", 0, 5) ** 2, n_trials=1)
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{d / 'mlflow.db'}")
    run = c.create_run(c.create_experiment("e", artifact_location=str(d / "art")))
    for step in range(3):
        c.log_metric(run.info.run_id, "val_accuracy", 0.5 + step / 10, step=step)
    c.set_terminated(run.info.run_id)
    return run.info.run_id


def run(capsys, *argv):
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_backup_then_restore_through_s3(s3_server, tmp_path, capsys):
    head, later = tmp_path / "head", tmp_path / "new-head"
    head.mkdir()
    later.mkdir()
    run_id = make_stores(head)
    dest = s3_server.format("backups")
    rc, out, err = run(
        capsys,
        "backup",
        "--storage",
        str(head / "studies.db"),
        "--tracking-db",
        str(head / "mlflow.db"),
        "--to",
        dest,
    )
    assert rc == 0, err
    # a newer set that never finished uploading is not the one restored
    Results(dest).child("99990101T000000Z").write_bytes("studies.db", b"partial")
    shutil.rmtree(head)  # `ray down`
    rc, out, err = run(capsys, "restore", "--from", dest, "--to", str(later))
    assert rc == 0, err
    assert sorted(p.name for p in later.iterdir()) == ["mlflow.db", "studies.db"]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{later / 'studies.db'}")
    assert [t.params["x"] for t in study.trials] == [1.0, 2.0, 3.0]
    from mlflow.tracking import MlflowClient

    got = MlflowClient(f"sqlite:///{later / 'mlflow.db'}")
    assert [m.value for m in got.get_metric_history(run_id, "val_accuracy")] == [0.5, 0.6, 0.7]
    # restoring again over those files needs --force: one line, exit 2, files untouched
    before = (later / "studies.db").read_bytes()
    rc, out, err = run(capsys, "restore", "--from", dest, "--to", str(later))
    assert rc == 2 and err.count("\n") == 1 and err.startswith("remedies: error: --to:"), err
    assert (later / "studies.db").read_bytes() == before


def test_nothing_to_restore_is_not_an_error(s3_server, tmp_path, capsys):
    rc, out, err = run(
        capsys, "restore", "--from", s3_server.format("empty"), "--to", str(tmp_path)
    )
    assert rc == 0 and out.startswith("nothing to restore") and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--storage", "postgresql://u@db/optuna"], "--storage"),
        (["--storage", "absent.db"], "--storage"),
        (["--storage", "studies.db", "--tracking-db", "nope.db"], "--tracking-db"),
        (
            [
                "--storage",
                "studies.db",
                "--to",
                "s3://no-such-bucket/b?endpoint_override={p}&scheme=http",
            ],
            "--to",
        ),
    ],
)
def test_bad_backup_input_is_one_line(s3_server, tmp_path, capsys, monkeypatch, argv, field):
    monkeypatch.chdir(tmp_path)
    make_stores(tmp_path)
    port = s3_server.split("endpoint_override=")[1].split("&")[0]
    argv = [a.format(p=port) for a in argv]
    if "--to" not in argv:
        argv += ["--to", s3_server.format("bad")]
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, out, err = run(capsys, "backup", *argv)
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"remedies: error: {field}:"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
