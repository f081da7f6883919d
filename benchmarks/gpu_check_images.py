"""GPU check: Fashion-MNIST on C1 — engine vs a bare bf16 loop, bf16 vs fp32, LB vs SB, measures.

Prints, each as one line (and a JSON summary at the end):
  1. samples/s of the engine (`remedies.engine.trainer.train`) and of a bare hand-written bf16 +
     channels-last loop on C1, full Fashion-MNIST, at SB 256 and LB 10 %, and engine ÷ bare;
  2. bf16 vs fp32 samples/s of the engine on C1 (SB 256);
  3. LB 10 % vs SB 256 time per epoch (engine, bf16);
  4. the measures' cost (`measure:` defaults, Keskar sharpness) per LB epoch;
  5. F1 trials per hour with 1, 4 and 8 trials at once on the device (`--packing`), each trial
     its own process as Ray runs them, and the ratio to one at a time.
Every speed is taken from the epoch after a warm-up epoch (cuDNN autotuning, allocator).

    python benchmarks/gpu_check_images.py [--tiny] [--data DIR] [--epochs N] [--json FILE]
                                          [--packing 1,4,8]

--tiny: 6 000 images, C1 at width 0.25, CPU allowed (a quick check of the script itself);
DIR: a folder with the four Fashion-MNIST IDX files (default Debian's
/usr/share/datasets/fashion-mnist, or $FASHION_MNIST_DIR).

On a lent GPU machine (/work/.library/device/README.md): its image has torch but not pydantic,
and no Debian data set; both travel with the working tree. Once, here, in the repo's root:

    echo /.whl/ >> .git/info/exclude; echo /.fm/ >> .git/info/exclude
    mkdir -p .fm && cp /usr/share/datasets/fashion-mnist/*.gz .fm/      # 30 MiB
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
        typing-inspection==0.4.5                                          # ≈ 2.5 MiB

then run with carry [".fm", ".whl"], timeout_s 540, and the command

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \
    FASHION_MNIST_DIR=.fm bash benchmarks/gpu_check_images.sh

(the .sh tees everything to $OUT/log, so the lines printed before a timeout come back).

The full-size `remedies reproduce` of C1 on Fashion-MNIST (all 60 000 images → 54 000 train,
SB 256 vs LB 10 % = 5400, the paper's 5 seeds and its code's 20 epochs, C1 at full width, Fig. 4
at 256, 512, 10, 20, 35, 50 %, Fig. 5 at k ∈ {0, 2, 5}; the report labels its rows "C1 /
Fashion-MNIST (this run)" beside "C1 / CIFAR-10 (paper)") — not run here; on the lent machine
with the same carry and pip line as above, ending instead with

    remedies reproduce --nets C1 --data fashion_mnist --set data.path=.fm --seeds 5 \
        --epochs 20 --sb 256 --lb 10% --batch-sizes 256,512,10%,20%,35%,50% --warm-k 0,2,5 \
        --jobs 4 --gpu auto --out $OUT/reproduction_fmnist \
        --report $OUT/reproduction_fmnist/report.md

(`python3 -m remedies` where the console script is not installed; it needs Ray and MLflow
beside torch and pydantic.)
Estimated H100 time at full size: about 3 minutes — C1 is ≈ 0.14 GFLOP per training sample,
≈ 8 TFLOP per 54 000-image epoch, so each of the ~12 timed or warm-up epochs takes a few seconds
at most (launch-bound at SB 256); the Keskar measure on the LB model is the longest part
(tens of seconds); data loading ≈ 3 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from remedies.config import parse_config  # noqa: E402
from remedies.data import Splits, load_data  # noqa: E402
from remedies.engine.trainer import pick_device, train  # noqa: E402
from remedies.models import create_model  # noqa: E402


def log(msg: str) -> None:
    print(msg, flush=True)


def base_config(args: argparse.Namespace, batch: int | str, precision: str, epochs: int) -> dict:
    data: dict = {"name": "fashion_mnist", "val_fraction": 0.1}
    if args.data:
        data["path"] = args.data
    if args.tiny:
        data["subset"] = 6000  # LB 10 % = 540 > SB 256
    return {
        "data": data,
        "model": {"name": "C1", "width": 0.25 if args.tiny else 1.0},
        "train": {
            "epochs": epochs,
            "batch_size": batch,
            "precision": precision,
            "checkpoint": False,
        },
        "measure": {"keskar": {"enabled": False}},
    }


def f1_trial(job: tuple[str | None, bool, int]) -> float:
    """One F1 trial on Fashion-MNIST at LB 10 %, bf16 where the device has it (in its own
    process: the packing check); returns its wall time."""
    path, tiny, epochs = job
    t = time.perf_counter()
    data: dict = {"name": "fashion_mnist", **({"path": path} if path else {})}
    if tiny:
        data["subset"] = 3000
    cfg = parse_config({
        "data": data, "model": {"name": "F1", "width": 0.25 if tiny else 1.0},
        "train": {"epochs": epochs, "batch_size": "10%", "checkpoint": False},
        "measure": {"keskar": {"enabled": False}},
    })  # fmt: skip
    train(cfg, progress=False, measure=False)
    return time.perf_counter() - t


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# the GPU-sized spaces' search setting (search_spaces/keskar_*.yaml)
GPU_SPACE_MEASURE = {"keskar": {"eps": [1e-3], "iters": 5, "init": "vertex"}, "max_samples": 1000}


def engine(
    args, splits: Splits, batch, precision: str, measure: bool = False, section: dict | None = None
) -> dict:
    """One engine run of warm-up + timed epochs; speed from the last epoch only. `section`: the
    measure section (default: the defaults, Keskar sharpness as `remedies train` measures it)."""
    raw = base_config(args, batch, precision, args.epochs)
    if measure:
        raw["measure"] = section or {}
    cfg = parse_config(raw)
    r = train(cfg, splits=splits, progress=False, measure=measure)
    last = r.history[-1]
    n = last["batch_size"] * (r.n_train // last["batch_size"])
    return {
        "samples_per_s": n / last["train_time_s"],
        "epoch_s": last["train_time_s"],
        "batch": r.batch_size,
        "precision": r.precision,
        "channels_last": r.channels_last,
        "measure_s": r.measure_time_s,
        "test_accuracy": r.test_accuracy,
    }


def bare(args, splits: Splits, batch: int, device: torch.device) -> dict:
    """A hand-written loop: C1, Adam, bf16 autocast, channels-last, the same batching."""
    torch.manual_seed(0)
    model = create_model(
        "C1", splits.input_shape, splits.num_classes, width=0.25 if args.tiny else 1.0
    ).to(device)
    cl = device.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    X, Y, n = splits.x_train, splits.y_train, splits.n_train
    steps = n // batch
    gen = torch.Generator().manual_seed(0)
    epoch_s = 0.0
    for _ in range(args.epochs):
        sync(device)
        t = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(device)
        model.train()
        for i in range(steps):
            idx = perm[i * batch : (i + 1) * batch]
            x, y = X[idx], Y[idx]
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        epoch_s = time.perf_counter() - t
    return {"samples_per_s": steps * batch / epoch_s, "epoch_s": epoch_s, "batch": batch}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="6 000 images, narrow C1 (CPU check)")
    ap.add_argument(
        "--data",
        default=os.environ.get("FASHION_MNIST_DIR"),
        help="folder with the four Fashion-MNIST IDX files",
    )
    ap.add_argument("--epochs", type=int, default=2, help="warm-up epochs + 1 timed (default 2)")
    ap.add_argument("--json", type=Path, help="write the numbers here too")
    ap.add_argument(
        "--packing", default="1,4,8", help="F1 trials at once on the device (default 1,4,8)"
    )
    args = ap.parse_args()
    device = pick_device("auto")
    if device.type != "cuda" and not args.tiny:
        log("no CUDA GPU: full size would take long on a CPU; use --tiny")
        return 2
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    log(f"device {name}  torch {torch.__version__}  tiny={args.tiny}  epochs={args.epochs}")
    t0 = time.perf_counter()
    cfg = parse_config(base_config(args, 256, "auto", 1))
    splits = load_data(cfg.data).to(device)
    log(
        f"data: {splits.n_train} train images {tuple(splits.input_shape)} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    lb = round(0.1 * splits.n_train)
    out: dict = {"device": name, "tiny": args.tiny, "n_train": splits.n_train}

    # 1. engine vs bare loop, bf16 (CPU: bf16 autocast too), SB 256 and LB 10 %
    for label, b in (("SB", 256), ("LB", lb)):
        e = engine(args, splits, b, "bf16")
        log(
            f"[1] engine {label} {b:5d} bf16: {e['samples_per_s']:10.0f} samples/s "
            f"({e['epoch_s']:.2f} s/epoch, channels_last={e['channels_last']})"
        )
        r = bare(args, splits, b, device)
        ratio = e["samples_per_s"] / r["samples_per_s"]
        log(
            f"[1] bare   {label} {b:5d} bf16: {r['samples_per_s']:10.0f} samples/s "
            f"({r['epoch_s']:.2f} s/epoch)  engine/bare = {ratio:.2f}"
        )
        out[f"engine_{label}"], out[f"bare_{label}"], out[f"ratio_{label}"] = e, r, ratio

    # 2. bf16 vs fp32 (engine, SB 256)
    f32 = engine(args, splits, 256, "fp32")
    speed = out["engine_SB"]["samples_per_s"] / f32["samples_per_s"]
    log(f"[2] engine SB 256 fp32: {f32['samples_per_s']:10.0f} samples/s; bf16/fp32 = {speed:.2f}")
    out["engine_SB_fp32"], out["bf16_over_fp32"] = f32, speed

    # 3. LB 10 % vs SB 256 time per epoch (bf16)
    lb_sb = out["engine_LB"]["epoch_s"] / out["engine_SB"]["epoch_s"]
    log(
        f"[3] epoch time LB {lb} / SB 256 = {out['engine_LB']['epoch_s']:.2f} s / "
        f"{out['engine_SB']['epoch_s']:.2f} s = {lb_sb:.2f}"
    )
    out["lb_over_sb_epoch"] = lb_sb

    # 4. the measures' cost per LB epoch (default measure section, fp32 measures)
    m = engine(args, splits, lb, "bf16", measure=True)
    per = m["measure_s"] / m["epoch_s"]
    log(
        f"[4] measures on the LB model: {m['measure_s']:.1f} s = {per:.1f} LB epochs "
        f"({m['epoch_s']:.2f} s each)"
    )
    out["measure_s"], out["measure_per_lb_epoch"] = m["measure_s"], per
    g = engine(args, splits, lb, "bf16", measure=True, section=GPU_SPACE_MEASURE)
    log(
        f"[4] the GPU spaces' search setting {json.dumps(GPU_SPACE_MEASURE)}: "
        f"{g['measure_s']:.2f} s = {g['measure_s'] / g['epoch_s']:.2f} LB epochs"
    )
    out["space_measure_s"] = g["measure_s"]

    # 5. packing: K F1 trials at once on the one device, each its own process (as Ray runs
    # trials), against one at a time: trials per hour, and the ratio to K = 1
    ks = [int(k) for k in args.packing.split(",") if k.strip()]
    per_hour: dict[int, float] = {}
    for k in ks:
        t1 = time.perf_counter()
        with mp.get_context("spawn").Pool(k) as pool:
            pool.map(f1_trial, [(args.data, args.tiny, args.epochs)] * k)
        per_hour[k] = 3600 * k / (time.perf_counter() - t1)
        log(f"[5] {k} F1 trial(s) at once: {per_hour[k]:.0f} trials/h "
            f"({per_hour[k] / per_hour[ks[0]]:.2f}× {ks[0]} at once)")  # fmt: skip
    out["f1_trials_per_hour"] = per_hour

    # 6. train.accumulate: auto under a memory cap (tests/test_accumulate.py's GPU case)
    if device.type == "cuda":
        out["accumulate_auto"] = accumulate_auto()
    else:
        log("[6] accumulate auto: no CUDA device (auto is 1 on CPU), skipped")
    out["wall_s"] = time.perf_counter() - t0
    log(f"total {out['wall_s']:.0f} s")
    log(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


def accumulate_auto() -> dict:
    """A 4096-wide MLP on 4096 samples at batch 4096 with the process capped at 160 MB over what
    it holds: auto must pick N > 1, train, and equal the run with that N set by hand."""
    base = {
        "data": {
            "factory": "tests.factories:blobs",
            "kwargs": {"n_train": 4096, "n_val": 64, "n_test": 64, "dim": 512, "classes": 3},
        },
        "model": {"factory": "tests.factories:mlp", "kwargs": {"hidden": 4096}},
        "train": {
            "batch_size": 4096,
            "epochs": 1,
            "lr": 3e-3,
            "seed": 1,
            "device": "cuda",
            "checkpoint": False,
            "accumulate": "auto",
        },  # fmt: skip
        "measure": {"keskar": {"enabled": False}},
    }
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_allocated(0) + 160e6) / total)
    try:
        auto = train(parse_config(base), progress=False, measure=False)
        n = auto.accumulate
        fixed = train(
            parse_config({**base, "train": {**base["train"], "accumulate": n}}),
            progress=False,
            measure=False,
        )
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    a, b = auto.model.state_dict(), fixed.model.state_dict()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    log(f"[6] accumulate auto under a 160 MB cap: N = {n} (want > 1); max weight diff vs N "
        f"set by hand {diff:.1e}")  # fmt: skip
    return {"n": n, "max_diff": diff}


if __name__ == "__main__":
    sys.exit(main())
