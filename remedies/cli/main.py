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
import sys

from remedies.errors import ConfigError

GROUPS = ("run", "measure", "search", "results", "reproduce")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="remedies", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        importlib.import_module(f"remedies.cli.{group}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
