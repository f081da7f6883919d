"""Checkpoints are tensors and plain data, read back weights-only: a pickled object in a checkpoint
is refused with a one-line error and never runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from remedies.cli import main
from remedies.config import parse_config
from remedies.engine.checkpoint import load_checkpoint, load_checkpoint_config, save_checkpoint
from remedies.engine.trainer import TrainResult
from remedies.errors import ConfigError
from remedies.launch import fit
from tests.helpers import write_npz

PLAIN = (dict, list, str, int, float, bool, type(None), torch.Tensor)


def non_plain(obj, at: str = "$") -> list[str]:
    """Paths inside `obj` to anything but plain data or tensors (tensors only at the leaves)."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_plain(v, f"{at}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in non_plain(v, f"{at}[{i}]")]
    return [] if isinstance(obj, PLAIN) else [f"{at}: {type(obj).__name__}"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> TrainResult:
    d = tmp_path_factory.mktemp("ckpt")
    cfg = parse_config(
        {
            "data": {"name": "npz", "path": str(write_npz(d / "toy.npz", n_train=120, n_test=20))},
            "model": {"name": "F1", "width": 0.05},
            "train": {"batch_size": 30, "epochs": 2, "device": "cpu"},
            "remedies": {"ghost_bn": {"ghost_batch": 16}},  # a remedy that rebuilds modules on load
        }
    )
    return fit(cfg, measure=False, progress=False, out_dir=d / "run")


def test_saved_checkpoint_loads_weights_only_and_round_trips(run):
    payload = torch.load(run.checkpoint, weights_only=True)
    assert non_plain(payload) == []
    model, cfg, metrics = load_checkpoint(Path(run.checkpoint))
    assert cfg == run.config
    assert metrics["test_accuracy"] == pytest.approx(run.test_accuracy)
    want = run.model.state_dict()
    got = model.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_non_plain_values_are_stored_as_plain_data(run, tmp_path):
    """A remedy or measure reporting numpy numbers, arrays or paths still gives a checkpoint that
    loads weights-only, holding the same values as plain numbers, lists and text."""
    run.history[0]["np_metric"] = np.float32(0.5)
    run.sharpness_details = [
        {
            "value": np.float64(1.25),
            "steps": np.int64(7),
            "curve": np.arange(3),
            "where": Path("/data/x"),
            "t": torch.tensor(2.0),
        }
    ]
    try:
        save_checkpoint(tmp_path / "c.pt", run)
    finally:
        del run.history[0]["np_metric"]
        run.sharpness_details = []
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    assert non_plain(payload) == []
    got = payload["history"][0]["np_metric"]
    assert type(got) is float and got == 0.5
    assert payload["metrics"]["sharpness_details"] == [
        {"value": 1.25, "steps": 7, "curve": [0, 1, 2], "where": "/data/x", "t": 2.0}
    ]
    assert type(payload["metrics"]["sharpness_details"][0]["steps"]) is int


class Planted:
    """Unpickling this opens (so creates) `marker` for writing: a harmless stand-in for code a
    crafted checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_object_is_refused_not_run(run, tmp_path, capsys):
    marker = tmp_path / "ran"
    payload = torch.load(run.checkpoint, weights_only=True)
    payload["metrics"]["note"] = Planted(marker)
    evil = tmp_path / "evil.pt"
    torch.save(payload, evil)

    for load in (load_checkpoint, load_checkpoint_config):
        with pytest.raises(ConfigError) as e:
            load(evil)
        assert e.value.field == "checkpoint"
        msg = str(e.value)
        assert "\n" not in msg and "pickled object (io.open)" in msg and str(evil) in msg
    assert main(["measure", str(evil)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint:" in err and "refused" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()
    # control: the planted object is live — a full unpickle would have run it
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_unreadable_file_is_one_line_error(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ConfigError) as e:
        load_checkpoint_config(bad)
    assert e.value.field == "checkpoint" and "cannot read" in str(e.value)
    assert "\n" not in str(e.value) and "weights_only=False" not in str(e.value)
