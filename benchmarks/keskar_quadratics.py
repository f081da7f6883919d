"""How close Keskar's 10-iteration L-BFGS-B gets to the exact box maximum on small convex
quadratics (the maximum sits at a vertex; all 2ⁿ are enumerated), per start rule.

    python benchmarks/keskar_quadratics.py [--n 10] [--seeds 6] [--iters 10]

The same family as tests/measures/test_oracles.py's vertex-enumeration test, without its
dominant direction: the hard case for a local method.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' quadratic oracle
from remedies.measures.keskar import keskar_sharpness  # noqa: E402
from tests.measures.test_oracles import D, Quadratic, random_psd, w_star  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    n, eps = args.n, 1e-3
    x = w_star(n)
    b = eps * (x.abs() + 1)
    vertices = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=n)), dtype=D) * b
    rules = {"random start": {}, "vertex start": {"init": "vertex"}, "restarts 3": {"restarts": 3}}
    rows = {k: [] for k in rules}
    for seed in range(args.seeds):
        spectrum = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=D) * 50
        h = random_psd(n, seed, spectrum)
        best = float((0.5 * ((vertices @ h) * vertices).sum(1)).max()) * 100
        for name, kw in rules.items():
            v = keskar_sharpness(Quadratic(h, x), eps, iters=args.iters, seed=seed, **kw).value
            rows[name].append(v / best)
    for name, r in rows.items():
        print(
            f"{name:>13}: share of the exact box maximum {min(r):.2f}–{max(r):.2f}  "
            f"({', '.join(f'{v:.3f}' for v in r)})"
        )


if __name__ == "__main__":
    main()
