"""`remedies export --format python` renders a script that runs as written and ends at the
validation accuracy `remedies train` reaches on the same config (both in fresh processes, one
CPU thread): the script's own loop on the library API is the trainer's, remedies included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from remedies.config import config_to_dict, parse_config
from remedies.results.export_python import render_python

ROOT = Path(__file__).resolve().parents[2]  # so `tests.factories` imports in the subprocesses
FACTORY = {
    "data": {"factory": "tests.factories:blobs", "kwargs": {"n_train": 300, "dim": 12}},
    "model": {"factory": "tests.factories:tiny_net", "kwargs": {"hidden": 20}},
}
BUILTIN = {
    "data": {"name": "mnist1d", "num_samples": 600},
    "model": {"name": "F1", "width": 0.05},
}


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run(cwd: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    """A command of the test, as a user runs it, in `cwd` (a script, `remedies`, torchrun)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**env(), **env_extra},
        capture_output=True,
        text=True,
        timeout=300,
    )


def complete(base: dict, remedies: dict) -> dict:
    raw = {
        **base,
        "train": {
            "batch_size": 40,
            "epochs": 3,
            "lr": 3e-3,
            "threads": 1,
            "device": "cpu",
            "checkpoint": False,
            "seed": 2,
        },
        "remedies": remedies,
        "measure": {"keskar": {"enabled": False}},
    }
    return config_to_dict(parse_config(raw))  # what an export holds: every resolved value


@pytest.mark.parametrize(
    ("base", "remedies"),
    [
        (FACTORY, {"augment": {}, "sam": {}, "warm_start": {"epochs": 1}}),
        (BUILTIN, {"ghost_bn": {"ghost_batch": 16}, "grad_noise": {}, "lr_scaling": {}}),
    ],
)
def test_script_runs_as_written_and_matches_remedies_train(tmp_path, base, remedies):
    cfg = complete(base, remedies)
    (tmp_path / "best.yaml").write_text(yaml.safe_dump(cfg))
    script = tmp_path / "best.py"
    script.write_text(render_python("# exported for a test\n", cfg))
    if "factory" in base["model"]:  # the user's factories, imported by their own paths
        text = script.read_text()
        assert "from tests.factories import blobs" in text
        assert "tiny_net(hidden=20, input_shape=input_shape, num_classes=num_classes)" in text
    compile(script.read_text(), str(script), "exec")
    ran = run(tmp_path, str(script))
    assert ran.returncode == 0, ran.stderr[-2000:]
    got = float(ran.stdout.strip().splitlines()[-1].split()[-1])
    ref = run(tmp_path, "-m", "remedies", "train", "best.yaml", "--quiet", "--json", "s.json")
    assert ref.returncode == 0, ref.stderr[-2000:]
    s = json.loads((tmp_path / "s.json").read_text())
    assert got == s["val_accuracy"]
    assert ran.stdout.count("epoch ") == s["epochs_run"]
    assert s["history"][-1]["train_loss"] < s["history"][0]["train_loss"]  # it learnt


def test_script_under_torchrun_on_two_workers_ends_where_one_process_does(tmp_path):
    """`export --format python --workers 2`: `torchrun --nproc-per-node 2 python best.py` (two
    data-parallel workers, gloo on CPU) ends at the validation accuracy the same script reaches
    alone — a model without BN (with BN, K workers are ghost BN at B/K by design)."""
    base = {
        "data": {"factory": "tests.factories:blobs", "kwargs": {"n_train": 320, "dim": 12}},
        "model": {"factory": "tests.factories:mlp", "kwargs": {"hidden": 20}},
    }
    cfg = complete(base, {"augment": {"noise": 0.1}, "sam": {}, "lr_scaling": {}})
    script = tmp_path / "best.py"
    script.write_text(render_python("# exported for a test\n", cfg, workers=2))
    assert "torchrun --nproc-per-node 2 THIS_FILE" in script.read_text()
    alone = run(tmp_path, str(script))
    assert alone.returncode == 0, alone.stderr[-2000:]
    two = run(
        tmp_path,
        *("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)),
        OMP_NUM_THREADS="1",
    )
    assert two.returncode == 0, two.stderr[-3000:]
    last = [ln for ln in two.stdout.splitlines() if ln.startswith("val_accuracy ")]
    assert len(last) == 1, two.stdout[-2000:]  # rank 0 alone prints
    one = float(alone.stdout.strip().splitlines()[-1].split()[-1])
    assert abs(float(last[0].split()[-1]) - one) <= 100 / 120 + 1e-9  # ≤ one of 120 val samples


def test_workers_that_do_not_split_the_batch_are_one_line():
    from remedies.errors import ConfigError

    cfg = complete(BUILTIN, {})
    with pytest.raises(ConfigError, match=r"^--workers: 3 workers do not split"):
        render_python("", cfg, workers=3)
