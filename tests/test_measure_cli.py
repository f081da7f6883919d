"""`remedies measure` and `remedies interpolate` end to end on real checkpoints."""

import json

import pytest

from remedies.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    (d / "run.yaml").write_text(
        f"data: {{name: mnist1d, num_samples: 600, cache_dir: {d / 'cache'}}}\n"
        "model: {name: F1, width: 0.1}\n"
        "train: {batch_size: 32, epochs: 2}\n"
        "measure: {keskar: {eps: [1.0e-3], iters: 3}}\n"
    )
    for name, bs in (("sb", "32"), ("lb", "10%")):
        args = ["--set", f"train.batch_size={bs}", "--out", str(d / name), "--quiet"]
        assert main(["train", str(d / "run.yaml"), *args, "--json", str(d / f"{name}.json")]) == 0
    return d


def test_train_fills_sharpness_and_measure_reproduces_it(runs, capsys):
    s = json.loads((runs / "lb.json").read_text())
    assert (
        set(s["sharpness"]) == {"keskar_full_eps1e-03"}
        and s["sharpness"]["keskar_full_eps1e-03"] > 0
    )
    assert s["sharpness_details"][0]["function_evals"] >= 3
    out = runs / "m.json"
    assert main(["measure", str(runs / "lb/checkpoint.pt"), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    # the same seeded solver on the same weights and data gives the same number
    assert m["sharpness"]["keskar_full_eps1e-03"] == pytest.approx(
        s["sharpness"]["keskar_full_eps1e-03"], rel=1e-6
    )
    capsys.readouterr()
    assert main(["measure", str(runs / "lb/checkpoint.pt"), "--measure", "lambda_max"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["sharpness"]) == {"lambda_max"} and printed["sharpness"]["lambda_max"] > 0


def test_measure_bad_inputs_exit_2(runs, tmp_path, capsys):
    assert main(["measure", str(runs / "lb/checkpoint.pt"), "--measure", "bogus"]) == 2
    assert "measure" in capsys.readouterr().err
    (tmp_path / "x.pt").write_text("not a checkpoint")
    assert main(["measure", str(tmp_path / "x.pt")]) == 2
    assert "checkpoint: cannot read" in capsys.readouterr().err


def test_interpolate_writes_png_and_csv(runs, tmp_path):
    assert (
        main(
            [
                "interpolate",
                str(runs / "sb/checkpoint.pt"),
                str(runs / "lb/checkpoint.pt"),
                "--out",
                str(tmp_path),
                "--path",
                "curved",
            ]
        )
        == 0
    )
    png, csv = tmp_path / "interpolation_curved.png", tmp_path / "interpolation_curved.csv"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = csv.read_text().strip().splitlines()
    assert len(rows) == 26  # header + 25 α points


def test_interpolate_refuses_different_networks(runs, tmp_path, capsys):
    other = tmp_path / "w2"
    assert (
        main(
            [
                "train",
                str(runs / "run.yaml"),
                "--set",
                "model.width=0.2",
                "--set",
                "train.epochs=1",
                "--out",
                str(other),
                "--quiet",
            ]
        )
        == 0
    )
    rc = main(
        [
            "interpolate",
            str(runs / "sb/checkpoint.pt"),
            str(other / "checkpoint.pt"),
            "--out",
            str(tmp_path / "i"),
        ]
    )
    assert rc == 2 and "checkpoint_b:" in capsys.readouterr().err
    assert not (tmp_path / "i").exists()
