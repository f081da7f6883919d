"""`train.accumulate: auto`: the fewest micro-batches that fit the device
(remedies.engine.accumulate).

The choice is checked against a memory limit stated in samples (the pure rule), on CPU (where
auto is 1 and trains exactly as accumulate 1), and on a real GPU when there is one: a global
batch over a capped share of its memory trains with N > 1, as N micro-batches would by hand.
"""

from __future__ import annotations

import pytest
import torch

from remedies.cli import main
from remedies.config import parse_config
from remedies.engine.accumulate import micro_batch_counts, pick_accumulate
from remedies.engine.trainer import train
from remedies.errors import ConfigError

DATA = {
    "factory": "tests.factories:blobs",
    "kwargs": {"n_train": 256, "n_val": 64, "n_test": 64, "dim": 16, "classes": 3},
}


def config(**train_kw) -> dict:
    train = {"batch_size": 64, "epochs": 2, "lr": 3e-3, "seed": 1, "checkpoint": False}
    return {
        "data": DATA,
        "model": {"factory": "tests.factories:mlp", "kwargs": {"hidden": 16}},
        "train": {**train, **train_kw},
        "measure": {"keskar": {"enabled": False}},
    }


def test_the_fewest_micro_batches_that_fit_and_split_every_batch():
    assert micro_batch_counts([96]) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96]
    assert pick_accumulate([96], lambda m: m <= 30) == 4  # 96/3 = 32 does not fit
    assert pick_accumulate([96], lambda m: m <= 96) == 1
    # a warm start's batch 32 then 96: N must split both, so 3 is out; the largest batch decides
    assert micro_batch_counts([32, 96]) == [1, 2, 4, 8, 16, 32]
    assert pick_accumulate([32, 96], lambda m: m <= 40) == 4
    with pytest.raises(ConfigError, match=r"^train.accumulate: auto: no micro-batch"):
        pick_accumulate([32, 96], lambda m: m <= 2)


def test_auto_on_cpu_is_one_and_trains_as_one():
    auto = train(parse_config(config(accumulate="auto", device="cpu")), progress=False)
    one = train(parse_config(config(accumulate=1, device="cpu")), progress=False)
    assert auto.accumulate == one.accumulate == 1
    a, b = auto.model.state_dict(), one.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_bad_accumulate_is_one_line(tmp_path, capsys):
    import yaml

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(config(accumulate="most")))
    assert main(["train", str(p), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("remedies: error: train.accumulate"), err
    assert "auto" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_on_a_gpu_splits_a_batch_over_its_memory():
    """Cap the process's GPU memory under one full-batch step (a 4096-wide MLP on 4096 samples
    of 512 features: ~0.2 GB of activations against 35 MB of weights, gradients and Adam's
    state): auto picks N > 1 and trains; the run equals accumulate N set by hand."""
    raw = config(accumulate="auto", device="cuda", batch_size=4096, epochs=1)
    raw["data"] = {**DATA, "kwargs": {**DATA["kwargs"], "n_train": 4096, "dim": 512}}
    raw["model"] = {"factory": "tests.factories:mlp", "kwargs": {"hidden": 4096}}
    torch.cuda.empty_cache()
    used = torch.cuda.memory_allocated(0)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((used + 160e6) / total)
    try:
        auto = train(parse_config(raw), progress=False)
        fixed = train(
            parse_config({**raw, "train": {**raw["train"], "accumulate": auto.accumulate}}),
            progress=False,
        )
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert auto.accumulate > 1
    a, b = auto.model.state_dict(), fixed.model.state_dict()
    assert all(torch.allclose(a[k], b[k]) for k in a)
