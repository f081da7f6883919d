"""`remedies reproduce`: parse, validate (one line, exit 2, nothing written), run, print."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from pydantic import ValidationError

from remedies.errors import ConfigError, describe


def _list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _batch(s: str) -> int | str:
    return int(s) if s.strip().isdigit() else s.strip()


def options(args: argparse.Namespace):
    from remedies.reproduce.protocol import ReproduceOptions  # here: start-up cost (torch, Ray)

    raw = {
        "nets": _list(args.nets),
        "data": args.data,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "overrides": args.set,
    }
    for key in ("until_train_acc", "loss_floor"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    if args.sb is not None:
        raw["sb"] = _batch(args.sb)
    if args.lb is not None:
        raw["lb"] = _batch(args.lb)
    if args.batch_sizes:
        raw["batch_sizes"] = [_batch(b) for b in _list(args.batch_sizes)]
    if args.warm_k:
        try:
            raw["warm_k"] = [int(k) for k in _list(args.warm_k)]
        except ValueError:
            raise ConfigError(
                "--warm-k", f"a comma list of integers ≥ 0, got {args.warm_k!r}"
            ) from None
    if args.fig_seeds is not None:
        raw["fig_seeds"] = args.fig_seeds
    if args.no_side_by_side:
        raw["side_by_side"] = False
    try:
        return ReproduceOptions.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        flag = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "reproduce"
        raise ConfigError(flag, describe(err)) from None


def cmd_reproduce(args: argparse.Namespace) -> int:
    from remedies.reproduce.driver import reproduce  # here: Ray takes seconds to import
    from remedies.reproduce.protocol import check_batches, plan  # (as above)

    opts = options(args)
    if args.jobs < 1:
        raise ConfigError("--jobs", f"must be ≥ 1, got {args.jobs}")
    gpu: float | str = args.gpu
    if gpu != "auto":
        try:
            gpu = float(gpu)
        except ValueError:
            gpu = -1.0
        if not 0 <= gpu:
            raise ConfigError("--gpu", f"'auto' or a number ≥ 0 (GPUs per run), got {args.gpu!r}")
    check_batches(plan(opts))  # every run is checked here, before Ray, MLflow or the folder
    # the report's command is the one that makes it: `--resume` continues it, it changes nothing
    given = [a for a in sys.argv[2:] if a != "--resume"]
    command = "remedies reproduce " + " ".join(shlex.quote(a) for a in given)
    try:
        s = reproduce(
            opts,
            Path(args.out),
            jobs=args.jobs,
            address=args.address,
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            quiet=args.quiet,
            command=command.strip(),
            markdown=args.report,
            gpu=gpu,
            resume=args.resume,
        )
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the finished runs are on disk
        hint = command.strip() + " --resume"
        print(
            f"remedies: reproduce interrupted; its finished runs are kept in {args.out}/runs/ "
            f"— continue with: {hint}",
            file=sys.stderr,
        )
        return 130
    print(f"wrote {s['report']}")
    for claim, ok, figs in s["checks"]:
        print(f"  {'held' if ok else 'did not hold'}: {claim} — {figs}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("reproduce", help="re-run Keskar et al. 2017's experiments, write a report")
    r.add_argument("--nets", default="F1", help="comma list of nets (F1,C1,…); default F1")
    r.add_argument(
        "--data",
        default=None,
        help="data set for every net, e.g. fashion_mnist (real images, offline; the report labels "
        "its rows with it, beside the paper's own data set); default: F1 → mnist1d, C1 → cifar10",
    )
    r.add_argument("--seeds", type=int, default=5, help="SB/LB pairs for Tables 2–4 (5)")
    r.add_argument(
        "--epochs",
        type=int,
        default=40,
        help="epochs per run (40); with --until-train-acc / --loss-floor, the budget",
    )
    r.add_argument(
        "--until-train-acc",
        type=float,
        default=None,
        metavar="PCT",
        help="train every run until its whole training set reads ≥ PCT %% accuracy (the "
        "paper's stopping point, ≈ 100), at most --epochs epochs",
    )
    r.add_argument(
        "--loss-floor",
        type=float,
        default=None,
        help="or until its training loss is ≤ this (whichever comes first)",
    )
    r.add_argument("--sb", default=None, help="small batch (256, the paper's)")
    r.add_argument("--lb", default=None, help="large batch (10%%, the paper's)")
    r.add_argument("--batch-sizes", default=None, help="Fig. 4 batch sizes, e.g. 128,256,10%%")
    r.add_argument("--warm-k", default=None, help="Fig. 5 SB epochs before LB, e.g. 0,2,5,10")
    r.add_argument("--fig-seeds", type=int, default=None, help="seeds for Fig. 4 and 5 (1)")
    r.add_argument(
        "--no-side-by-side",
        action="store_true",
        help="skip λ_max, trace and noise scale on seed 0's pair",
    )
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a key of every run's config, e.g. data.num_samples=4000",
    )
    r.add_argument(
        "--out",
        type=Path,
        default=Path("reproduction"),
        help="folder for the PNGs, CSVs and results.json",
    )
    r.add_argument(
        "--report", type=Path, default=None, help="where the Markdown goes (default OUT/report.md)"
    )
    r.add_argument("--jobs", type=int, default=2, help="runs at once (Ray tasks)")
    r.add_argument(
        "--gpu",
        default="auto",
        help="GPUs per run: a number, or auto (the GPUs up shared by --jobs runs)",
    )
    r.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    r.add_argument("--tracking-uri", default=None)
    r.add_argument("--experiment", default="reproduce")
    r.add_argument("--quiet", action="store_true")
    r.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs an interrupted invocation of the same command finished (OUT/runs/)",
    )
    r.set_defaults(func=cmd_reproduce)
