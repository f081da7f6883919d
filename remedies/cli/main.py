"""`remedies` command line: parse, validate, call, print. Bad input → one line on stderr, exit 2.

Each verb group is a module of this package with one `register(sub)`: `run` (train, validate),
`measure` (measure, interpolate), `search` (search), `results` (export, report, backup,
restore), `reproduce`. Imported lazily by `main`: Ray, MLflow and Optuna are paid for only by
the verbs that use them (seconds at start-up).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from remedies.errors import ConfigError

GROUPS = ("run", "measure", "search", "results", "reproduce")
# A Ray instance this process starts itself listens on 127.0.0.1 only. Ray 2.x has no public
# switch for that; this variable (read once, when `ray` is first imported: ray_constants) makes
# the node IP the loopback address, and every Ray server (GCS, raylet, workers, agents) binds to
# it. Why here: it must be set before anything imports Ray, and `remedies.search.runtime` imports
# Ray at its top — a switch set inside `start_ray` came too late and every socket of a local
# search listened on all interfaces (measured: 7 of 7 with `ss -ltnp`). Not with --address: a
# driver joining a remote cluster must advertise its real address. `start_ray` checks the result.
LOCAL_RAY_ENV = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="remedies", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        importlib.import_module(f"remedies.cli.{group}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "address", None) is None:
        os.environ.setdefault(*LOCAL_RAY_ENV)
    logging.basicConfig(format="remedies: %(levelname)s: %(message)s", level=logging.WARNING)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"remedies: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("remedies: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
