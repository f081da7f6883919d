"""`remedies` command line: parse, validate, call, print. Bad input → one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from remedies.errors import ConfigError
from remedies.io import write_json


def cmd_train(args: argparse.Namespace) -> int:
    from remedies.config import load_config
    from remedies.data import load_data
    from remedies.trainer import train

    cfg = load_config(args.config, args.set)
    _check_precision(cfg)
    splits = load_data(cfg.data)
    # a too-large batch, or one that does not split over the workers, fails before any training
    cfg.train.resolve_batch_size(splits.n_train)
    _check_workers(cfg)
    result = train(cfg, splits=splits, out_dir=args.out, progress=not args.quiet)
    summary = result.summary()
    if args.json:
        write_json(args.json, summary)
    brief = {k: summary[k] for k in ("train_accuracy", "val_accuracy", "test_accuracy",
                                     "train_loss", "epochs_run", "diverged", "wall_time_s",
                                     "sharpness", "checkpoint")}  # fmt: skip
    print(json.dumps(brief, indent=2))
    return 0


def _check_precision(cfg) -> None:
    """train.precision on this machine's device (fp16 needs CUDA), before any data is read."""
    from remedies.precision import resolve_precision
    from remedies.trainer import pick_device

    resolve_precision(cfg.train, pick_device(cfg.train.device))


def _check_workers(cfg) -> None:
    """train.workers > 1: as many CPUs (GPUs) as Ray can place, before Ray starts anything."""
    if cfg.train.workers > 1:
        from remedies.workers import check_placeable

        check_placeable(cfg)


def cmd_validate(args: argparse.Namespace) -> int:
    import torch

    from remedies.config import load_config
    from remedies.data import load_data

    cfg = load_config(args.config, args.set)
    _check_precision(cfg)
    splits = load_data(cfg.data)
    n = splits.n_train
    b = cfg.train.resolve_batch_size(n)
    _check_workers(cfg)
    if cfg.model.factory is not None:  # the user's model is called and checked on this data
        from remedies.trainer import build_model

        build_model(cfg, splits, torch.device("cpu"))
    remedies = ", ".join(cfg.remedies) or "none"
    print(
        f"{args.config}: valid ({cfg.model.label} on {cfg.data.name or cfg.data.factory}, "
        f"{n} training samples, "
        f"batch {b}, {cfg.train.epochs} epochs, remedies: {remedies})"
    )
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from remedies.measures.cli import measure_command

    out = measure_command(args.checkpoint, args.measure or None, args.json)
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from remedies.measures.cli import interpolate_command

    out = interpolate_command(args.checkpoint_a, args.checkpoint_b, args.out, args.path)
    print(json.dumps(out, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="remedies", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

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

    m = sub.add_parser("measure", help="sharpness/curvature measures of a saved checkpoint")
    m.add_argument("checkpoint", type=Path)
    m.add_argument(
        "--measure",
        action="append",
        default=[],
        metavar="NAME",
        help="measure family or key (repeatable); default: the checkpoint's config",
    )
    m.add_argument("--json", type=Path, default=None)
    m.set_defaults(func=cmd_measure)

    i = sub.add_parser("interpolate", help="1-D loss/accuracy path between two checkpoints")
    i.add_argument("checkpoint_a", type=Path)
    i.add_argument("checkpoint_b", type=Path)
    i.add_argument("--out", type=Path, default=Path("interpolation"))
    i.add_argument("--path", choices=["linear", "curved"], default="linear")
    i.set_defaults(func=cmd_interpolate)

    from remedies.reproduce.cli import register as register_reproduce

    register_reproduce(sub)
    try:  # the search service's commands (search, export, report)
        from remedies.service.cli import register
    except ImportError:
        pass
    else:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="remedies: %(levelname)s: %(message)s", level=logging.WARNING)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"remedies: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("remedies: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
