"""A user's own model and data, as a user would write them: outside `remedies/`, found by the
import paths `tests.factories:...` in run configs, space files and exports."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset


def blobs(
    n_train: int = 360,
    n_val: int = 120,
    n_test: int = 120,
    dim: int = 16,
    classes: int = 3,
    noise: float = 0.8,
    seed: int = 0,
):
    """Gaussian blobs: (train, val, test) as (x, y) tensor pairs."""
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(classes, dim, generator=g)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,), generator=g)
        return means[y] + noise * torch.randn(n, dim, generator=g), y

    return make(n_train), make(n_val), make(n_test)


class PairDataset(Dataset):
    """Samples read one at a time (what a streaming set looks like to the trainer)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def blob_datasets(**kw):
    """The same blobs as Datasets, as a dict."""
    tr, va, te = blobs(**kw)
    return {"train": PairDataset(*tr), "val": PairDataset(*va), "test": PairDataset(*te)}


class TinyNet(nn.Module):
    def __init__(self, dim: int, classes: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def tiny_net(input_shape, num_classes: int, hidden: int = 32) -> nn.Module:
    """A model factory that takes the data's shape and class count (offered by remedies)."""
    return TinyNet(int(torch.Size(input_shape).numel()), num_classes, hidden)


def mlp(input_shape, num_classes: int, hidden: int = 16) -> nn.Module:
    """A tiny MLP without BN: nothing in it reads batch statistics."""
    dim = int(torch.Size(input_shape).numel())
    return nn.Sequential(
        nn.Flatten(), nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, num_classes)
    )


def fixed_net(hidden: int = 32) -> nn.Module:
    """A model factory that takes only its own kwargs (16 inputs, 3 classes hard-wired)."""
    return TinyNet(16, 3, hidden)


class CrashOnce(nn.Module):
    """TinyNet whose run's first attempt fails: the first training step after `after_steps`
    raises — once per MLflow run (a marker file named for the run the trial sets in
    MLFLOW_RUN_ID), so Tune's retry of the same trial trains on from its saved state. Fault
    injection lives here, in the tests, as a user's model that breaks; the service has none."""

    def __init__(self, net: nn.Module, marker_dir: str, after_steps: int) -> None:
        super().__init__()
        self.net, self.marker_dir, self.after_steps = net, marker_dir, after_steps
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.steps += 1
            marker = Path(self.marker_dir) / os.environ.get("MLFLOW_RUN_ID", "no-run")
            if self.steps > self.after_steps and not marker.exists():
                marker.touch()
                raise RuntimeError("injected fault (first attempt only)")
        return self.net(x)


def crash_once(
    input_shape, num_classes: int, marker_dir: str, after_steps: int, hidden: int = 32
) -> nn.Module:
    return CrashOnce(tiny_net(input_shape, num_classes, hidden), marker_dir, after_steps)


def crash_once_model(marker_dir: Path, n_train: int, batch: int, after_epoch: int) -> dict:
    """The `model:` section of a run whose first attempt crashes after `after_epoch` epochs
    (the trainer takes n_train // batch steps an epoch)."""
    marker_dir.mkdir(parents=True, exist_ok=True)
    steps = after_epoch * (n_train // batch)
    return {
        "factory": "tests.factories:crash_once",
        "kwargs": {"marker_dir": str(marker_dir), "after_steps": steps},
    }


# ---------------------------------------------------------------- wrong ones, for the errors


def not_a_model(**_):
    return "a string"


def wrong_output(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(input_shape).numel()), 7))


def two_splits():
    tr, va, _ = blobs()
    return tr, va


def bad_labels():
    tr, va, te = blobs()
    return tr, (va[0], va[1] - 5), te


def float_labels():
    tr, va, te = blobs()
    return (tr[0], tr[1].float()), va, te


def shape_mismatch():
    tr, va, te = blobs()
    return tr, (va[0][:, :8], va[1]), te


def raises():
    raise FileNotFoundError("no /data/imagenet here")


NOT_CALLABLE = 3
