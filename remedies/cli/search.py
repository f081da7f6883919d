"""`remedies search`: run or resume one search (Ray Tune + Optuna, logged to MLflow)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_STORAGE = "remedies_studies.db"


def cmd_search(args: argparse.Namespace) -> int:
    """Exit 0: finished with a complete trial; 1: finished with none; 130: interrupted (the
    resume command is printed); 2: bad input, before anything was created."""
    # here, not at the top: Ray and Tune take seconds to import, paid only by this verb
    from remedies.search.driver import SearchOptions, run_search
    from remedies.search.space import load_space

    space = load_space(args.space, args.set)  # every error surfaces here, before Ray or MLflow

    opts = SearchOptions(
        name=args.name,
        num_samples=args.num_samples,
        max_concurrent=args.max_concurrent,
        tracking_uri=args.tracking_uri,
        storage=args.storage,
        address=args.address,
        resume=args.resume,
        results_dir=args.results_dir,
        experiment=args.experiment,
        quiet=args.quiet,
    )
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
        print(
            f"\nnext: remedies report {s.name}   |   remedies export {s.name} --out best.yaml"
            f"   |   mlflow ui --backend-store-uri sqlite:///mlflow.db"
        )
    else:
        print("\nno trial completed: see the failures above and in MLflow", file=sys.stderr)
    return s.exit_code


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("search", help="search a space file with Ray Tune + Optuna, log to MLflow")
    s.add_argument("space", type=Path, help="search_spaces/*.yaml")
    s.add_argument("--name", default=None, help="search name (default: SPACE-DATE-TIME)")
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a key of the space file, e.g. --set base.data.path=data.npz "
        "--set num_samples=4 --set params.train.lr.high=0.1",
    )
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
