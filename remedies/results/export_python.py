"""`remedies export --format python`: the chosen recipe as a short script with its own loop.

Why a script and not only a config: the recipe's destination is the user's training job. The
script is a worked example of the library API (`remedies.Recipe`) around the user's own model
and data factories — imported by the paths the search used — that they can run as written and
then cut into their code. Its loop draws batches the way the built-in trainer does (a seeded
permutation, the last partial batch dropped), so on CPU with the exported thread count it
ends at the trial's validation accuracy.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import yaml

from remedies.errors import ConfigError
from remedies.factories import resolve

TEMPLATE = '''\
{header}
"""Train with this recipe's remedies in a loop of your own (the remedies library API).

    python THIS_FILE          # prints the validation accuracy at the end{run_workers}

Under torchrun each process is one data-parallel worker of the same global batch: the recipe
reads rank and world size from torch.distributed, every worker augments the global batch alike
and trains on its share, and the gradients are averaged — K workers end where one does.
"""

import os
import random
import sys

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Dataset, TensorDataset

import remedies
{imports}

# the exported run config; sharpness measures (its `measure` section) are left out here
RECIPE = yaml.safe_load("""
{recipe}""")


def as_dataset(part) -> Dataset:
    """An (x, y) pair of tensors or arrays as a Dataset (pixels as uint8 → [0, 1])."""
    if isinstance(part, Dataset):
        return part
    x, y = torch.as_tensor(part[0]), torch.as_tensor(part[1]).long()
    return TensorDataset(x.float() / 255 if x.dtype == torch.uint8 else x.float(), y)


def batches(ds: Dataset, index_lists, device):
    # a generator of its own: a DataLoader would otherwise draw from the global RNG
    loader = DataLoader(ds, batch_sampler=index_lists, generator=torch.Generator())
    for x, y in loader:
        yield x.to(device).float(), y.to(device).long()


def accuracy(model, ds: Dataset, chunk: int, device) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in batches(ds, [list(range(i, min(i + chunk, len(ds))))
                                 for i in range(0, len(ds), chunk)], device):
            correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / len(ds)


def main() -> None:
    recipe = remedies.Recipe.from_dict(RECIPE)
    t = recipe.config.train
    if t.threads:
        torch.set_num_threads(t.threads)  # CPU results depend on it in the last bits
    cuda = t.device != "cpu" and torch.cuda.is_available()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():  # torchrun
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    device = torch.device(f"cuda:{{os.environ.get('LOCAL_RANK', 0)}}" if cuda else "cpu")

    # your data and your model
{data}
    random.seed(t.seed)
    np.random.seed(t.seed)
    torch.manual_seed(t.seed)
{model}
    model = model.to(device)

    # the recipe's remedies, bound to the model; setup may swap modules (ghost BN)
    run = recipe.apply(model, n_train=len(train_set), input_shape=input_shape, device=device)
    model = run.model
    run.make_optimizer()  # or run.use_optimizer(your_optimizer)
    order = torch.Generator().manual_seed(t.seed)  # batch order
    n = len(train_set)
    for epoch in range(run.epochs):
        b = run.batch_size(epoch)
        steps = n // b  # the last partial batch is dropped
        perm = torch.randperm(n, generator=order)
        model.train()
        for i, (x, y) in enumerate(batches(train_set, perm[: steps * b].view(steps, b).tolist(),
                                           device)):
            run.set_lr(epoch + i / steps)
            x, y = run.transform(x, y)  # the global batch, augmented alike on every worker
            x, y = run.shard(x, y)  # this worker's share (all of it on one)
            loss = run.step(x, y)  # gradients averaged over the workers
        extra = run.end_epoch(epoch)
        val = accuracy(model, val_set, t.eval_batch_size, device)
        if rank == 0:
            print(f"epoch {{epoch + 1}}/{{run.epochs}}  loss {{loss.item():.4f}}  val {{val:.2f}}%"
                  + "".join(f"  {{k}} {{v:g}}" for k, v in extra.items()), flush=True)
    if rank == 0:
        print(f"val_accuracy {{accuracy(model, val_set, t.eval_batch_size, device)!r}}")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # torch's gloo with autograd can abort while the interpreter tears down after a run
        # (SIGABRT, "terminate called without an active exception"; torch 2.13 on CPU, about
        # one torchrun run in 20, a bare torch loop too): all is printed and the group gone,
        # so leave without the teardown rather than have torchrun report or restart a failure
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
'''

DATA_FACTORY = """\
    train_set, val_set, test_set = (as_dataset(p) for p in _splits({call}))
    x0, _ = train_set[0]
    input_shape = tuple(torch.as_tensor(x0).shape)
    num_classes = {num_classes}"""

SPLITS_HELPER = '''

def _splits(out):
    """(train, val, test) from a tuple or a mapping with those keys."""
    return [out[k] for k in ("train", "val", "test")] if isinstance(out, dict) else list(out)
'''

DATA_BUILTIN = """\
    from remedies.data import load_data

    s = load_data(recipe.config.data)  # the recipe's built-in data set ({name})
    train_set = TensorDataset(s.x_train, s.y_train)
    val_set = TensorDataset(s.x_val, s.y_val)
    input_shape, num_classes = s.input_shape, s.num_classes"""

MODEL_BUILTIN = """\
    from remedies.models import create_model

    model = create_model({name!r}, input_shape, num_classes, bn={bn!r}, width={width!r})"""


def _call(fn_name: str, kwargs: dict[str, Any], offered: list[str], path: str) -> str:
    """`fn(k=v, ..., offered=offered)`: the offered names passed where the signature takes them."""
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(resolve(path, "config")).parameters
    except (TypeError, ValueError):
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    args = [f"{k}={v!r}" for k, v in kwargs.items()]
    args += [f"{o}={o}" for o in offered if (takes_all or o in params) and o not in kwargs]
    return f"{fn_name}({', '.join(args)})"


def check_split(cfg: dict[str, Any], workers: int) -> None:
    """`--workers K` splits the recipe's batch evenly (K × train.accumulate); a batch given as a
    share of the data (`10%`) is checked by the script itself, where the data is."""
    acc = cfg["train"].get("accumulate") or 1
    b, n = cfg["train"]["batch_size"], workers * (1 if acc == "auto" else int(acc))
    if isinstance(b, int) and b % n:
        divisors = [k for k in range(1, b + 1) if b % k == 0 and k <= 64]
        raise ConfigError(
            "--workers",
            f"{workers} workers do not split the recipe's batch of {b} evenly; allowed: "
            f"{', '.join(map(str, divisors))}",
        )


def render_python(header: str, cfg: dict[str, Any], workers: int = 1) -> str:
    """The script for one exported run config (complete, as `remedies export` writes it). It
    runs alone and under `torchrun --nproc-per-node K` alike; `workers` names K in its usage
    and is checked against the recipe's batch sizes here, in one line, not in the user's job."""
    if workers > 1:
        check_split(cfg, workers)
    data, model = cfg["data"], cfg["model"]
    imports: list[str] = []
    helpers = ""
    if data.get("factory"):
        mod, fn = data["factory"].split(":")
        imports.append(f"from {mod} import {fn.split('.')[0]}  # your data factory")
        classes = (
            repr(data["num_classes"])
            if data.get("num_classes")
            else "1 + max(int(y) for ds in (train_set, val_set, test_set) for _, y in ds)"
        )
        call = _call(fn, data.get("kwargs") or {}, [], data["factory"])
        data_src = DATA_FACTORY.format(call=call, num_classes=classes)
        helpers = SPLITS_HELPER
    else:
        data_src = DATA_BUILTIN.format(name=data["name"])
    if model.get("factory"):
        mod, fn = model["factory"].split(":")
        imports.append(f"from {mod} import {fn.split('.')[0]}  # your model factory")
        call = _call(
            fn, model.get("kwargs") or {}, ["input_shape", "num_classes"], model["factory"]
        )
        model_src = f"    model = {call}"
    else:
        model_src = MODEL_BUILTIN.format(name=model["name"], bn=model["bn"], width=model["width"])
    shown = {k: v for k, v in cfg.items() if k != "measure"}
    recipe = yaml.safe_dump(shown, sort_keys=False, default_flow_style=None, width=96)
    run_workers = (
        f"\n    torchrun --nproc-per-node {workers} THIS_FILE   # {workers} data-parallel workers"
        if workers > 1
        else ""
    )
    text = TEMPLATE.format(
        run_workers=run_workers,
        header=header.rstrip("\n"),
        imports="\n".join(imports),
        recipe=recipe,
        data=data_src,
        model=model_src,
    )
    return text.replace("\n\ndef main()", helpers + "\n\ndef main()", 1) if helpers else text
