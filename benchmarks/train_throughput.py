"""Training throughput: the engine vs a bare PyTorch loop on the same model, batch and data.

Goal: engine ≥ 0.95× the bare loop's samples/s at the large batch. Both are also reported as a
fraction of this machine's measured dense matmul rate, using the MLP's exact FLOP count
(forward 2·params-ish multiply-adds per sample, backward twice that).

    python benchmarks/train_throughput.py [--model F1] [--batch 10%] [--epochs 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from remedies.config import apply_overrides, parse_config
from remedies.data import load_data
from remedies.engine.trainer import build_model, pick_device, seed_everything, train


def matmul_gflops(device: torch.device, n: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def linear_flops_per_sample(model: torch.nn.Module) -> int:
    """Forward multiply-adds ×2 of the Linear/Conv layers; training ≈ 3× forward."""
    flops = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            flops += 2 * m.in_features * m.out_features
    return 3 * flops


def bare_loop(cfg, splits, device, epochs: int) -> float:
    """The plainest loop a user would write: same model, optimiser, batch size, data order rule."""
    seed_everything(cfg.train.seed)
    model = build_model(cfg, splits, device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    X, Y, n = splits.x_train, splits.y_train, splits.n_train
    b = cfg.train.resolve_batch_size(n)
    steps = n // b
    model.train()
    sync(device)
    t = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n).to(device)
        for i in range(steps):
            idx = perm[i * b : (i + 1) * b]
            loss = F.cross_entropy(model(X[idx]), Y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync(device)
    return epochs * steps * b / (time.perf_counter() - t)


def engine(cfg, splits) -> float:
    """Samples/s of the engine's step loops (its per-epoch `train_time_s`, evaluation excluded)."""
    r = train(cfg, splits=splits, measure=False, progress=False)
    return (
        r.epochs_run
        * (r.n_train // r.batch_size)
        * r.batch_size
        / sum(h["train_time_s"] for h in r.history)
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="F1")
    ap.add_argument("--batch", default="10%")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--num-samples", type=int, default=10000)
    args = ap.parse_args()
    raw = {
        "data": {"name": "mnist1d", "num_samples": args.num_samples},
        "model": {"name": args.model},
        "train": {"epochs": args.epochs},
    }
    cfg = parse_config(apply_overrides(raw, [f"train.batch_size={args.batch}"]))
    device = pick_device(cfg.train.device)
    splits = load_data(cfg.data).to(device)
    bare_loop(cfg, splits, device, 1)  # warm-up (allocator, kernels)
    bare, eng = [], []
    for _ in range(args.repeats):  # interleaved so drift on a shared machine hits both alike
        bare.append(bare_loop(cfg, splits, device, args.epochs))
        eng.append(engine(cfg, splits))
    peak = matmul_gflops(device)
    fps = linear_flops_per_sample(build_model(cfg, splits, device))
    b, e = statistics.median(bare), statistics.median(eng)
    print(
        f"device {device}, {args.model}, batch {cfg.train.resolve_batch_size(splits.n_train)}, "
        f"{args.epochs} epochs × {args.repeats} repeats (medians)"
    )
    print(f"matmul peak        {peak:8.1f} GFLOP/s")
    print(f"bare loop          {b:10.0f} samples/s  = {b * fps / 1e9 / peak:.3f} of matmul peak")
    print(f"engine             {e:10.0f} samples/s  = {e * fps / 1e9 / peak:.3f} of matmul peak")
    print(f"engine / bare      {e / b:.3f}×   (goal ≥ 0.95×)")


if __name__ == "__main__":
    main()
