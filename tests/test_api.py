"""The library API (`remedies.Recipe`) in a loop written by hand reproduces the built-in trainer.

The loop below is what a user would write around their own model and data: plain PyTorch, with
the recipe answering batch size, lr, batch transform and the step. It imports nothing from
`remedies.engine.trainer`. For every registered remedy (parametrised over the registry, so a new
one is covered the day it exists) its final weights and validation accuracy equal the
trainer's exactly on CPU — the trainer is a loop on the same API, so any drift means the two
have come apart.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import remedies
from remedies.catalog import REMEDIES
from remedies.data import Splits
from remedies.engine.trainer import train
from remedies.errors import ConfigError
from remedies.models import create_model

SEED = 3
N_TRAIN, N_VAL, DIM, CLASSES = 320, 80, 24, 4


def toy_splits() -> Splits:
    """A learnable toy set, made in the test (the class decides the mean of each sample)."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(CLASSES, DIM, generator=g)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, CLASSES, (n,), generator=g)
        return means[y] + 0.8 * torch.randn(n, DIM, generator=g), y

    (xt, yt), (xv, yv), (xs, ys) = make(N_TRAIN), make(N_VAL), make(N_VAL)
    return Splits(xt, yt, xv, yv, xs, ys, num_classes=CLASSES)


def recipe_dict(rem: dict, **train) -> dict:
    # batch 80 > every remedy's small-batch parameter (warm start's 64, ghost BN's 32, grad
    # noise's 64), so each remedy changes the run and the comparison is not trivially plain
    return {
        "model": {"name": "F1", "width": 0.06},
        "train": {
            "batch_size": 80,
            "epochs": 3,
            "lr": 3e-3,
            "seed": SEED,
            "device": "cpu",
            "checkpoint": False,
            **train,
        },
        "remedies": rem,
    }


def hand_written_loop(recipe: remedies.Recipe, splits: Splits) -> tuple[torch.nn.Module, float]:
    """A user's loop: their seeding, model, batch order and evaluation; the recipe's remedies."""
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    model = create_model("F1", (DIM,), CLASSES, width=0.06)
    X, Y, n = splits.x_train, splits.y_train, len(splits.y_train)

    run = recipe.apply(model, n_train=n, input_shape=(DIM,))
    model = run.model
    run.make_optimizer()
    order = torch.Generator().manual_seed(SEED)
    for epoch in range(run.epochs):
        b = run.batch_size(epoch)
        steps = n // b
        perm = torch.randperm(n, generator=order)
        model.train()
        for i in range(steps):
            run.set_lr(epoch + i / steps)
            idx = perm[i * b : (i + 1) * b]
            x, y = run.transform(X[idx], Y[idx])
            run.step(x, y)
        run.end_epoch(epoch)
    model.eval()
    with torch.no_grad():
        correct = (model(splits.x_val).argmax(1) == splits.y_val).sum().item()
    return model, 100.0 * correct / len(splits.y_val)


def assert_same_as_trainer(raw: dict) -> None:
    splits = toy_splits()
    recipe = remedies.Recipe.from_dict(raw)
    built = train(recipe.config, splits=splits, measure=False, progress=False)
    model, val_acc = hand_written_loop(recipe, splits)
    assert val_acc == built.val_accuracy
    for (k, a), (k2, b) in zip(
        built.model.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b), k
    # the run learnt something, so equality is not two untrained models agreeing
    assert built.history[-1]["train_loss"] < built.history[0]["train_loss"]


@pytest.mark.parametrize("name", REMEDIES.names())
def test_hand_written_loop_reproduces_the_trainer_for_every_remedy(name):
    assert_same_as_trainer(recipe_dict({name: {}}))


def test_composed_remedies_and_clipping_reproduce_the_trainer():
    # the hooks compose: weights (grad noise) × loss terms (adversarial) × owned step (sam) ×
    # after-step rule (trust ratio) × schedule (lr scaling, warm start), with clipping in between
    rem = {
        "grad_noise": {},
        "adversarial": {},
        "sam": {},
        "trust_ratio": {},
        "lr_scaling": {},
        "warm_start": {"epochs": 1},
    }
    assert_same_as_trainer(recipe_dict(rem, grad_clip=1.0, optimizer="sgd", lr=0.05))


def test_recipe_from_yaml_with_overrides(tmp_path):
    p = tmp_path / "best.yaml"
    p.write_text("train: {batch_size: '25%', lr: 0.01}\nremedies: {sam: {rho: 0.1}}\n")
    r = remedies.Recipe.from_yaml(p, overrides=["train.epochs=2"])
    assert r.remedies == ["sam"] and r.config.train.epochs == 2
    run = r.apply(torch.nn.Linear(3, 2), n_train=100, input_shape=(3,))
    assert run.batch_size(0) == 25 and run.lr(0.0) == 0.01


def test_bad_recipe_is_one_line_error():
    with pytest.raises(ConfigError) as e:
        remedies.Recipe.from_dict({"remedies": {"sam": {"rho": 9}}})
    assert "remedies.sam.rho" in str(e.value) and "\n" not in str(e.value)


def test_step_needs_an_optimiser_and_says_so():
    run = remedies.Recipe.from_dict({}).apply(torch.nn.Linear(3, 2), n_train=1000, input_shape=(3,))
    with pytest.raises(RuntimeError, match="make_optimizer"):
        run.step(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))


def test_own_backward_with_optimizer_step_matches_step():
    """A loop that backpropagates itself: `closure` + backward + `optimizer_step` is `step`."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    raw = {
        "train": {"lr": 0.1, "grad_clip": 0.5, "optimizer": "sgd", "batch_size": 16},
        "remedies": {"trust_ratio": {}},
    }
    models = []
    for own in (False, True):
        torch.manual_seed(1)
        run = remedies.Recipe.from_dict(raw).apply(
            torch.nn.Linear(5, 3), n_train=16, input_shape=(5,)
        )
        opt = run.make_optimizer()
        if own:
            opt.zero_grad()
            F.cross_entropy(run.model(x), y).backward()
            run.optimizer_step()
        else:
            run.step(x, y)
        models.append(run.model)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)
