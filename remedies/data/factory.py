"""Your own data: `data.factory` ("pkg.module:function") returns (train, val, test), each an
(x, y) pair of tensors or arrays (held as `Splits`) or a torch Dataset (streamed as
`StreamSplits`). What it returns is checked once, here, so a wrong type, shape or label range is
one line naming data.factory instead of a traceback from deep inside training.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.data import Dataset

from remedies.config import DataConfig
from remedies.data.registry import _why
from remedies.data.splits import Splits, StreamSplits
from remedies.errors import ConfigError
from remedies.factories import call

SPLIT_NAMES = ("train", "val", "test")


def from_factory(cfg: DataConfig) -> Splits | StreamSplits:
    """Call `data.factory` and check what it returned, once: the wrong type or shape, mismatched
    lengths, non-finite inputs or labels out of range are one line naming data.factory."""
    path, field = str(cfg.factory), "data.factory"
    out = call(path, field, cfg.kwargs)
    if isinstance(out, Mapping):
        missing = [k for k in SPLIT_NAMES if k not in out]
        if missing:
            raise ConfigError(
                field,
                f"{path} returned a mapping without {', '.join(missing)}; "
                "expected keys train, val, test",
            )
        parts = [out[k] for k in SPLIT_NAMES]
    elif isinstance(out, (tuple, list)) and len(out) == 3:
        parts = list(out)
    else:
        raise ConfigError(
            field,
            f"{path} returned {_kind(out)}; expected (train, val, test), "
            "each an (x, y) pair of tensors or a torch Dataset",
        )
    datasets = [isinstance(p, Dataset) for p in parts]
    if all(datasets):
        return _stream_splits(parts, cfg, path)
    if any(datasets):
        raise ConfigError(
            field,
            f"{path} returned a mix of Datasets and (x, y) pairs; return "
            "all three splits the same way",
        )
    arrays: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name, part in zip(SPLIT_NAMES, parts, strict=True):
        if not (isinstance(part, (tuple, list)) and len(part) == 2):
            raise ConfigError(
                field,
                f"{path}'s {name} split is {_kind(part)}; expected an (x, y) "
                "pair of tensors or arrays, or a torch Dataset",
            )
        try:
            x, y = torch.as_tensor(part[0]), torch.as_tensor(part[1])
        except (TypeError, ValueError, RuntimeError) as e:
            raise ConfigError(field, f"{path}'s {name} split is not numeric ({_why(e)})") from None
        arrays.append((x, y))
    (xt, yt), (xv, yv), (xs, ys) = arrays
    for name, (x, y) in zip(SPLIT_NAMES, arrays, strict=True):
        _check_pair(path, name, x, y, xt.shape[1:])
    top = max(int(y.max()) for _, y in arrays if len(y))
    n = cfg.num_classes if cfg.num_classes is not None else top + 1
    if top >= n:
        raise ConfigError(
            field,
            f"{path}'s labels reach {top} but data.num_classes is {n}; allowed: labels 0..{n - 1}",
        )
    if n < 2:
        raise ConfigError(field, f"{path}'s labels hold one class; a classifier needs ≥ 2")
    return Splits(
        x_train=_as_float(xt),
        y_train=yt.long(),
        x_val=_as_float(xv),
        y_val=yv.long(),
        x_test=_as_float(xs),
        y_test=ys.long(),
        num_classes=n,
    )


def _kind(obj: object) -> str:
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)}"
    return f"a {type(obj).__name__}"


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _check_pair(
    path: str, name: str, x: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...]
) -> None:
    field = "data.factory"
    if x.dim() < 2 or len(x) != len(y):
        raise ConfigError(
            field,
            f"{path}'s {name} split: x {tuple(x.shape)} and y "
            f"{tuple(y.shape)}; expected x (N, ...) and y (N,)",
        )
    if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ConfigError(
            field,
            f"{path}'s {name} labels must be a 1-D integer tensor, got {y.dtype} {tuple(y.shape)}",
        )
    if len(y) and int(y.min()) < 0:
        raise ConfigError(field, f"{path}'s {name} labels hold {int(y.min())}; labels are 0..C-1")
    if x.shape[1:] != shape:
        raise ConfigError(
            field,
            f"{path}'s {name} samples have shape {tuple(x.shape[1:])}, the "
            f"train samples {tuple(shape)}",
        )
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ConfigError(field, f"{path}'s {name} inputs contain NaN or infinite values")
    if name == "train" and len(y) < 2:
        raise ConfigError(field, f"{path}'s train split needs at least 2 samples")


def _stream_splits(parts: list[Dataset], cfg: DataConfig, path: str) -> StreamSplits:
    """Datasets are checked on their first sample (reading them all would defeat streaming)."""
    field = "data.factory"
    if cfg.num_classes is None:
        raise ConfigError(
            "data.num_classes",
            f"is required when {path} returns Datasets (their labels are not read in advance)",
        )
    shape: tuple[int, ...] | None = None
    for name, ds in zip(SPLIT_NAMES, parts, strict=True):
        try:
            n = len(ds)  # type: ignore[arg-type]
            item = ds[0] if n else None
        except Exception as e:  # noqa: BLE001 - the user's Dataset
            raise ConfigError(
                field, f"{path}'s {name} Dataset fails to give its first sample ({_why(e)})"
            ) from None
        if item is None:
            if name == "train":
                raise ConfigError(field, f"{path}'s train Dataset is empty")
            continue
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ConfigError(
                field,
                f"{path}'s {name} Dataset gives {_kind(item)} per sample; expected an (x, y) pair",
            )
        x, y = torch.as_tensor(item[0]), torch.as_tensor(item[1])
        if y.dim() != 0 or y.is_floating_point() or not 0 <= int(y) < cfg.num_classes:
            raise ConfigError(
                field,
                f"{path}'s {name} Dataset's first label is {item[1]!r}; "
                f"allowed: an integer in 0..{cfg.num_classes - 1}",
            )
        if shape is None:
            shape = tuple(x.shape)
        elif tuple(x.shape) != shape:
            raise ConfigError(
                field,
                f"{path}'s {name} samples have shape {tuple(x.shape)}, the train samples {shape}",
            )
    train, val, test = parts
    return StreamSplits(
        train,
        val,
        test,
        num_classes=cfg.num_classes,
        input_shape=shape or (),
        workers=cfg.loader_workers,
    )
