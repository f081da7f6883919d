"""Your own model and data by import path (`tests.factories`, outside `remedies/`): they train,
a streamed Dataset trains exactly as the same data held as tensors, and every wrong factory is
one line on stderr with exit 2 before any training."""

from __future__ import annotations

import pytest
import torch
import yaml

from remedies.cli import main
from remedies.config import parse_config
from remedies.data import Splits, StreamSplits, load_data
from remedies.engine.trainer import train

KW = {"n_train": 360, "dim": 16, "classes": 3}


def run_cfg(data: dict, model: dict | None = None, **train_kw) -> dict:
    return {
        "data": data,
        "model": model or {"factory": "tests.factories:tiny_net", "kwargs": {"hidden": 24}},
        "train": {
            "batch_size": 40,
            "epochs": 4,
            "lr": 3e-3,
            "device": "cpu",
            "checkpoint": False,
            **train_kw,
        },
        "measure": {"keskar": {"eps": [1e-3], "iters": 2}},
    }


def test_factory_model_and_data_train_and_measure():
    cfg = parse_config(run_cfg({"factory": "tests.factories:blobs", "kwargs": KW}))
    splits = load_data(cfg.data)
    assert isinstance(splits, Splits) and splits.num_classes == 3 and splits.n_train == 360
    r = train(cfg, splits=splits, progress=False)
    assert r.val_accuracy > 80 and r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.sharpness and all(v >= 0 for v in r.sharpness.values())
    assert cfg.model.name is None and cfg.data.name is None  # round trip: no built-in name added
    assert parse_config(cfg.model_dump(mode="json")) == cfg


def test_a_factory_without_shape_arguments_gets_only_its_kwargs():
    model = {"factory": "tests.factories:fixed_net", "kwargs": {"hidden": 8}}
    cfg = parse_config(run_cfg({"factory": "tests.factories:blobs"}, model))
    r = train(cfg, measure=False, progress=False)
    assert r.model.body[1].out_features == 8 and r.epochs_run == 4


MIXES = [
    {},
    {"augment": {}, "sam": {}},
    {"warm_start": {"epochs": 1}, "ghost_bn": {"ghost_batch": 16}},
]


@pytest.mark.parametrize("remedies", MIXES)
def test_streamed_datasets_train_exactly_as_tensors(remedies):
    """A Dataset read sample by sample through the DataLoader sees the same batches in the same
    order as the tensors: same weights, same accuracies, same sharpness subset."""
    out = []
    for factory in ("blobs", "blob_datasets"):
        data = {"factory": f"tests.factories:{factory}", "kwargs": KW, "num_classes": 3}
        cfg = parse_config({**run_cfg(data), "remedies": remedies})
        splits = load_data(cfg.data)
        assert isinstance(splits, StreamSplits) == (factory == "blob_datasets")
        out.append(train(cfg, splits=splits, progress=False))
    a, b = out
    assert (a.val_accuracy, a.test_accuracy, a.train_accuracy) == (
        b.val_accuracy,
        b.test_accuracy,
        b.train_accuracy,
    )
    assert a.sharpness == b.sharpness and a.sharpness
    for (k, v), (k2, v2) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2), k


@pytest.mark.parametrize(
    ("data", "model", "field", "words"),
    [
        (
            {"factory": "no_such_pkg.mod:load"},
            None,
            "data.factory",
            "cannot import 'no_such_pkg.mod'",
        ),
        ({"factory": "tests.factories:nope"}, None, "data.factory", "has no attribute 'nope'"),
        ({"factory": "tests.factories:NOT_CALLABLE"}, None, "data.factory", "not a function"),
        ({"factory": "tests/factories.py"}, None, "data.factory", "import path like"),
        ({"factory": "tests.factories:blobs", "name": "npz"}, None, "data", "either data.name"),
        ({"factory": "tests.factories:two_splits"}, None, "data.factory", "(train, val, test)"),
        ({"factory": "tests.factories:bad_labels"}, None, "data.factory", "labels hold -"),
        ({"factory": "tests.factories:float_labels"}, None, "data.factory", "1-D integer tensor"),
        ({"factory": "tests.factories:shape_mismatch"}, None, "data.factory", "shape (8,)"),
        ({"factory": "tests.factories:raises"}, None, "data.factory", "FileNotFoundError"),
        (
            {"factory": "tests.factories:blobs", "num_classes": 2},
            None,
            "data.factory",
            "labels reach 2",
        ),
        (
            {"factory": "tests.factories:blobs", "kwargs": {"colour": 1}},
            None,
            "data.factory",
            "unexpected keyword",
        ),
        ({"factory": "tests.factories:blob_datasets"}, None, "data.num_classes", "required"),
        (
            {"factory": "tests.factories:blobs"},
            {"factory": "tests.factories:not_a_model"},
            "model.factory",
            "expected a torch.nn.Module",
        ),
        (
            {"factory": "tests.factories:blobs"},
            {"factory": "tests.factories:wrong_output"},
            "model.factory",
            "(2, 7); expected logits of shape (2, 3)",
        ),
        (
            {"factory": "tests.factories:blobs"},
            {"factory": "tests.factories:tiny_net", "name": "F1"},
            "model",
            "either model.name",
        ),
        (
            {"factory": "tests.factories:blobs"},
            {"factory": "tests.factories:nope"},
            "model.factory",
            "has no attribute",
        ),
    ],
)
@pytest.mark.parametrize("command", ["train", "validate"])
def test_bad_factory_is_one_line_exit_2_nothing_written(
    tmp_path, monkeypatch, capsys, command, data, model, field, words
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run_cfg(data, model)))
    before = sorted(p.name for p in tmp_path.iterdir())
    extra = ["--out", "out", "--quiet"] if command == "train" else []
    assert main([command, "run.yaml", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"remedies: error: {field}") and words in err and "\n" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
