"""`remedies train | validate`: one run config, trained or checked."""

from __future__ import annotations

import argparse
import json
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from remedies.config import load_config
from remedies.data import load_data
from remedies.engine.precision import resolve_precision
from remedies.engine.trainer import build_model, pick_device
from remedies.io import write_json
from remedies.launch import fit
from remedies.workers import check_placeable


def cmd_train(args: argparse.Namespace) -> int:

    cfg = load_config(args.config, args.set)
    _check_precision(cfg)
    splits = load_data(cfg.data)
    # a too-large batch, or one that does not split over the workers, fails before any training
    cfg.train.resolve_batch_size(splits.n_train)
    _check_workers(cfg)
    with _ray_for(cfg):  # K workers: Ray up for the run (its one start-up, with the search's)
        result = fit(cfg, splits=splits, out_dir=args.out, progress=not args.quiet)
    summary = result.summary()
    if args.json:
        write_json(args.json, summary)
    brief = {
        k: summary[k]
        for k in (
            "train_accuracy",
            "val_accuracy",
            "test_accuracy",
            "train_loss",
            "epochs_run",
            "diverged",
            "wall_time_s",
            "sharpness",
            "checkpoint",
        )
    }
    print(json.dumps(brief, indent=2))
    return 0


def _check_precision(cfg) -> None:
    """train.precision on this machine's device (fp16 needs CUDA), before any data is read."""

    resolve_precision(cfg.train, pick_device(cfg.train.device))


def _ray_for(cfg) -> AbstractContextManager[None]:
    if cfg.train.workers == 1:
        return nullcontext()
    from remedies.search.runtime import ray_session  # here: Ray takes seconds to import

    return ray_session(None)


def _check_workers(cfg) -> None:
    """train.workers > 1: as many CPUs (GPUs) as Ray can place, before Ray starts anything."""
    if cfg.train.workers > 1:
        check_placeable(cfg)


def cmd_validate(args: argparse.Namespace) -> int:

    cfg = load_config(args.config, args.set)
    _check_precision(cfg)
    splits = load_data(cfg.data)
    n = splits.n_train
    b = cfg.train.resolve_batch_size(n)
    _check_workers(cfg)
    if cfg.model.factory is not None:  # the user's model is called and checked on this data
        build_model(cfg, splits, torch.device("cpu"))
    remedies = ", ".join(cfg.remedies) or "none"
    print(
        f"{args.config}: valid ({cfg.model.label} on {cfg.data.name or cfg.data.factory}, "
        f"{n} training samples, "
        f"batch {b}, {cfg.train.epochs} epochs, remedies: {remedies})"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train one run config")
    t.add_argument("config", type=Path)
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override any config key, e.g. --set train.batch_size=10%%",
    )
    t.add_argument("--out", type=Path, default=None, help="folder for checkpoint.pt")
    t.add_argument("--json", type=Path, default=None, help="write the full JSON summary here")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    t.set_defaults(func=cmd_train)

    v = sub.add_parser("validate", help="check a run config (and its data) without training")
    v.add_argument("config", type=Path)
    v.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    v.set_defaults(func=cmd_validate)
