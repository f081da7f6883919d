"""`remedies measure | interpolate`: sharpness of a saved checkpoint, and the path between two.

The command's work (load a checkpoint and its data, run the measures, write JSON / CSV / PNG)
lives here, in the CLI, so `remedies.measures` stays maths on plain torch models.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from remedies.data import load_data
from remedies.engine.checkpoint import load_checkpoint, load_checkpoint_config
from remedies.engine.trainer import pick_device
from remedies.errors import ConfigError
from remedies.io import write_json
from remedies.measures.interpolation import interpolate, plot_interpolation, write_csv
from remedies.measures.runner import run_measures


def _load(checkpoint: Path):
    # load once on CPU just to read the config, then on the configured device
    model, cfg, metrics = load_checkpoint(Path(checkpoint), "cpu")
    device = pick_device(cfg.train.device)
    splits = load_data(cfg.data, device)
    if str(device) != "cpu":
        model, cfg, metrics = load_checkpoint(Path(checkpoint), device, splits=splits)
    return model, cfg, metrics, splits


def _label(ckpt: Path) -> str:
    """'runs/lb/checkpoint.pt' → 'lb': run folders name runs better than the file does."""
    p = Path(ckpt)
    return p.parent.name if p.stem == "checkpoint" and p.parent.name else p.stem


def measure_command(
    checkpoint: Path, names: list[str] | None, json_out: Path | None
) -> dict[str, Any]:
    """Measures of a saved model on its full training set: the checkpoint config's `measure:`
    section, or only `names` (families or keys). Returns and optionally writes
    {checkpoint, sharpness: {key: value}, details: [...]}."""
    model, cfg, _, splits = _load(checkpoint)
    t0 = time.perf_counter()
    values, details = run_measures(model, splits.x_train, splits.y_train, cfg.measure, names=names)
    out = {
        "checkpoint": str(checkpoint),
        "sharpness": values,
        "details": details,
        "wall_time_s": time.perf_counter() - t0,
    }
    if json_out is not None:
        write_json(json_out, out)
    return out


def interpolate_command(
    ckpt_a: Path, ckpt_b: Path, out_dir: Path, path: str = "linear"
) -> dict[str, Any]:
    """Loss/accuracy along the path from checkpoint A (α = 0) to B (α = 1), α ∈ [−1, 2], on A's
    training and test data; writes interpolation_{path}.png and .csv into out_dir."""
    model_a, cfg, _, splits = _load(ckpt_a)
    cfg_b = load_checkpoint_config(Path(ckpt_b))
    if (cfg_b.model, cfg_b.data) != (cfg.model, cfg.data):
        raise ConfigError(
            "checkpoint_b",
            f"{ckpt_b} has another model or data set than {ckpt_a}; "
            "interpolation needs two runs of the same network on the same data",
        )
    model_b, _, _ = load_checkpoint(Path(ckpt_b), splits.x_train.device, splits=splits)
    table = interpolate(
        model_a,
        model_b,
        (splits.x_train, splits.y_train),
        (splits.x_test, splits.y_test),
        path=path,  # type: ignore[arg-type]
        chunk_size=cfg.measure.chunk_size,
    )
    out_dir = Path(out_dir)
    csv_path = write_csv(table, out_dir / f"interpolation_{path}.csv")
    png_path = plot_interpolation(
        table,
        out_dir / f"interpolation_{path}.png",
        labels=(_label(ckpt_a), _label(ckpt_b)),
        title=f"{path} path",
    )
    return {"png": str(png_path), "csv": str(csv_path), "path": path, "table": table}


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
