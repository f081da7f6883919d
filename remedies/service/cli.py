"""`remedies search | export | report` — thin: parse, validate, call, print."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_STORAGE = "remedies_studies.db"


def cmd_search(args: argparse.Namespace) -> int:
    """Exit 0: finished with a complete trial; 1: finished with none; 130: interrupted (the
    resume command is printed); 2: bad input, before anything was created."""
    from remedies.service.driver import SearchOptions, run_search
    from remedies.service.space import load_space

    space = load_space(args.space, args.set)  # every error surfaces here, before Ray or MLflow

    opts = SearchOptions(name=args.name, num_samples=args.num_samples,
                         max_concurrent=args.max_concurrent, tracking_uri=args.tracking_uri,
                         storage=args.storage, address=args.address, resume=args.resume,
                         results_dir=args.results_dir, experiment=args.experiment,
                         quiet=args.quiet)  # fmt: skip
    s = run_search(space, opts, space_path=str(args.space))
    counts = ", ".join(f"{v} {k}" for k, v in sorted(s.counts.items()))
    print(f"\nsearch {s.name}: {s.trials} trials ({counts}) in {s.wall_time_s:.0f}s")
    print(f"Pareto front ({len(s.front)} trials):\n{s.table}")
    if s.answer:
        print(f"\n{s.answer}")
    if s.log_file:
        print(f"\nRay's own log of the failures: {s.log_file}", file=sys.stderr)
    if s.error:
        print(f"\nremedies: error: {s.error}\ncontinue it with: {s.resume_hint}", file=sys.stderr)
    elif s.interrupted:
        print(f"\nsearch interrupted; continue it with: {s.resume_hint}", file=sys.stderr)
    elif s.exit_code == 0:
        print(f"\nnext: remedies report {s.name}   |   remedies export {s.name} --out best.yaml"
              f"   |   mlflow ui --backend-store-uri sqlite:///mlflow.db")  # fmt: skip
    else:
        print("\nno trial completed: see the failures above and in MLflow", file=sys.stderr)
    return s.exit_code


def cmd_export(args: argparse.Namespace) -> int:
    from remedies.service.export import export

    paths = export(args.name, args.storage, args.pick, args.out, args.all_pareto,
                   args.confirm_seeds, args.format)  # fmt: skip
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from remedies.service.report import load_study, text_report

    print(text_report(load_study(args.name, args.storage)))
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from remedies.service.backup import backup

    files = {"--storage": args.storage}
    if args.tracking_db:
        files["--tracking-db"] = args.tracking_db
    where = backup(files, args.to)
    print(f"backed up {', '.join(Path(f).name for f in files.values())} to {where.uri}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from remedies.service.backup import restore

    got = restore(args.source, args.to, args.force)
    print(f"restored {', '.join(map(str, got))}" if got else f"nothing to restore in {args.source}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("search", help="search a space file with Ray Tune + Optuna, log to MLflow")
    s.add_argument("space", type=Path, help="search_spaces/*.yaml")
    s.add_argument("--name", default=None, help="search name (default: SPACE-DATE-TIME)")
    s.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a key of the space file, e.g. --set base.data.path=data.npz "
                   "--set num_samples=4 --set params.train.lr.high=0.1")  # fmt: skip
    s.add_argument("--num-samples", type=int, default=None, help="trials (overrides the file)")
    s.add_argument("--max-concurrent", type=int, default=None, help="trials at once")
    s.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow: sqlite:///mlflow.db (default) or http://HOST:PORT",
    )
    s.add_argument("--experiment", default=None, help="MLflow experiment (default: space name)")
    s.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"Optuna study storage: file or DB URL (default {DEFAULT_STORAGE})",
    )
    s.add_argument("--address", default=None, help="existing Ray cluster (default: local)")
    s.add_argument("--resume", action="store_true", help="continue the search --name")
    s.add_argument("--results-dir", default="ray_results", help="Tune's trial folders")
    s.add_argument("--quiet", action="store_true", help="no live progress table")
    s.set_defaults(func=cmd_search)

    e = sub.add_parser("export", help="write complete run configs of chosen trials of a search")
    e.add_argument("name")
    e.add_argument("--pick", default="knee", metavar="HOW",
                   help='pareto | best-accuracy | knee, or a rule: "max val_accuracy where '
                   'speedup_vs_sb >= 2" (any metric a trial reports)')  # fmt: skip
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
    e.add_argument("--storage", default=DEFAULT_STORAGE)
    e.add_argument("--confirm-seeds", type=int, default=0, metavar="K",
                   help="re-train the top 3 candidates over K more seeds and pick on mean val "
                   "accuracy (slower; the export shows per-seed val and test)")  # fmt: skip
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="trials, Pareto front, and sharpness-vs-gap correlation")
    r.add_argument("name")
    r.add_argument("--storage", default=DEFAULT_STORAGE)
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
