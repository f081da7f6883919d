"""`run_measures`: every configured measure on one model, each value with its settings.

Measure families are registered by name (`remedies/measures/registry.py`, one file each under
`remedies/measures/families/`); each family's `run` turns its config section into flat keys
(`keskar_full_eps1e-03`, `lambda_max`, …) and detail records. `names` (from `remedies measure
--measure`) selects families or exact keys, running them even when the config leaves them
disabled; an exact key carries its own settings (`keskar_sub50_eps2e-03` measures a 50-dim
subspace at ε = 2e-3).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from remedies.errors import ConfigError
from remedies.measures.config import MeasureConfig, enabled_families
from remedies.measures.objective import ModelObjective
from remedies.measures.registry import MEASURES, Record, Section, measures

__all__ = ["MEASURES", "Record", "choose_precision", "precision_doubt", "preserved", "run_measures"]


def _families(cfg: MeasureConfig, names: list[str] | None) -> dict[str, set[str] | None]:
    """family → None (run as configured) or the requested names for that family."""
    if names is None:
        on = set(enabled_families(cfg))
        return {f: None for f in MEASURES if f in on}
    out: dict[str, set[str] | None] = {}
    for name in names:
        family = name if name in MEASURES else None
        for m in measures():
            if family is None and m.key_pattern and re.fullmatch(m.key_pattern, name):
                family = m.name
        if family is None:
            MEASURES.get(name, "--measure")  # raises, listing the known families
        out.setdefault(family, set()).add(name if family != name else family)  # type: ignore[union-attr,arg-type]
    return out


def _section(cfg: MeasureConfig, family: str) -> Section:
    """The family's section of cfg; its defaults if cfg's model predates the family."""
    section: Section | None = getattr(cfg, family, None)
    return MEASURES.get(family).Config() if section is None else section


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
    info = {
        "precision": cfg.precision,
        "f0_native": f_native,
        "f0_float64": f64,
        "f0_native_rel_err": rel_err,
    }
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
            model,
            x,
            y,
            chunk_size=cfg.chunk_size,
            bn_batch_size=cfg.bn_batch_size,
            bn=cfg.bn,
            hvp_cache=cfg.hvp_cache,
        )
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
        for family in families:  # refuse before any work
            refusal = MEASURES.get(family).batch_bn_refusal
            if refusal is not None and obj.bn_kind == "batch":
                raise ConfigError(f"--measure {family}", refusal)
        for family, keys in families.items():
            for rec in MEASURES.get(family).run(obj, _section(cfg, family), keys):
                asked = keys is None or family in keys or rec["key"].removesuffix("_se") in keys
                if not asked:
                    continue  # e.g. lambda_2 when only lambda_max was named
                values[rec["key"]] = float(rec["value"])
                why = list(rec.pop("suspect_why", [])) + precision_doubt(precision, obj)
                details.append(
                    {"measure": family, **rec, **common, "suspect": bool(why), "suspect_why": why}
                )
    return values, details
