"""Data on the device, a batch at a time: the trainer's training batches (index slices of
on-device tensors, or a DataLoader over a Dataset that does not fit), chunked evaluation, and
the subset the measures read. Kept apart from the loop so the loop reads top to bottom."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from remedies.config import RunConfig
from remedies.data import Splits, StreamSplits


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) in eval mode, in chunks weighted by their size."""
    if len(y) == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    loss, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device)
    for i in range(0, len(y), chunk):
        logits = model(x[i : i + chunk])
        loss += F.cross_entropy(logits, y[i : i + chunk], reduction="sum")
        correct += (logits.argmax(1) == y[i : i + chunk]).sum()
    model.train(was_training)
    return loss.item() / len(y), 100.0 * correct.item() / len(y)


@torch.no_grad()
def evaluate_split(
    model: nn.Module, splits: Splits | StreamSplits, which: str, chunk: int, device: torch.device
) -> tuple[float, float]:
    """`evaluate` on one split ("train", "val", "test"), tensors or a streamed Dataset."""
    if isinstance(splits, Splits):
        return evaluate(model, getattr(splits, f"x_{which}"), getattr(splits, f"y_{which}"), chunk)
    ds = getattr(splits, which)
    if len(ds) == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    loss, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    for x, y in _loader(ds, splits, device, batch_size=chunk):
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return loss.item() / len(ds), 100.0 * correct.item() / len(ds)


def _loader(
    ds, splits: StreamSplits, device: torch.device, seed: int = 0, **kw
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of a Dataset on `device`, inputs as the tensor path has them (uint8 → [0, 1])."""
    from torch.utils.data import DataLoader

    # its own generator: a DataLoader draws its workers' base seed from the global RNG otherwise,
    # which would shift every later draw (init, augmentation) away from the tensor path's
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        ds, num_workers=splits.workers, pin_memory=device.type == "cuda", generator=gen, **kw
    )
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        yield (
            x.float().div_(255.0) if x.dtype == torch.uint8 else x.float(),
            y.to(device, non_blocking=True).long(),
        )


def training_batches(
    splits: Splits | StreamSplits,
    perm: torch.Tensor,
    b: int,
    steps: int,
    device: torch.device,
    seed: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's training batches in the order of `perm`: index slices of on-device tensors,
    or the same index lists drawn from a Dataset by a DataLoader (data that does not fit)."""
    if isinstance(splits, Splits):
        perm = perm.to(device)
        X, Y = splits.x_train, splits.y_train
        for i in range(steps):
            idx = perm[i * b : (i + 1) * b]
            yield X[idx], Y[idx]
    else:
        yield from _loader(
            splits.train,
            splits,
            device,
            seed=seed,
            batch_sampler=perm[: steps * b].view(steps, b).tolist(),
        )


STREAM_MEASURE_SAMPLES = 2048  # measures on a streamed training set: a seeded subset this large


def measure_data(
    splits: Splits | StreamSplits, cfg: RunConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training data the sharpness measures see: all of it as tensors, or, for a streamed
    set, the seeded subset (`measure.max_samples`, else STREAM_MEASURE_SAMPLES) read once."""
    if isinstance(splits, Splits):
        return splits.x_train, splits.y_train
    k = min(splits.n_train, cfg.measure.max_samples or STREAM_MEASURE_SAMPLES)
    if k == splits.n_train:  # all of it, in order: what the tensor path measures
        idx = list(range(k))
    else:  # the subset `run_measures` would draw from tensors
        gen = torch.Generator().manual_seed(cfg.measure.subset_seed)
        idx = torch.randperm(splits.n_train, generator=gen)[:k].tolist()
    xs, ys = zip(*_loader(splits.train, splits, device, batch_sampler=[idx]), strict=True)
    return xs[0], ys[0]
