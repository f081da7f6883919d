"""`remedies measure | interpolate`: sharpness of a saved checkpoint, and the path between two."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from remedies.measures.cli import interpolate_command, measure_command


def cmd_measure(args: argparse.Namespace) -> int:

    out = measure_command(args.checkpoint, args.measure or None, args.json)
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:

    out = interpolate_command(args.checkpoint_a, args.checkpoint_b, args.out, args.path)
    print(json.dumps(out, indent=2, default=str))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
