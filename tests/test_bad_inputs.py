"""A corpus of bad inputs through the real CLI: each one exits 2 with one stderr line that names
the field, and leaves the working folder exactly as it was (no file, no database, no run).

Every case writes its own inputs into tmp_path (the working directory), then the folder is
fingerprinted (every path, with the size and hash of every file) before and after the command.
The data cache lives outside tmp_path, pre-filled, so loading data writes nothing either.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

from remedies.cli import main
from tests.helpers import write_cifar10, write_mnist, write_npz

RUN = {
    "data": {"name": "mnist1d", "num_samples": 200},
    "model": {"name": "F1", "width": 0.1},
    "train": {"epochs": 1, "batch_size": 32},
    "measure": {"keskar": {"enabled": False}},
}
SPACE = {
    "name": "tiny",
    "base": {**RUN, "measure": {"keskar": {"eps": [1e-3], "iters": 1}}},
    "params": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    "remedies": {"sam": {"rho": {"type": "float", "low": 0.01, "high": 0.5, "log": True}}},
    "num_samples": 1,
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The MNIST-1D cache (200 samples), generated once, outside every case's folder."""
    from remedies.config import DataConfig
    from remedies.data import load_data

    d = tmp_path_factory.mktemp("cache")
    load_data(DataConfig(name="mnist1d", num_samples=200, cache_dir=d))
    return d


@pytest.fixture(scope="module")
def checkpoint(cache, tmp_path_factory) -> Path:
    """A real (tiny) checkpoint, trained once, outside every case's folder."""
    d = tmp_path_factory.mktemp("ckpt")
    run = {**RUN, "data": {**RUN["data"], "cache_dir": str(cache)}}
    (d / "run.yaml").write_text(yaml.safe_dump(run))
    assert main(["train", str(d / "run.yaml"), "--out", str(d), "--quiet"]) == 0
    return d / "checkpoint.pt"


# ------------------------------------------------------------------------------ input writers


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_yaml(tmp: Path, change: dict | None = None, text: str | None = None) -> str:
    p = tmp / "run.yaml"
    p.write_text(text if text is not None else yaml.safe_dump(_merge(RUN, change or {})))
    return str(p)


def npz_run(tmp: Path, data: dict | None = None, **arrays) -> str:
    """run.yaml on an npz this case wrote (10 classes, 200 + 50 samples of 40 features)."""
    p = write_npz(tmp / "d.npz", **arrays)
    return run_yaml(tmp, {"data": {"name": "npz", "path": str(p), **(data or {})}})


def space_yaml(tmp: Path, change: dict | None = None, text: str | None = None) -> str:
    p = tmp / "space.yaml"
    raw = _merge(SPACE, change or {})
    p.write_text(
        text
        if text is not None
        else yaml.safe_dump({k: v for k, v in raw.items() if v is not None})
    )
    return str(p)


def search(tmp: Path, *flags: str) -> list[str]:
    """`remedies search` on a valid space, its MLflow and Optuna databases inside tmp."""
    return [
        "search",
        space_yaml(tmp),
        "--tracking-uri",
        f"sqlite:///{tmp / 'mlflow.db'}",
        "--storage",
        str(tmp / "studies.db"),
        "--results-dir",
        str(tmp / "ray"),
        "--quiet",
        *flags,
    ]


def search_space(change: dict) -> Callable[[Path], list[str]]:
    """`remedies search` on a space file with `change` merged in."""

    def build(tmp: Path) -> list[str]:
        return [
            "search",
            space_yaml(tmp, change),
            "--tracking-uri",
            f"sqlite:///{tmp / 'mlflow.db'}",
            "--storage",
            str(tmp / "studies.db"),
        ]

    return build


def study(tmp: Path, name: str = "other", metrics: bool = False) -> str:
    """A real study database holding one search `name` (no trials)."""
    url = f"sqlite:///{tmp / 'studies.db'}"
    s = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
    if metrics:
        s.set_user_attr("metrics", ["val_accuracy", "keskar_full_eps1e-03"])
        s.set_user_attr("modes", ["max", "min"])
    return str(tmp / "studies.db")


def cut(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _npz_cut(tmp: Path) -> str:
    run = npz_run(tmp)
    cut(tmp / "d.npz")
    return run


def _label_99(tmp: Path) -> str:
    y = np.arange(200) % 10
    y[7] = 99
    return npz_run(tmp, y_train=y)


def _nan(tmp: Path) -> str:
    x = np.zeros((200, 40), np.float32)
    x[3, 5] = np.nan
    return npz_run(tmp, x_train=x)


def _mnist_cut(tmp: Path) -> str:
    write_mnist(tmp / "m", gz=True)
    cut(tmp / "m/MNIST/raw/t10k-labels-idx1-ubyte.gz")
    return run_yaml(tmp, {"data": {"name": "mnist", "path": str(tmp / "m")}})


def _fashion_bad(tmp: Path) -> str:
    """A Fashion-MNIST folder with its label files but not its images."""
    write_mnist(tmp / "m", gz=True)
    for f in (tmp / "m/MNIST/raw").glob("*images*"):
        f.unlink()
    return run_yaml(tmp, {"data": {"name": "fashion_mnist", "path": str(tmp / "m/MNIST/raw")}})


def _cifar_cut(tmp: Path) -> str:
    write_cifar10(tmp / "c")
    cut(tmp / "c/cifar-10-batches-py/test_batch")
    return run_yaml(tmp, {"data": {"name": "cifar10", "path": str(tmp / "c")}})


DIST = {"type": "float", "low": 1e-2, "high": 1e-4}
MIDDLE = {"type": "categorical", "choices": [32, 0, 64]}
EPS5 = [{"name": "val_accuracy", "mode": "max"}, {"name": "keskar_full_eps5e-04", "mode": "min"}]
GHOST = {"ghost_bn": {"ghost_batch": {"type": "categorical", "choices": [16, 4, 32]}}}

# (argv builder, the field the error line must start with)
CASES = [
    # ---------------------------------------------------------------- run config: train/validate
    pytest.param(
        lambda t: ["train", run_yaml(t, {"train": {"epochz": 3}})],
        "train.epochz",
        id="train-unknown-key",
    ),
    pytest.param(
        lambda t: ["validate", run_yaml(t, {"train": {"lr": "fast"}})],
        "train.lr",
        id="validate-wrong-type",
    ),
    pytest.param(
        lambda t: ["train", run_yaml(t, {"train": {"epochs": 0}})],
        "train.epochs",
        id="train-out-of-range",
    ),
    pytest.param(
        lambda t: ["validate", run_yaml(t, {"train": {"batch_size": 100_000}})],
        "train.batch_size",
        id="validate-batch-larger-than-data",
    ),
    pytest.param(
        lambda t: [
            "train",
            run_yaml(t, {"train": {"batch_size": 1000}}),
            "--out",
            str(t / "out"),
            "--json",
            str(t / "s.json"),
        ],
        "train.batch_size",
        id="train-batch-larger-than-data",
    ),
    pytest.param(
        lambda t: ["validate", run_yaml(t, text="train: {epochs: 2\n")],
        "config",
        id="validate-yaml-syntax",
    ),
    pytest.param(
        lambda t: ["train", run_yaml(t, text="- data\n- model\n")],
        "config",
        id="train-not-a-mapping",
    ),
    pytest.param(
        lambda t: ["validate", str(t / "absent.yaml")], "config", id="validate-missing-file"
    ),
    pytest.param(
        lambda t: ["train", run_yaml(t), "--set", "train.lr"], "--set", id="train-bad-set"
    ),
    pytest.param(
        lambda t: ["validate", run_yaml(t, {"model": {"name": "F9"}})],
        "model.name",
        id="validate-unknown-model",
    ),
    pytest.param(
        lambda t: ["train", run_yaml(t, {"remedies": {"samm": {}}})],
        "remedies.samm",
        id="train-unknown-remedy",
    ),
    pytest.param(
        lambda t: ["validate", run_yaml(t, {"remedies": {"sam": {"rho": -1}}})],
        "remedies.sam.rho",
        id="validate-bad-remedy-param",
    ),
    pytest.param(
        lambda t: ["validate", run_yaml(t, {"data": {"num_classes": 1}})],
        "data.num_classes",
        id="validate-num-classes-1",
    ),
    # ------------------------------------------------------------------------------ data files
    pytest.param(
        lambda t: ["train", _npz_cut(t), "--out", str(t / "o")],
        "data.path",
        id="train-truncated-npz",
    ),
    pytest.param(
        lambda t: ["validate", npz_run(t, y_test=None)],
        "data.path",
        id="validate-npz-missing-array",
    ),
    pytest.param(lambda t: ["train", _label_99(t)], "data", id="train-label-99-of-10"),
    pytest.param(
        lambda t: ["validate", npz_run(t, {"num_classes": 5})],
        "data.num_classes",
        id="validate-label-beyond-num-classes",
    ),
    pytest.param(lambda t: ["validate", _nan(t)], "data", id="validate-nan-features"),
    pytest.param(
        lambda t: ["validate", run_yaml(t, {"data": {"name": "npz", "path": str(t / "no.npz")}})],
        "data.path",
        id="validate-npz-absent",
    ),
    pytest.param(lambda t: ["validate", _mnist_cut(t)], "data.path", id="validate-mnist-cut-gz"),
    pytest.param(lambda t: ["train", _cifar_cut(t)], "data.path", id="train-cifar-cut-pickle"),
    pytest.param(
        lambda t: ["train", _fashion_bad(t)], "data.path", id="train-fashion-mnist-bad-folder"
    ),
    pytest.param(
        lambda t: ["train", run_yaml(t, {"data": {"name": "idx", "path": str(t)}})],
        "data.path",
        id="train-idx-folder-without-files",
    ),
    pytest.param(
        lambda t: ["train", run_yaml(t), "--set", "train.precision=fp16"],
        "train.precision",
        id="train-fp16-without-gpu",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 runs here"),
    ),
    pytest.param(
        lambda t: ["validate", run_yaml(t, {"train": {"precision": "fp16", "device": "cpu"}})],
        "train.precision",
        id="validate-fp16-on-cpu",
    ),
    pytest.param(
        lambda t: ["validate", run_yaml(t, {"train": {"precision": "half"}})],
        "train.precision",
        id="validate-unknown-precision",
    ),
    # ------------------------------------------------------------------------------ space files
    pytest.param(
        search_space({"objectives": [{"name": "accuracy", "mode": "max"}]}),
        "objectives[0].name",
        id="search-unknown-objective",
    ),
    pytest.param(
        search_space({"objectives": EPS5}), "objectives[1].name", id="search-objective-not-measured"
    ),
    pytest.param(
        search_space({"params": {"train.lr": DIST}}),
        "params.train.lr",
        id="search-bad-distribution",
    ),
    pytest.param(
        search_space({"params": {"train.batch_size": MIDDLE}}),
        "params.train.batch_size",
        id="search-bad-middle-choice",
    ),
    pytest.param(
        search_space({"sampler": {"name": "bayes"}}), "sampler.name", id="search-unknown-sampler"
    ),
    pytest.param(
        search_space({"remedies": {"samm": {}}}), "remedies.samm", id="search-unknown-remedy"
    ),
    pytest.param(
        search_space({"remedies": {"sam": {"rho": {"type": "float", "low": 0.1, "high": 9.0}}}}),
        "remedies.sam",
        id="search-bad-remedy-param",
    ),
    pytest.param(
        search_space({"remedies": GHOST}), "remedies.ghost_bn", id="search-bad-middle-remedy-choice"
    ),
    pytest.param(search_space({"samplr": {}}), "samplr", id="search-unknown-key"),
    pytest.param(
        search_space({"base": {"train": {"epochz": 1}}}), "base.train.epochz", id="search-bad-base"
    ),
    pytest.param(
        search_space({"baselines": {"target": {"tolerance": -0.5}}}),
        "baselines.target",
        id="search-target-tolerance-negative",
    ),
    pytest.param(
        search_space({"baselines": {"target": {"accuracy": 101}}}),
        "baselines.target",
        id="search-target-above-100",
    ),
    pytest.param(
        search_space(
            {  # placeable on any Ray the suite has up: 2 workers × 0.5 CPU, no GPU
                "resources": {"workers": 2, "cpu": 0.5, "gpu": 0},
                "params": {"train.batch_size": {"type": "categorical", "choices": [32, 33]}},
            }
        ),
        "params.train.batch_size",
        id="search-batch-ladder-entry-not-split-over-workers",
    ),
    pytest.param(
        lambda t: ["search", space_yaml(t, text="[1, 2]\n")],
        "space",
        id="search-space-not-a-mapping",
    ),
    # ---------------------------------------------------------------------------- search flags
    pytest.param(
        lambda t: search(t, "--num-samples", "0"), "--num-samples", id="search-num-samples-0"
    ),
    pytest.param(
        lambda t: search(t, "--max-concurrent", "0"),
        "--max-concurrent",
        id="search-max-concurrent-0",
    ),
    pytest.param(
        lambda t: search(t, "--tracking-uri", "file:./mlruns"),
        "--tracking-uri",
        id="search-file-tracking-uri",
    ),
    pytest.param(
        lambda t: search(t, "--name", "nope", "--resume"), "--resume", id="search-resume-unknown"
    ),
    pytest.param(
        lambda t: search(t, "--storage", str(t / "missing" / "s.db")),
        "--storage",
        id="search-storage-in-missing-folder",
    ),
    pytest.param(
        lambda t: search(t, "--tracking-uri", "ftp://127.0.0.1/x"),
        "--tracking-uri",
        id="search-ftp-tracking-uri",
    ),
    pytest.param(
        lambda t: search(t, "--tracking-uri", "http://"),
        "--tracking-uri",
        id="search-tracking-uri-without-host",
    ),
    pytest.param(
        lambda t: search(t, "--tracking-uri", "http://127.0.0.1:port"),
        "--tracking-uri",
        id="search-tracking-uri-bad-port",
    ),
    pytest.param(
        lambda t: search(t, "--tracking-uri", "http://127.0.0.1:9"),
        "--tracking-uri",
        id="search-tracking-server-down",
    ),
    pytest.param(
        lambda t: search(t, "--tracking-uri", f"sqlite:///{t / 'no' / 'm.db'}"),
        "--tracking-uri",
        id="search-tracking-db-in-missing-folder",
    ),
    pytest.param(
        lambda t: search(t, "--results-dir", str(t / "no" / "such" / "ray")),
        "--results-dir",
        id="search-results-dir-in-missing-folder",
    ),
    # -------------------------------------------------------------------------- export / report
    pytest.param(
        lambda t: ["export", "nope", "--out", str(t / "b.yaml")],
        "--storage",
        id="export-no-storage",
    ),
    pytest.param(lambda t: ["report", "nope"], "--storage", id="report-no-storage"),
    pytest.param(
        lambda t: ["export", "nope", "--storage", study(t), "--out", str(t / "b.yaml")],
        "NAME",
        id="export-unknown-name",
    ),
    pytest.param(
        lambda t: ["report", "nope", "--storage", study(t)], "NAME", id="report-unknown-name"
    ),
    pytest.param(
        lambda t: ["export", "x", "--storage", str(t / "missing" / "s.db")],
        "--storage",
        id="export-storage-in-missing-folder",
    ),
    pytest.param(
        lambda t: ["report", "x", "--storage", f"sqlite:///{t / 'missing' / 's.db'}"],
        "--storage",
        id="report-storage-url-in-missing-folder",
    ),
    pytest.param(
        lambda t: [
            "export",
            "other",
            "--storage",
            study(t, metrics=True),
            "--out",
            str(t / "b.yaml"),
            "--all-pareto",
            str(t / "front"),
        ],
        "NAME",
        id="export-no-completed-trial",
    ),
    # ----------------------------------------------------------------------------------- measure
    pytest.param(
        lambda t: ["measure", str(t / "absent.pt")], "checkpoint", id="measure-missing-checkpoint"
    ),
    pytest.param(
        lambda t: ["measure", str(_text(t / "x.pt")), "--json", str(t / "m.json")],
        "checkpoint",
        id="measure-corrupt-checkpoint",
    ),
]


def _text(p: Path) -> Path:
    p.write_text("not a checkpoint")
    return p


def fingerprint(root: Path) -> dict[str, str]:
    """Every path under root; files with their size and content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else f"{p.stat().st_size}:{_sha(p)}"
    return out


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]


@pytest.fixture
def workdir(tmp_path, monkeypatch, cache):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REMEDIES_CACHE", str(cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def expect_refusal(argv: list[str], field: str, root: Path, capsys) -> str:
    """Run the CLI; assert exit 2, one stderr line naming `field`, and an unchanged folder."""
    capsys.readouterr()
    before = fingerprint(root)
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"remedies: error: {field}:"), err
    assert fingerprint(root) == before
    return err


@pytest.fixture(autouse=True)
def no_ray_start(monkeypatch):
    """Refused before Ray: a search that reaches `start_ray` fails the test at that point (the
    session's own Ray may already be up, so `ray.is_initialized()` could not tell)."""
    from remedies.search import driver

    def started(*args, **kwargs):
        raise AssertionError("the search reached start_ray before refusing its input")

    monkeypatch.setattr(driver, "start_ray", started)


@pytest.mark.parametrize("build, field", CASES)
def test_bad_input_is_one_line_and_leaves_nothing(build, field, workdir, capsys):
    expect_refusal(build(workdir), field, workdir, capsys)


@pytest.mark.parametrize("names", [["bogus"], ["keskar", "lambda_9x"]])
def test_measure_unknown_name(names, checkpoint, workdir, capsys):
    argv = ["measure", str(checkpoint), "--json", str(workdir / "m.json")]
    for n in names:
        argv += ["--measure", n]
    expect_refusal(argv, "--measure", workdir, capsys)


def test_measure_truncated_checkpoint(checkpoint, workdir, capsys):
    half = cut(Path(shutil.copy(checkpoint, workdir / "half.pt")))
    expect_refusal(
        ["measure", str(half), "--json", str(workdir / "m.json")], "checkpoint", workdir, capsys
    )


def test_a_password_in_a_refused_uri_is_never_printed(workdir, capsys):
    """`user:pass@` is a supported way to give credentials, so a refusal must not echo it."""
    uri = "http://alice:hunter2-secret@127.0.0.1:9"  # nothing listens on port 9
    err = expect_refusal(search(workdir, "--tracking-uri", uri), "--tracking-uri", workdir, capsys)
    assert "hunter2-secret" not in err and "127.0.0.1:9" in err


def test_mask_hides_only_the_password():
    from remedies.stores.tracking import mask, resolve

    assert mask("http://bob:s3cr3t@host:5000/p") == "http://bob:***@host:5000/p"
    assert mask("http://host:5000") == "http://host:5000"
    t = resolve("http://bob:s%40cret@host:5000")
    assert (t.uri, t.username, t.password) == ("http://host:5000", "bob", "s@cret")
    assert "s@cret" not in repr(t)
