"""`run_measures`: every configured measure on one model, each value with its settings.

Measures are registered by family name (`keskar`, `lambda_max`, `trace`, `adaptive`); each family
runner turns the config into flat keys (`keskar_full_eps1e-03`, `lambda_max`, …) and detail
records. `names` (from `remedies measure --measure`) selects families or exact keys, running them
even when the config leaves them disabled; an exact key carries its own settings
(`keskar_sub50_eps2e-03` measures a 50-dim subspace at ε = 2e-3).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from remedies.errors import ConfigError
from remedies.measures.adaptive import average_sharpness, worst_case_sharpness
from remedies.measures.config import (  # key spellings live with the config: one place
    NOISE_SCALE_BN,
    NOISE_SCALE_KEY,
    TRACE_KEYS,
    MeasureConfig,
    adaptive_key,
    enabled_families,
    keskar_key,
    lambda_key,
)
from remedies.measures.hutchinson import hutchinson_trace
from remedies.measures.keskar import keskar_sharpness
from remedies.measures.lanczos import lanczos_top
from remedies.measures.noise_scale import gradient_noise_scale
from remedies.measures.objective import ModelObjective
from remedies.registry import Registry

Record = dict[str, Any]
Runner = Callable[[ModelObjective, MeasureConfig, "set[str] | None"], list[Record]]
MEASURES: Registry[Runner] = Registry("measure")


_KESKAR_KEY = re.compile(r"keskar_(?:full|sub(\d+))_eps([0-9.eE+-]+)")
_ADAPTIVE_KEY = re.compile(r"(adaptive|sharp)_(l2|linf|avg)_rho([0-9.eE+-]+)")


@MEASURES.register("keskar")
def _keskar(obj: ModelObjective, cfg: MeasureConfig, keys: set[str] | None) -> list[Record]:
    kc = cfg.keskar
    todo: dict[str, tuple[float, int | None]] = {}
    if keys is None or "keskar" in keys:
        dims: list[int | None] = ([None] if kc.full_space else []) + list(kc.subspace_dims)
        todo = {keskar_key(e, d): (e, d) for d in dims for e in kc.eps}
    for key in keys or ():
        if (m := _KESKAR_KEY.fullmatch(key)) is not None:
            dim = int(m[1]) if m[1] else None
            todo[keskar_key(float(m[2]), dim)] = (float(m[2]), dim)
    out = []
    for key, (eps, dim) in todo.items():
        r = keskar_sharpness(
            obj, eps, subspace_dim=dim, iters=kc.iters, seed=kc.seed, start=kc.start,
            init=kc.init, restarts=kc.restarts, f0=obj.f0,
        )  # fmt: skip
        out.append({
            "key": key, "value": r.value, "eps": eps, "space": "full" if dim is None else "random",
            "subspace_dim": dim, "subspace_seed": None if dim is None else kc.seed,
            "seed": kc.seed,
            "init": kc.init, "restarts": kc.restarts, "start": kc.start, "solver": "L-BFGS-B",
            "iters": kc.iters, "solver_iters": r.nit, "function_evals": r.nfev, "f0": r.f0,
            "fmax": r.fmax, "start_value": r.start_value, "moved": r.moved,
            "at_bound": r.at_bound, "kkt_residual": r.kkt_residual, "starts": r.starts,
            "reach": r.reach, "first_order": r.first_order,
            "wall_time_s": r.wall_time_s, "solver_time_s": r.solver_time_s,
            "suspect_why": list(r.suspect),
        })  # fmt: skip
    return out


@MEASURES.register("lambda_max")
def _lambda_max(obj: ModelObjective, cfg: MeasureConfig, keys: set[str] | None) -> list[Record]:
    lc = cfg.lambda_max
    t0 = time.perf_counter()
    hvp = obj.hvp_at(obj.w0)
    r = lanczos_top(
        hvp, obj.w0.numel(), k=lc.k, tol=lc.tol, max_iter=lc.max_iter, seed=lc.seed,
        device=obj.w0.device,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    out = []
    for i, (lam, bound) in enumerate(zip(r.eigenvalues, r.error_bounds, strict=True)):
        out.append({
            "key": lambda_key(i), "value": lam,
            "error_bound": bound, "tol": lc.tol, "k": lc.k, "seed": lc.seed,
            "solver": "lanczos", "hvp_products": r.n_products, "converged": r.converged,
            "wall_time_s": wall,
            "suspect_why": [] if r.converged else ["Lanczos stopped before its bound met tol"],
        })  # fmt: skip
    return out


@MEASURES.register("trace")
def _trace(obj: ModelObjective, cfg: MeasureConfig, keys: set[str] | None) -> list[Record]:
    tc = cfg.trace
    t0 = time.perf_counter()
    r = hutchinson_trace(
        obj.hvp_at(obj.w0), obj.w0.numel(), probes=tc.probes, seed=tc.seed,
        dtype=obj.w0.dtype, device=obj.w0.device,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    common = {"probes": tc.probes, "seed": tc.seed, "estimator": "hutchinson-rademacher",
              "hvp_products": tc.probes, "wall_time_s": wall}  # fmt: skip
    return [
        {"key": TRACE_KEYS[0], "value": r.trace, "std_error": r.std_error, **common},
        {"key": TRACE_KEYS[1], "value": r.std_error, **common},
    ]


@MEASURES.register("adaptive")
def _adaptive(obj: ModelObjective, cfg: MeasureConfig, keys: set[str] | None) -> list[Record]:
    ac = cfg.adaptive
    todo: dict[str, tuple[str, float]] = {}
    if keys is None or "adaptive" in keys:
        for kind, rhos in (("l2", ac.l2_rho), ("linf", ac.linf_rho), ("avg", ac.average_rho)):
            todo.update({adaptive_key(kind, r): (kind, r) for r in rhos})
    for key in keys or ():
        if (m := _ADAPTIVE_KEY.fullmatch(key)) is not None and m[1] == "adaptive":
            todo[adaptive_key(m[2], float(m[3]))] = (m[2], float(m[3]))
    scale = obj.w0.abs() + ac.eta
    out = []
    for key, (kind, rho) in todo.items():
        extra: dict[str, Any]
        if kind == "avg":
            r = average_sharpness(
                obj, rho, ac.average_dist, scale=scale, samples=ac.average_samples, seed=ac.seed
            )
            extra = {"dist": ac.average_dist, "samples": ac.average_samples,
                     "std_error": r.std_error}  # fmt: skip
        else:
            r = worst_case_sharpness(obj, rho, kind, scale=scale, steps=ac.steps, seed=ac.seed)  # type: ignore[arg-type]
            extra = {"norm": kind, "steps": ac.steps}
        out.append({
            "key": key, "value": r.value, "rho": rho, "eta": ac.eta, "scaling": "|w|+eta",
            "seed": ac.seed, "f0": r.f0, "function_evals": r.n_evals,
            "wall_time_s": r.wall_time_s, **extra,
            "suspect_why": ["no increase found"] if kind != "avg" and r.value <= 0 else [],
        })  # fmt: skip
    return out


@MEASURES.register("noise_scale")
def _noise_scale(obj: ModelObjective, cfg: MeasureConfig, keys: set[str] | None) -> list[Record]:
    r = gradient_noise_scale(obj)
    return [{"key": NOISE_SCALE_KEY, "value": r.b_simple, "trace_sigma": r.trace_sigma,
             "grad_norm_sq": r.grad_norm_sq, "estimator": "per-sample gradients (exact)",
             "vmap_chunk": r.chunk, "wall_time_s": r.wall_time_s}]  # fmt: skip


_FAMILY_OF_KEY = (
    (_KESKAR_KEY, "keskar"),
    (re.compile(r"lambda_(max|\d+)"), "lambda_max"),
    (re.compile(r"hessian_trace(_se)?"), "trace"),
    (_ADAPTIVE_KEY, "adaptive"),
)


def _families(cfg: MeasureConfig, names: list[str] | None) -> dict[str, set[str] | None]:
    """family → None (run as configured) or the requested names for that family."""
    if names is None:
        on = set(enabled_families(cfg))
        return {f: None for f in MEASURES if f in on}
    out: dict[str, set[str] | None] = {}
    for name in names:
        family = name if name in MEASURES else None
        if name == "hessian_trace":
            family = "trace"
        for pattern, fam in _FAMILY_OF_KEY:
            if family is None and pattern.fullmatch(name):
                family = fam
        if family is None:
            MEASURES.get(name, "--measure")  # raises, listing the known families
        out.setdefault(family, set()).add(name if family != name else family)  # type: ignore[union-attr,arg-type]
    return out


def choose_precision(obj: ModelObjective, cfg: MeasureConfig) -> tuple[ModelObjective, Record]:
    """The objective in the arithmetic the config asks for, and what decided it.

    f at the trained point is evaluated in both float32 and float64 (two forward passes): near
    zero loss a sample's float32 cross-entropy rounds to 0 below ≈ 6e-8 and its gradient loses
    the true class's term, so every measure reads rounding noise. `auto` switches to float64
    when f is below `float64_below` or float32 gets it wrong by more than 0.1 %.
    """
    f_native = obj.loss(obj.w0)
    obj64 = obj.with_dtype(torch.float64)
    f64 = obj64.loss(obj64.w0)
    rel_err = abs(f_native - f64) / f64 if f64 > 0 else 0.0
    if cfg.precision == "float64":
        use64 = True
    elif cfg.precision == "float32":
        use64 = False
    else:
        use64 = f64 < cfg.float64_below or rel_err > F32_REL_ERR
    info = {"precision": cfg.precision, "f0_native": f_native, "f0_float64": f64,
            "f0_native_rel_err": rel_err}  # fmt: skip
    chosen = obj64 if use64 else obj
    chosen.f0 = f64 if use64 else f_native  # f at w0 in its arithmetic: measures reuse it
    return chosen, info


F32_REL_ERR = 1e-3  # float32's f at the trained point off by more than this: below its resolution


def precision_doubt(precision: Record, obj: ModelObjective) -> list[str]:
    """A value computed in float32 whose loss float32 cannot resolve is suspect."""
    if obj.w0.dtype == torch.float64 or precision["f0_native_rel_err"] <= F32_REL_ERR:
        return []
    return [
        f"loss {precision['f0_float64']:.2e} below float32 resolution "
        f"(float32 off by {precision['f0_native_rel_err']:.1%}); use precision: float64"
    ]


@contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Leave the model exactly as found: every module's train/eval flag, and all parameters and
    buffers bit-for-bit (copied back from clones even though measures never write to them)."""
    modes = [(m, m.training) for m in model.modules()]
    saved = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        with torch.no_grad():
            for k, v in model.state_dict(keep_vars=True).items():
                if not torch.equal(v, saved[k]):
                    v.copy_(saved[k])


def _eval_mode(model: nn.Module, bn: str) -> None:
    """Dropout off; BN as built (running or batch statistics), or batch statistics on request."""
    model.eval()
    if bn == "train":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()


def run_measures(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: MeasureConfig,
    *,
    names: list[str] | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Compute the configured (or the named) measures of mean cross-entropy on (x, y).

    Returns ({key: value}, [detail record per key]); each record holds the measure family, key,
    value and every setting that produced it (data size, BN mode and BN batch, chunk size, …).
    """
    if names is not None and not names:
        names = None
    families = _families(cfg, names)
    n_total = int(x.shape[0])
    if cfg.max_samples is not None and cfg.max_samples < x.shape[0]:
        gen = torch.Generator(device="cpu").manual_seed(cfg.subset_seed)
        idx = torch.randperm(x.shape[0], generator=gen)[: cfg.max_samples].to(x.device)
        x, y = x[idx], y[idx]
    values: dict[str, float] = {}
    details: list[dict] = []
    with preserved(model):
        _eval_mode(model, cfg.bn)
        obj = ModelObjective(
            model, x, y, chunk_size=cfg.chunk_size, bn_batch_size=cfg.bn_batch_size, bn=cfg.bn,
            hvp_cache=cfg.hvp_cache,
        )  # fmt: skip
        obj, precision = choose_precision(obj, cfg)
        common = {
            "n_samples": obj.n_samples,  # the measured (sub)set's size, drawn from the
            "n_samples_total": n_total,  # samples passed in (a streamed set: already a subset)
            "max_samples": cfg.max_samples,
            "subset_seed": cfg.subset_seed if cfg.max_samples else None,
            "bn_mode": obj.bn_kind if cfg.bn == "eval" else "train",
            "bn_batch": obj.chunk if obj.bn_kind == "batch" else None,
            "chunk_size": obj.chunk,
            "n_params": obj.w0.numel(),
            "dtype": str(obj.w0.dtype).removeprefix("torch."),
            "device": str(obj.w0.device),
            **precision,
        }
        if "noise_scale" in families and obj.bn_kind == "batch":  # refuse before any work
            raise ConfigError("--measure noise_scale", NOISE_SCALE_BN)
        for family, keys in families.items():
            for rec in MEASURES.get(family)(obj, cfg, keys):
                asked = keys is None or family in keys or rec["key"].removesuffix("_se") in keys
                if not asked:
                    continue  # e.g. lambda_2 when only lambda_max was named
                values[rec["key"]] = float(rec["value"])
                why = list(rec.pop("suspect_why", [])) + precision_doubt(precision, obj)
                details.append({"measure": family, **rec, **common, "suspect": bool(why),
                                "suspect_why": why})  # fmt: skip
    return values, details
