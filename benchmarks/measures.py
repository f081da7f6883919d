"""Benchmark of the curvature measures on one model and one data set, printed as ratios.

    python benchmarks/measures.py [--samples 60000] [--epochs 3] [--device cpu]
                                  [--reps 3] [--lambda-reps 1] [--only lambda_max|keskar]

(a) λ_max: our Lanczos (relative eigenvalue bound 1e-3) against PyHessian's
    `hessian(model, criterion, data=(x, y)).eigenvalues()` (power iteration), both timed from
    scratch (gradient-graph construction included), both checked against a tightly converged
    Lanczos reference (bound 1e-8), at matching accuracy: PyHessian's tol (1e-3, then 1e-4, …)
    is tightened until its relative error is ≤ 1e-3 too — its tol bounds the change between two
    iterations, and slow power-iteration convergence leaves the error well above it (at tol 1e-3:
    5e-2 on 8000 samples, 3e-3 on 60 000). Goal: our time ≤ 0.5× PyHessian's. If PyHessian
    is not installed (`pip install --no-deps pyhessian`; it needs only torch
    and numpy), its algorithm is run instead as `pyhessian_style_power_iteration` below — a
    re-implementation, labelled as such in the output.
(b) Keskar ε-sharpness (ε = 1e-3, full space, 10 L-BFGS-B iterations): wall time against
    (function evaluations × one full-data loss+gradient pass + the forward pass for f(x) itself),
    each pass timed (the fastest of 3 after a warm-up, so the floor is a lower bound) just
    before each of the Keskar runs, the median ratio reported. Goal ≤ 1.2×. Both use the
    measure runner's default chunking (4096 samples a chunk), as `remedies train` does.
    The time inside SciPy's compiled L-BFGS-B (≈ 35–40 ms a call on a million bounded
    variables, whatever the data size) is printed apart: a fixed cost, so the ratio depends on
    how long a pass takes. The default data size is F1's training set in Keskar et al. (MNIST,
    60 000 samples); `--samples 8000` (the project's offline default trains on 7200) shows the
    fixed cost's larger share on small data, and on a GPU, where a pass takes milliseconds, the
    SciPy solver dominates the measurement.

(a) costs minutes per PyHessian run at 60 000 samples, hence its own --lambda-reps (default 1).

Model: F1 (5 × 512 MLP, BN in batch mode as the paper's code, ≈ 1.07 M parameters) trained
briefly with large batches on MNIST-1D (the `mnist1d` package via remedies.data; a seeded
synthetic 40-feature, 10-class stand-in when that is unavailable — the output says which).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from remedies.measures.config import MeasureConfig
from remedies.measures.keskar import keskar_sharpness
from remedies.measures.lanczos import lanczos_top
from remedies.measures.objective import ModelObjective
from remedies.models import create_model

TARGET_ERROR = 1e-3  # relative error of λ_max both methods must reach (the "matching")
BASELINE_TOLS = (1e-3, 1e-4, 1e-5, 1e-6)  # PyHessian's stopping tol, tightened until it does
MAX_POWER_ITERS = 2000  # PyHessian's default 100 would stop before a tight tol is met


def load(samples: int, device: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        from remedies.config import DataConfig
        from remedies.data import load_data

        s = load_data(DataConfig(name="mnist1d", num_samples=int(samples / 0.72) + 1), device)
        return s.x_train[:samples], s.y_train[:samples], "mnist1d"
    except Exception as e:  # noqa: BLE001 - any failure → documented synthetic stand-in
        print(f"(mnist1d unavailable: {type(e).__name__}: {e}; using synthetic data)")
        g = torch.Generator().manual_seed(0)
        centers = torch.randn(10, 40, generator=g)
        y = torch.randint(0, 10, (samples,), generator=g)
        x = centers[y] + 1.5 * torch.randn(samples, 40, generator=g)
        return x.to(device), y.to(device), "synthetic"


def pyhessian_style_power_iteration(model, x, y, tol=1e-3, max_iter=MAX_POWER_ITERS):
    """PyHessian 0.1's `hessian(...).eigenvalues()` algorithm (single-batch mode), re-implemented:
    build the gradient graph once, then power iteration until two consecutive Rayleigh quotients
    differ by less than tol relatively."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn_like(p) for p in params]
    norm = sum((vi * vi).sum() for vi in v) ** 0.5
    v = [vi / (norm + 1e-6) for vi in v]
    eig = None
    for _ in range(max_iter):
        hv = torch.autograd.grad(grads, params, v, retain_graph=True)
        new = float(sum((a * b).sum() for a, b in zip(hv, v, strict=True)))
        norm = sum((h * h).sum() for h in hv) ** 0.5
        v = [h / (norm + 1e-6) for h in hv]
        if eig is not None and abs(eig - new) / (abs(eig) + 1e-6) < tol:
            return new
        eig = new
    return eig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=60000, help="training samples (paper: 60000)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=3, help="(b) timed runs (median reported)")
    ap.add_argument("--lambda-reps", type=int, default=1, help="(a) timed runs (median reported)")
    ap.add_argument("--only", choices=["lambda_max", "keskar"], help="run one part only")
    args = ap.parse_args()
    torch.manual_seed(0)
    x, y, source = load(args.samples, args.device)
    model = create_model("F1", tuple(x.shape[1:]), 10, bn="batch").to(args.device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    for _ in range(args.epochs):  # a little large-batch training: a trained-looking Hessian
        for idx in torch.randperm(len(y), device=x.device).split(len(y) // 10):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"F1 on {source}: {len(y)} samples, {n_params} parameters, device {args.device}, "
        f"{torch.get_num_threads()} threads"
    )

    if args.only != "keskar":  # PyHessian takes the whole set as one batch: so do we here
        lambda_max_part(
            model, x, y, ModelObjective(model, x, y, chunk_size=len(y)), args.lambda_reps
        )
    if args.only != "lambda_max":
        keskar_part(ModelObjective(model, x, y, chunk_size=MeasureConfig().chunk_size), args.reps)


def lambda_max_part(model, x, y, obj, reps: int) -> None:
    """(a) λ_max: ours vs PyHessian at matching accuracy against a tightly converged reference."""
    ref = lanczos_top(
        obj.hvp_at(obj.w0), obj.w0.numel(), tol=1e-8, max_iter=80, seed=123, device=x.device
    )
    lam_ref = ref.eigenvalues[0]
    print(
        f"reference λ_max = {lam_ref:.6f} ({ref.n_products} products, bound "
        f"{ref.error_bounds[0]:.1e}, {ref.wall_time_s:.1f} s)"
    )

    def ours() -> tuple[float, int]:
        o = ModelObjective(model, x, y, chunk_size=len(y))
        r = lanczos_top(o.hvp_at(o.w0), o.w0.numel(), tol=1e-3, seed=0, device=x.device)
        return r.eigenvalues[0], r.n_products

    try:
        from pyhessian import hessian

        def baseline(tol: float) -> float:
            m = copy.deepcopy(model)
            h = hessian(m, F.cross_entropy, data=(x, y), cuda=x.is_cuda)
            return h.eigenvalues(maxIter=MAX_POWER_ITERS, tol=tol)[0][0]

        name = "PyHessian 0.1 hessian(...).eigenvalues()"
    except ImportError:

        def baseline(tol: float) -> float:
            return pyhessian_style_power_iteration(copy.deepcopy(model), x, y, tol, MAX_POWER_ITERS)

        name = "pyhessian_style_power_iteration (PyHessian not installed; re-implementation)"

    def timed_baseline(tol: float, seed: int) -> tuple[float, float]:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        lam = baseline(tol)
        return time.perf_counter() - t0, abs(lam - lam_ref) / abs(lam_ref)

    # matching accuracy: PyHessian's tol bounds the change between two power iterations, not the
    # error (slow convergence leaves errors far above tol), so tighten it until the error is met
    print(f"(a) baseline: {name}")
    for tol in BASELINE_TOLS:
        t, err = timed_baseline(tol, 0)
        print(f"    baseline tol {tol:.0e}: {t:6.2f} s, rel. error {err:.1e}")
        if err <= TARGET_ERROR:
            break
    else:
        print(f"    (no tol reached {TARGET_ERROR:.0e}: the ratio below favours the baseline)")
    t_base, errs_base = [t], [err]
    for rep in range(1, reps):
        t, err = timed_baseline(tol, rep)
        t_base.append(t)
        errs_base.append(err)

    t_ours, errs_ours, products = [], [], []
    for rep in range(reps):
        torch.manual_seed(rep)
        t0 = time.perf_counter()
        lam_o, k = ours()
        t_ours.append(time.perf_counter() - t0)
        errs_ours.append(abs(lam_o - lam_ref) / abs(lam_ref))
        products.append(k)
    to, tb = statistics.median(t_ours), statistics.median(t_base)
    print(
        f"    ours     {to:6.2f} s  (median of {reps}; {products} products), "
        f"max rel. error {max(errs_ours):.1e}"
    )
    print(
        f"    baseline {tb:6.2f} s  (median of {reps} at tol {tol:.0e}), "
        f"max rel. error {max(errs_base):.1e}"
    )
    print(f"    RATIO λ_max time ours / baseline = {to / tb:.2f}  (goal ≤ 0.5)")


def keskar_part(obj, reps: int) -> None:
    """(b) Keskar: wall time vs its floor — the passes no implementation can avoid: one forward
    pass for f(x) and one full-data loss+gradient pass per function evaluation."""

    def timed(fn, k: int = 3) -> float:
        fn()  # warm-up: first-touch allocations are not part of a pass
        ts = []
        for _ in range(k):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)  # the fastest pass seen: the floor must not be inflated by a slow one

    rows = []
    for _ in range(reps):  # the floor is re-timed next to each run: the machine's speed drifts
        one_pass = timed(lambda: obj.loss_grad(obj.w0))
        forward = timed(lambda: obj.loss(obj.w0))
        r = keskar_sharpness(obj, 1e-3, iters=10)
        floor = r.nfev * one_pass + forward
        rows.append((r.wall_time_s / floor, r, one_pass, forward, floor))
    ratio, r, one_pass, forward, floor = sorted(rows, key=lambda row: row[0])[len(rows) // 2]
    ours = r.wall_time_s - r.solver_time_s - floor
    print(
        f"(b) Keskar ε=1e-3 full space: value {r.value:.3f}, {r.nit} iterations, {r.nfev} "
        f"loss+grad evaluations + f(x), {r.wall_time_s:.2f} s; one full-data loss+grad pass "
        f"{one_pass:.3f} s, forward {forward:.3f} s → floor {floor:.2f} s (median run of {reps})"
    )
    print(f"    of the excess: SciPy setulb {r.solver_time_s:.2f} s, everything else {ours:.2f} s")
    print(f"    ratios of all runs: {', '.join(f'{row[0]:.2f}' for row in rows)}")
    print(f"    RATIO Keskar time / floor = {ratio:.2f}  (median; goal ≤ 1.2)")


if __name__ == "__main__":
    main()
