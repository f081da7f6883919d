"""`remedies export | report | backup | restore`: read (or keep) a finished search."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from remedies.cli.search import DEFAULT_STORAGE
from remedies.errors import ConfigError
from remedies.results.export import export
from remedies.results.report import load_study, text_report, write_artifacts
from remedies.stores.backup import backup, restore

if TYPE_CHECKING:
    from remedies.config import RunConfig
    from remedies.engine.trainer import TrainResult


def _train_quietly(cfg: RunConfig) -> TrainResult:
    """One run of `export --confirm-seeds`: no measures, no per-epoch lines."""
    from remedies.launch import fit  # here: torch (and Ray, for K workers) only when confirming

    return fit(cfg, measure=False, progress=False)


def cmd_export(args: argparse.Namespace) -> int:
    paths = export(
        args.name,
        args.storage,
        args.pick,
        args.out,
        args.all_pareto,
        args.confirm_seeds,
        args.format,
        args.workers,
        train=_train_quietly,
    )
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    study = load_study(args.name, args.storage)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError("--out", f"{args.out} is a file; allowed: a folder (made if missing)")
    print(text_report(study))
    if args.out is not None:  # the parent run's figures and tables, from the study alone
        args.out.mkdir(parents=True, exist_ok=True)
        for p in write_artifacts(study, args.out):
            print(f"wrote {p}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    files = {"--storage": args.storage}
    if args.tracking_db:
        files["--tracking-db"] = args.tracking_db
    where = backup(files, args.to)
    print(f"backed up {', '.join(Path(f).name for f in files.values())} to {where.uri}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    got = restore(args.source, args.to, args.force)
    print(f"restored {', '.join(map(str, got))}" if got else f"nothing to restore in {args.source}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="write complete run configs of chosen trials of a search")
    e.add_argument("name")
    e.add_argument(
        "--pick",
        default="knee",
        metavar="HOW",
        help='pareto | best-accuracy | knee, or a rule: "max val_accuracy where '
        'speedup_vs_sb >= 2" (any metric a trial reports)',
    )
    e.add_argument("--out", type=Path, default=Path("best.yaml"))
    e.add_argument(
        "--all-pareto",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write every Pareto trial to DIR/trial_NNNN.yaml",
    )
    e.add_argument(
        "--format",
        choices=["yaml", "python"],
        default="yaml",
        help="yaml: a run config for `remedies train` (default); python: a runnable script that "
        "trains your model with the recipe in its own loop (library API); default --out best.py",
    )
    e.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="K",
        help="with --format python: a script for `torchrun --nproc-per-node K` (runs alone too)",
    )
    e.add_argument("--storage", default=DEFAULT_STORAGE)
    e.add_argument(
        "--confirm-seeds",
        type=int,
        default=0,
        metavar="K",
        help="re-train the top 3 candidates over K more seeds and pick on mean val "
        "accuracy (slower; the export shows per-seed val and test)",
    )
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="trials, Pareto front, and sharpness-vs-gap correlation")
    r.add_argument("name")
    r.add_argument("--storage", default=DEFAULT_STORAGE)
    r.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write the search's figures and tables (pareto.csv, the PNGs, answer.txt, "
        "sharpness_evidence.json) into this folder, as logged on its parent run (less the "
        "learning curves, which are MLflow's)",
    )
    r.set_defaults(func=cmd_report)

    b = sub.add_parser("backup", help="snapshot the study and MLflow SQLite files to a folder/URI")
    b.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna study file")
    b.add_argument("--tracking-db", default=None, help="MLflow's SQLite backend file, if any")
    b.add_argument("--to", required=True, help="folder or URI (s3://bucket/backups)")
    b.set_defaults(func=cmd_backup)

    o = sub.add_parser("restore", help="bring back the newest snapshot `remedies backup` made")
    o.add_argument("--from", dest="source", required=True, help="what `backup --to` was given")
    o.add_argument("--to", type=Path, default=Path("."), help="folder to write the files into")
    o.add_argument("--force", action="store_true", help="replace files that exist")
    o.set_defaults(func=cmd_restore)
