"""The `measure:` section of a run config: which sharpness/curvature measures to compute, and how.

Every field has a default, so `measure:` may be omitted; the default reproduces the paper's
Table 3 measurement (Keskar ε-sharpness, full space, ε = 1e-3 and 5e-4, 10 L-BFGS-B iterations).
Unknown keys raise, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeskarConfig(_Section):
    """Metric 2.1 of Keskar et al. 2017 (`keskar_full_eps…`, `keskar_sub{p}_eps…`)."""

    enabled: bool = True
    eps: list[PositiveFloat] = Field(default=[1e-3, 5e-4], min_length=1)  # box half-width factor
    full_space: bool = True  # A = I (Table 3)
    subspace_dims: list[PositiveInt] = []  # e.g. [100]: random A ∈ R^{n×p} (Table 4)
    # L-BFGS-B iterations, as in the paper; 0 reads the start alone (with init: vertex, the
    # box maximum of f's linear model at x: two loss+gradient passes, no solver)
    iters: int = Field(default=10, ge=0)
    seed: int = 0  # seeds the random subspace A, the random starts and ties of the vertex start
    # first start: a seeded random point inside the box, or the first-order vertex
    # y0 = b ⊙ sign ∇f (the linear model's box maximum; exact for convex f)
    init: Literal["vertex", "random"] = "random"
    restarts: int = Field(default=0, ge=0, le=20)  # more seeded random starts; the best is kept
    # random starts: y0 ~ U(-start·b, start·b) inside the box
    start: float = Field(default=0.1, gt=0.0, le=1.0)

    @field_validator("eps")
    @classmethod
    def _unique(cls, v: list[float]) -> list[float]:
        if len(set(v)) != len(v):
            raise ValueError(f"eps values must be distinct, but got {v}")
        return v


class LambdaMaxConfig(_Section):
    """Top-k Hessian eigenvalues by Lanczos (`lambda_max`, `lambda_2`, …)."""

    enabled: bool = False
    k: PositiveInt = 1  # how many of the largest (algebraic) eigenvalues
    tol: PositiveFloat = 1e-3  # relative bound on each eigenvalue's error (residual² / gap)
    max_iter: PositiveInt = 100  # Hessian-vector products at most
    seed: int = 0  # start vector


class TraceConfig(_Section):
    """Hessian trace by Hutchinson's estimator with Rademacher probes (`hessian_trace`)."""

    enabled: bool = False
    probes: int = Field(default=100, ge=2)  # ≥ 2 so a standard error exists
    seed: int = 0


class AdaptiveConfig(_Section):
    """Adaptive sharpness: perturbations scaled elementwise by |w| + eta (Kwon et al. 2021).

    With eta = 0 the value is exactly invariant to the ReLU rescalings of Dinh et al. 2017; a
    positive eta keeps zero weights perturbable at the cost of exact invariance.
    """

    enabled: bool = False
    l2_rho: list[PositiveFloat] = [0.5]  # worst case in ‖δ/(|w|+η)‖₂ ≤ ρ → adaptive_l2_rho…
    linf_rho: list[PositiveFloat] = [2e-3]  # worst case in ‖δ/(|w|+η)‖∞ ≤ ρ → adaptive_linf_rho…
    average_rho: list[PositiveFloat] = [0.05]  # E f(w + (|w|+η)⊙ρξ) − f(w) → adaptive_avg_rho…
    average_dist: Literal["gaussian", "uniform"] = "gaussian"  # ξ ~ N(0, I) or U[−1, 1]ⁿ
    average_samples: int = Field(default=20, ge=2)  # Monte-Carlo samples (standard error kept)
    steps: PositiveInt = 20  # projected-ascent steps for the worst case
    eta: float = Field(default=0.0, ge=0.0)
    seed: int = 0


# the one refusal text for noise_scale with batch-statistics BN (config, runner and function)
NOISE_SCALE_BN = (
    "the gradient noise scale needs per-sample gradients, which batch-statistics BN does not "
    "have (it couples the samples); allowed with model.bn: running and measure.bn: eval"
)


class NoiseScaleConfig(_Section):
    """Gradient noise scale B_simple = tr Σ / ‖G‖² (`noise_scale`; McCandlish et al. 2018): an
    estimate of the critical batch size, from exact per-sample gradients. Needs BN running/none."""

    enabled: bool = False


class MeasureConfig(BaseModel):
    """Which sharpness/curvature measures `remedies train` and `remedies measure` compute."""

    model_config = ConfigDict(extra="forbid")

    keskar: KeskarConfig = KeskarConfig()
    lambda_max: LambdaMaxConfig = LambdaMaxConfig()
    trace: TraceConfig = TraceConfig()
    adaptive: AdaptiveConfig = AdaptiveConfig()
    noise_scale: NoiseScaleConfig = NoiseScaleConfig()
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


# ------------------------------------------------------------------------------- result keys
# The one place that spells result keys: the runner names its values with these, and a search
# space checks its objectives against `measure_keys` without running anything.

FAMILIES = ("keskar", "lambda_max", "trace", "adaptive", "noise_scale")
TRACE_KEYS = ("hessian_trace", "hessian_trace_se")
NOISE_SCALE_KEY = "noise_scale"


def fmt(v: float) -> str:
    """1e-3 → '1e-03': the key spelling (two-digit exponent, as Python's %e writes it)."""
    return f"{v:.0e}" if float(f"{v:.0e}") == v else f"{v:.2e}"


def keskar_key(eps: float, dim: int | None) -> str:
    """`keskar_full_eps1e-03` (full space) or `keskar_sub50_eps1e-03` (random 50-dim subspace)."""
    return f"keskar_{'full' if dim is None else f'sub{dim}'}_eps{fmt(eps)}"


def lambda_key(i: int) -> str:
    """The i-th largest Hessian eigenvalue (0-based): `lambda_max`, `lambda_2`, …"""
    return "lambda_max" if i == 0 else f"lambda_{i + 1}"


def adaptive_key(kind: str, rho: float) -> str:
    """`adaptive_l2_rho5e-01`, `adaptive_linf_rho2e-03`, `adaptive_avg_rho5e-02`."""
    return f"adaptive_{kind}_rho{fmt(rho)}"


def enabled_families(cfg: MeasureConfig) -> list[str]:
    """The families a run computes with no `--measure` names (keskar needs a space to search)."""
    on = {
        "keskar": cfg.keskar.enabled and bool(cfg.keskar.full_space or cfg.keskar.subspace_dims),
        "lambda_max": cfg.lambda_max.enabled,
        "trace": cfg.trace.enabled,
        "adaptive": cfg.adaptive.enabled,
        "noise_scale": cfg.noise_scale.enabled,
    }
    return [f for f in FAMILIES if on[f]]


def family_keys(cfg: MeasureConfig, family: str) -> list[str]:
    """The keys one family reports when run as configured, in the runner's order."""
    if family == "keskar":
        kc = cfg.keskar
        dims: list[int | None] = ([None] if kc.full_space else []) + list(kc.subspace_dims)
        return [keskar_key(e, d) for d in dims for e in kc.eps]
    if family == "lambda_max":
        return [lambda_key(i) for i in range(cfg.lambda_max.k)]
    if family == "trace":
        return list(TRACE_KEYS)
    if family == "adaptive":
        ac = cfg.adaptive
        pairs = (("l2", ac.l2_rho), ("linf", ac.linf_rho), ("avg", ac.average_rho))
        return list(dict.fromkeys(adaptive_key(kind, r) for kind, rhos in pairs for r in rhos))
    if family == "noise_scale":
        return [NOISE_SCALE_KEY]
    raise KeyError(family)


def measure_keys(cfg: MeasureConfig) -> list[str]:
    """Every key `run_measures(model, x, y, cfg)` reports for this section, without running it.

    (lambda_max lists k keys; Lanczos can return fewer only on a model with fewer than k
    parameters.)
    """
    return [key for family in enabled_families(cfg) for key in family_keys(cfg, family)]
