"""The `measure:` section of a run config: which sharpness/curvature measures to compute, and how.

Every field has a default, so `measure:` may be omitted; the default reproduces the paper's
Table 3 measurement (Keskar ε-sharpness, full space, ε = 1e-3 and 5e-4, 10 L-BFGS-B iterations).
Unknown keys raise, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt, create_model

import remedies.measures.families  # noqa: F401  (registers every built-in family)
from remedies.measures.registry import MEASURES, Section, fmt, measures

__all__ = [
    "FAMILIES",
    "MeasureConfig",
    "SharedSettings",
    "enabled_families",
    "family_keys",
    "fmt",
    "measure_config_model",
    "measure_keys",
]


class SharedSettings(BaseModel):
    """The settings every family shares; `MeasureConfig` is these after one section per family."""

    model_config = ConfigDict(extra="forbid")

    # samples per forward pass; with no batch-statistics BN it only bounds memory (chunks are
    # weighted by size, so the value equals the full-batch one)
    chunk_size: PositiveInt = 4096
    # batch-statistics BN (built with bn: batch, or bn: train below) makes the function depend on
    # the batch: the data are then cut into fixed consecutive BN batches of this size; None = the
    # whole measured set is one BN batch. The size used is recorded with every value.
    bn_batch_size: PositiveInt | None = None
    # train: BN layers use batch statistics (dropout stays off; running buffers never updated)
    bn: Literal["eval", "train"] = "eval"
    max_samples: PositiveInt | None = None  # measure on a seeded random subset of the train set
    subset_seed: int = 0
    # keep each chunk's gradient graph between Hessian-vector products: ≈ 2× faster products,
    # memory ≈ the full-batch double-backward graph; False rebuilds it per chunk and product;
    # auto keeps it when the first chunk's graph × chunks fits a quarter of the free memory
    hvp_cache: bool | Literal["auto"] = "auto"
    # the arithmetic of f, ∇f and Hv: near zero loss float32 cannot resolve f (a sample's
    # cross-entropy below ≈ 6e-8 rounds to 0) and the measures read noise. auto: float64 when f
    # at the trained point is below float64_below or float32 gets it wrong by more than 0.1 %
    precision: Literal["auto", "float32", "float64"] = "auto"
    float64_below: PositiveFloat = 1e-6

    if TYPE_CHECKING:  # the family sections, generated from the registry (their types vary)

        def __getattr__(self, name: str) -> Section: ...


_DOC = "Which sharpness/curvature measures `remedies train` and `remedies measure` compute."


def measure_config_model() -> type[SharedSettings]:
    """The `measure:` model of the families registered now: one section per family (its name, its
    `Config`, defaults as the default), in section order, then the shared settings."""
    sections: dict[str, Any] = {m.name: (m.Config, m.Config()) for m in measures()}
    shared: dict[str, Any] = {k: (f.annotation, f) for k, f in SharedSettings.model_fields.items()}
    model = create_model(
        "MeasureConfig",
        __config__=ConfigDict(extra="forbid"),
        __doc__=_DOC,
        __module__=__name__,
        **sections,
        **shared,
    )
    return cast(type[SharedSettings], model)  # the same fields, the sections added


if TYPE_CHECKING:
    MeasureConfig = SharedSettings
else:
    MeasureConfig = measure_config_model()  # the built-in families (importing this module)


# ------------------------------------------------------------------------------- result keys
# The runner names its values with each family's keys, and a search space checks its objectives
# against `measure_keys` without running anything.

FAMILIES = tuple(m.name for m in measures())  # the built-in families, in section order


def _section(cfg: SharedSettings, family: str) -> Section | None:
    """The family's section of `cfg` (None: a family registered after this config's model)."""
    return cast(Section | None, getattr(cfg, family, None))


def enabled_families(cfg: SharedSettings) -> list[str]:
    """The families a run computes with no `--measure` names: enabled, and with keys to report
    (keskar with neither the full space nor a subspace has none)."""
    return [
        m.name
        for m in measures()
        if (s := _section(cfg, m.name)) is not None and s.enabled and m.keys(s)
    ]


def family_keys(cfg: SharedSettings, family: str) -> list[str]:
    """The keys one family reports when run as configured, in the runner's order."""
    measure = MEASURES.get(family)
    section = _section(cfg, family)
    return measure.keys(measure.Config() if section is None else section)


def measure_keys(cfg: SharedSettings) -> list[str]:
    """Every key `run_measures(model, x, y, cfg)` reports for this section, without running it.

    (lambda_max lists k keys; Lanczos can return fewer only on a model with fewer than k
    parameters.)
    """
    return [key for family in enabled_families(cfg) for key in family_keys(cfg, family)]
