"""Data parallelism: K workers at global batch B train as one worker at B.

Every K = 2 run here (gloo, 2 CPU workers on Ray Train's TorchTrainer) happens in ONE Ray Train
start (`k2_runs`): the start-up costs ~30 s, the runs themselves a second. The K = 1 references
train in this process. A model without BN must end within float tolerance of one worker for
every registered remedy that does not read batch statistics (parametrised over the registry, so
a new remedy is covered the day it exists); with BN, K = 2 is ghost BN at B/2 on one worker, and
`model.sync_bn` is plain BN on one worker. Gradient accumulation (N micro-batches) is the full
batch the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from remedies.catalog import REMEDIES
from remedies.cli import main
from remedies.config import parse_config
from remedies.data import Splits, load_data
from remedies.engine.trainer import train

ATOL = 1e-5
B = 64  # global batch: 4 steps an epoch on 256 samples
DATA = {
    "factory": "tests.factories:blobs",
    "kwargs": {"n_train": 256, "n_val": 64, "n_test": 64, "dim": 16, "classes": 3},
}
MLP = {"factory": "tests.factories:mlp", "kwargs": {"hidden": 16}}  # no BN
BN_NET = {"factory": "tests.factories:tiny_net", "kwargs": {"hidden": 16}}  # Linear, BN, ReLU
# BN runs take SGD: the bias before a BN layer has a true gradient of 0, float noise in fact, and
# Adam would normalise that noise into lr-sized steps (measured: 6e-3 apart after 8 steps)
SGD = {"optimizer": "sgd", "lr": 0.05}
# parameters at which each remedy changes a batch-64 run (the defaults target batch 64 itself)
PARAMS: dict[str, dict[str, Any]] = {
    "warm_start": {"sb_batch": 32, "epochs": 1},
    "grad_noise": {"sb_batch": 16, "scale": 0.5},
    "lr_scaling": {"base_batch": 16, "warmup_epochs": 1.0},
    "train_longer": {"base_batch": 32},  # 2 × the epochs
    "ghost_bn": {"ghost_batch": 32},
}
READS_BATCH_STATS = {
    "ghost_bn": "normalises by batch statistics (a no-op without BN); K = 2 ≡ ghost BN at B/2 is "
    "test_two_workers_with_bn_are_ghost_bn"
}


def config(
    remedies: dict[str, Any] | None = None, model: dict | None = None, **train_kw: Any
) -> dict[str, Any]:
    train = {
        "batch_size": B,
        "epochs": 2,
        "lr": 3e-3,
        "seed": 1,
        "device": "cpu",
        "checkpoint": False,
        **train_kw,
    }
    return {
        "data": DATA,
        "model": model or MLP,
        "train": train,
        "remedies": remedies or {},
        "measure": {"keskar": {"enabled": False}},
    }


def remedy_config(name: str, **train_kw: Any) -> dict[str, Any]:
    return config({} if name == "none" else {name: PARAMS.get(name, {})}, **train_kw)


CASES = ["none", *REMEDIES.names()]
K2_CONFIGS: dict[str, dict[str, Any]] = {
    **{name: remedy_config(name, workers=2) for name in CASES if name not in READS_BATCH_STATS},
    "bn": config(model=BN_NET, workers=2, **SGD),
    "sync_bn": config(model={**BN_NET, "sync_bn": True}, workers=2, **SGD),
    "accumulate": config({"sam": {}}, workers=2, accumulate=2),
    "sam_m_sharpness": config({"sam": {"m_sharpness": True}}, workers=2),
}


@pytest.fixture(scope="module")
def splits() -> Splits:
    s = load_data(parse_config(config()).data)
    assert isinstance(s, Splits)
    return s


def _train_all(payload: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """On every worker: train each config (data parallel: the process group is up)."""
    out = {}
    for key, raw in payload["configs"].items():
        r = train(parse_config(raw), splits=payload["splits"], measure=False, progress=False)
        out[key] = {k: v.detach().clone() for k, v in r.model.state_dict().items()}
    return out


@pytest.fixture(scope="module")
def k2_runs(ray_workers, splits) -> dict[str, dict[str, torch.Tensor]]:
    from remedies.workers import run_on_workers

    return run_on_workers(_train_all, {"configs": K2_CONFIGS, "splits": splits}, 2)


def one_worker(raw: dict[str, Any], splits: Splits) -> dict[str, torch.Tensor]:
    r = train(parse_config(raw), splits=splits, measure=False, progress=False)
    return r.model.state_dict()


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], params_only=False) -> float:
    assert a.keys() == b.keys()
    keys = [k for k in a if a[k].is_floating_point()]
    if params_only:
        keys = [k for k in keys if "running" not in k]
    return max((a[k] - b[k]).abs().max().item() for k in keys)


def changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max_diff(a, b)


# ---------------------------------------------------------------- K workers ≡ one worker


@pytest.mark.parametrize("name", CASES)
def test_two_workers_equal_one_worker(name, k2_runs, splits):
    if name in READS_BATCH_STATS:
        pytest.skip(f"{name} {READS_BATCH_STATS[name]}")
    ref = one_worker(remedy_config(name), splits)
    d = max_diff(k2_runs[name], ref)
    print(f"\n{name}: K=2 vs K=1 max |Δw| = {d:.2e}")
    assert d < ATOL
    if name != "none":  # and the remedy did change the run: the comparison is not trivial
        assert changed(ref, one_worker(remedy_config("none"), splits)) > 1e-3


def test_two_workers_with_bn_are_ghost_bn(k2_runs, splits):
    """Per-worker BN statistics: ghost BN at B/2 on one worker — the running statistics too
    (averaged over the workers before evaluation)."""
    ref = one_worker(config({"ghost_bn": {"ghost_batch": B // 2}}, model=BN_NET, **SGD), splits)
    d = max_diff(k2_runs["bn"], ref)
    print(f"\nBN: K=2 vs K=1 ghost BN at {B // 2}: max |Δ| = {d:.2e}")
    assert d < ATOL
    assert changed(ref, one_worker(config(model=BN_NET, **SGD), splits)) > 1e-3  # ≠ plain BN


def test_sync_bn_is_one_worker(k2_runs, splits):
    ref = one_worker(config(model=BN_NET, **SGD), splits)
    d = max_diff(k2_runs["sync_bn"], ref)
    print(f"\nsync BN: K=2 vs K=1: max |Δ| = {d:.2e}")
    assert d < ATOL


def test_workers_and_accumulation_together(k2_runs, splits):
    d = max_diff(k2_runs["accumulate"], one_worker(config({"sam": {}}), splits))
    print(f"\nK=2 × N=2 (sam) vs K=1: max |Δw| = {d:.2e}")
    assert d < ATOL


def test_sam_m_sharpness_ascends_per_worker(k2_runs, splits):
    """m-sharpness takes each worker's own ascent: a different run from the global one."""
    assert changed(k2_runs["sam_m_sharpness"], k2_runs["sam"]) > 1e-4


# ---------------------------------------------------------------- accumulation ≡ full batch


@pytest.mark.parametrize("name", CASES)
def test_accumulation_equals_full_batch(name, splits):
    if name in READS_BATCH_STATS:
        pytest.skip(f"{name} {READS_BATCH_STATS[name]}")
    d = max_diff(
        one_worker(remedy_config(name, accumulate=2), splits),
        one_worker(remedy_config(name), splits),
    )
    print(f"\n{name}: N=2 vs N=1 max |Δw| = {d:.2e}")
    assert d < ATOL


def test_accumulation_with_bn_is_ghost_bn(splits):
    """Micro-batches normalise by their own statistics: ghost BN at their size (weights; the
    running statistics move once per micro-batch, ghost BN's once per step)."""
    acc = one_worker(config(model=BN_NET, accumulate=2, **SGD), splits)
    ghost = one_worker(config({"ghost_bn": {"ghost_batch": B // 2}}, model=BN_NET, **SGD), splits)
    d = max_diff(acc, ghost, params_only=True)
    print(f"\nBN: N=2 vs K=1 ghost BN at {B // 2}: max |Δw| = {d:.2e}")
    assert d < ATOL


# ---------------------------------------------------------------- the command line


def write_config(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cli_batch_not_splitting_over_workers(tmp_path, capsys):
    rc = main(["train", str(write_config(tmp_path, config())), "--set", "train.workers=3"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("remedies: error: train.workers: batch size 64 does not split evenly")


def test_cli_accumulate_not_splitting(tmp_path, capsys):
    rc = main(["train", str(write_config(tmp_path, config())), "--set", "train.accumulate=3"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "train.accumulate:" in err


def test_cli_schedule_not_splitting_over_workers(tmp_path, capsys):
    """A warm-start batch that does not split: refused before any worker starts."""
    raw = config({"warm_start": {"sb_batch": 33, "epochs": 1}})
    rc = main(["train", str(write_config(tmp_path, raw)), "--set", "train.workers=2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "train.workers: epoch 1's batch (remedies' schedule) 33 does not split" in err


def test_cli_more_workers_than_cpus(tmp_path, capsys, ray_workers):
    from remedies.workers import placeable

    k = placeable(use_gpu=False) + 1
    rc = main(
        [
            "train",
            str(write_config(tmp_path, config())),
            "--set",
            f"train.workers={k}",
            "--set",
            f"train.batch_size={k}",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"remedies: error: train.workers: {k} workers need {k} CPUs")


def test_cli_trains_on_two_workers(tmp_path, ray_workers, splits, capsys):
    """The whole path: CLI → Ray Train (2 workers) → the driver's checkpoint, equal to K = 1;
    the Keskar measure, taken on rank 0 before the workers end, equals the same measure taken
    here, independently, on the checkpointed weights."""
    from remedies.engine.trainer import measure_data
    from remedies.measures import run_measures

    out, summary = tmp_path / "out", tmp_path / "summary.json"
    measure = {"keskar": {"eps": [1e-3], "iters": 2, "init": "vertex"}, "max_samples": 64}
    raw = {**config({"lr_scaling": PARAMS["lr_scaling"]}), "measure": measure}
    rc = main(
        [
            "train",
            str(write_config(tmp_path, raw)),
            "--set",
            "train.workers=2",
            "--set",
            "train.checkpoint=true",
            "--out",
            str(out),
            "--json",
            str(summary),
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    state = torch.load(out / "checkpoint.pt", weights_only=True)["model_state"]
    assert max_diff(state, one_worker(raw, splits)) < ATOL
    got = json.loads(summary.read_text())["sharpness"]["keskar_full_eps1e-03"]
    cfg = parse_config(raw)
    model = train(cfg, splits=splits, measure=False, progress=False).model
    model.load_state_dict(state)
    X, Y = measure_data(splits, cfg, torch.device("cpu"))
    want = run_measures(model, X, Y, cfg.measure)[0]["keskar_full_eps1e-03"]
    assert got == pytest.approx(want, rel=1e-4) and got > 0


def test_workers_ending_during_a_save_fail_the_run(ray_workers):
    """A worker killed while the ranks gather a snapshot ends the whole group without an
    answer: the trial's save must fail (so Tune retries it), not wait forever. The workers'
    side here is rank 0's own protocol over the real queues, up to the group's end."""
    import threading

    from remedies.workers import _streamed

    def group(payload: dict[str, Any]) -> None:
        rows, replies = payload["stream"]
        rows.put(("row", {"epoch": 1}))
        assert replies.get(timeout=60) == "save"
        raise RuntimeError("a worker died mid-save")

    capture: list = []
    box: dict[str, BaseException] = {}

    def trial() -> None:
        try:
            _streamed(group, {}, lambda row: capture[0](), capture.append)
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=trial, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the save waited for workers that had ended"
    assert "a worker died mid-save" in str(box["error"])


def test_library_reads_the_process_group():
    """Outside a process group the recipe sees one worker; rank/world_size can be given."""
    from remedies import Recipe

    recipe = Recipe.from_dict(config())
    net = torch.nn.Linear(16, 3)
    assert recipe.apply(net, n_train=256, input_shape=(16,)).world_size == 1
    with pytest.raises(ValueError, match="rank must be in"):
        recipe.apply(net, n_train=256, input_shape=(16,), rank=2, world_size=2)
