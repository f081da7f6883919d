"""Why Table 4 (Keskar sharpness in a random p = 100 subspace) reads LB flatter on F1/MNIST-1D.

Trains the SB (64) / LB (10 %) pair of one seed with docs/reproduction.md's settings, then
measures the subspace metric with A's columns at three lengths — unit (the spec's A = pinv of
normalised rows), scaled so the subspace box reaches as far as the full box ("matched"), and √n
(A with unit-scale entries) — beside the full-space value, the gradient norm at each minimum and
each maximum's reach ‖A y*‖. docs/measures.md, *Which readings to trust*, quotes its output.

    python benchmarks/keskar_subspace_reach.py --seed 0      # ≈ 4 min on 2 cores
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import remedies.measures.keskar as K
from remedies.config import parse_config
from remedies.data import load_data
from remedies.engine.trainer import train
from remedies.measures.objective import ModelObjective


def config(batch: int | str, seed: int):
    return parse_config(
        {
            "data": {"name": "mnist1d", "num_samples": 5000},
            "model": {"name": "F1"},
            "train": {
                "optimizer": "adam",
                "lr": 1e-3,
                "epochs": 40,
                "threads": 1,
                "checkpoint": False,
                "seed": seed,
                "batch_size": batch,
            },
            "measure": {"keskar": {"enabled": False}},
        }
    )


def scaled_subspace(scale: float):
    """random_subspace with A's columns `scale` times as long (A⁺'s rows 1/scale as long)."""
    plain = K.random_subspace

    def make(n, p, seed, dtype, device):
        pinv, gram_inv = plain(n, p, seed, dtype, device)
        return pinv / scale, gram_inv * scale**2

    return make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-3, 5e-4])
    a = ap.parse_args()
    torch.set_num_threads(1)
    splits = load_data(config(64, a.seed).data)
    plain = K.random_subspace
    for name, batch in (("SB", 64), ("LB", "10%")):
        model = train(config(batch, a.seed), splits=splits, progress=False).model.eval()
        obj = ModelObjective(model, splits.x_train, splits.y_train).with_dtype(torch.float64)
        w, n = obj.w0, obj.w0.numel()
        f0, g = obj.loss_grad(w)
        full_reach = float(((w.abs() + 1) ** 2).sum().sqrt())  # ‖b‖ / ε of the full box
        print(f"{name}: f(x) {f0:.3e}  ‖∇f‖ {float(g.norm()):.3e}  n {n}")
        for eps in a.eps:
            r = K.keskar_sharpness(obj, eps)
            print(f"  full        ε={eps:.0e}: {r.value:10.4g}  reach {r.reach:.3g}")
        scales = {"unit": 1.0, "matched": full_reach / np.sqrt(100), "sqrt_n": float(np.sqrt(n))}
        for label, scale in scales.items():
            K.random_subspace = scaled_subspace(scale)
            try:
                for eps in a.eps:
                    r = K.keskar_sharpness(obj, eps, subspace_dim=100)
                    print(
                        f"  sub100 {label:7s} ε={eps:.0e}: {r.value:10.4g}  reach {r.reach:.3g}"
                        f"  value/first-order {r.value / r.first_order:.3g}"
                    )
            finally:
                K.random_subspace = plain


if __name__ == "__main__":
    main()
